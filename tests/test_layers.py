"""The house's walls: each outside system has one adapter, and nothing else imports its library."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "labctl"
# library -> the one module (or folder) allowed to import it
ADAPTERS = {"libvirt": "adapters/hypervisor/", "libvirt_qemu": "adapters/hypervisor/", "vagrant": "adapters/vagrant.py",
            "psutil": "supervisor.py",
            "fabric": "adapters/ssh.py", "paramiko": "adapters/ssh.py", "invoke": "adapters/ssh.py"}


def imported_roots(source: str) -> set[str]:
    """Top-level packages a module imports, at any depth (lazy imports inside functions too)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_scan_sees_lazy_and_dotted_imports() -> None:
    code = "def f():\n    import paramiko.client\n    from fabric import Connection\nimport os\n"
    assert imported_roots(code) == {"paramiko", "fabric", "os"}


def test_only_each_adapter_imports_its_library() -> None:
    trespasses = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for library in imported_roots(path.read_text()) & ADAPTERS.keys():
            allowed = ADAPTERS[library]
            if not (rel == allowed or (allowed.endswith("/") and rel.startswith(allowed))):
                trespasses.append(f"{rel} imports {library} (only {ADAPTERS[library]} may)")
    assert trespasses == []


def labctl_imports(source: str) -> set[str]:
    """The labctl modules a module imports, at any depth ("from labctl import x" counts as labctl.x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("labctl."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "labctl":
                found.update(f"labctl.{a.name}" for a in node.names)
            elif node.module.startswith("labctl."):
                found.add(node.module)
    return found


def test_only_the_context_makes_adapters() -> None:
    """Use-cases and commands see the ports (labctl.protocols); the Context is the one door that
    makes adapters, and an adapter never reaches back up into a command or a use-case."""
    doors = {"context.py"}
    trespasses = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        imports = labctl_imports(path.read_text())
        if rel.startswith("adapters/"):
            trespasses += [f"{rel} imports {m}" for m in imports
                           if m.startswith(("labctl.commands", "labctl.cli", "labctl.context"))]
        elif rel not in doors:
            trespasses += [f"{rel} imports {m}" for m in imports if m.startswith("labctl.adapters")]
    assert trespasses == []


def test_the_scan_sees_labctl_imports() -> None:
    code = "def f():\n    from labctl.adapters.hypervisor import Hypervisor\nfrom labctl import adapters, names\n"
    assert labctl_imports(code) == {"labctl.adapters.hypervisor", "labctl.adapters", "labctl.names"}


def test_status_loads_only_what_it_needs(tmp_path: Path) -> None:
    """`labctl status` is asked often (watch, scripts): it imports none of the libraries for reading
    lab files, rendering or SSH, and no command module but its own (labctl.commands.app loads lazily)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LABCTL_HOME": str(tmp_path / "home"), "HOME": str(tmp_path),
           "LABCTL_LIBVIRT_URI": "test:///default"}
    # test:///default has 3 GiB: a lab that fits it (plan's exit code says whether it does).
    planned = subprocess.run([sys.executable, "-m", "labctl", "plan", "--distro", "debian", "--memory", "2G"],
                             cwd=tmp_path, env=env,
                             capture_output=True, text=True, check=False)
    assert planned.returncode == 0, planned.stderr
    code = ("import sys; from labctl.cli import main; code = main(['status']);"
            " print(code, *sorted(sys.modules), file=sys.stderr)")
    shown = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           check=False)
    words = shown.stderr.split()
    assert words[0] == "0" and "debian" in shown.stdout, shown.stdout + shown.stderr
    loaded = set(words[1:])
    assert not {m.split(".")[0] for m in loaded} & {"yaml", "jinja2", "fabric", "paramiko", "invoke"}
    assert {m for m in loaded if m.startswith("labctl.commands.")} == {"labctl.commands.app", "labctl.commands.shared",
                                                                      "labctl.commands.machines"}
    assert "labctl.model" not in loaded and "labctl.lifecycle" not in loaded
    # Nor what only writing, stacking or fencing needs (each import costs milliseconds on a busy host).
    assert not loaded & {"labctl.passwords", "labctl.isolation", "labctl.stacklog", "tempfile", "secrets",
                         "labctl.classroom.seats"}  # a lab that is no classroom


def test_the_code_map_lists_every_module() -> None:
    """A newcomer finds each module of labctl/ in docs/architecture.md's "Where the code is": by its
    name in its folder's row (`commands/` rows name their modules in words), or by its own path."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    section = doc.split("# Where the code is", 1)[1].split("\n## ", 1)[0]
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and rel.parent != Path():
            continue  # a package's face: its folder's row stands for it
        folder = f"`{rel.parent.as_posix()}/`"
        named = f"`{rel.name}`" in section or f"`{rel.stem}`" in section or f"`{rel.as_posix()}`" in section
        if rel.parent == Path():
            named = f"`{rel.name}`" in section or rel.name == "__init__.py"
        elif folder not in section:
            named = False
        if not named:
            missing.append(rel.as_posix())
    assert missing == []


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
    """module -> the labctl modules it imports (any depth, under TYPE_CHECKING too: mypy and a reader
    follow those), "from labctl.pkg import mod" counted as labctl.pkg.mod."""
    graph: dict[str, set[str]] = {}
    for name, source in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("labctl"):
                base = str(node.module)
                deps.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other round (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_circle_finder_finds_a_circle_behind_type_checking() -> None:
    modules = {"labctl.a": "from labctl.b import f\n",
               "labctl.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from labctl.c import C\n",
               "labctl.c": "import labctl.a\n", "labctl.d": "from labctl import a\n"}
    assert circles(import_graph(modules)) == [["labctl.a", "labctl.b", "labctl.c"]]


def test_no_import_circle() -> None:
    """Modules form layers: none imports, at any depth, a module that imports it back."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.read_text()
    assert circles(import_graph(modules)) == []


def test_modules_and_functions_stay_small() -> None:
    """A module past 400 lines or a function past 50 has outgrown its room: make the room first."""
    too_big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        rel = path.relative_to(PACKAGE).as_posix()
        if source.count("\n") > 400:
            too_big.append(f"{rel}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > 50:
                    too_big.append(f"{rel}:{node.lineno} {node.name}: {length} lines")
    assert too_big == []


def test_bare_any_is_kept_for_raw_files() -> None:
    """labctl's values are typed; `Any` stays only where a file's YAML or JSON is held before it is
    validated (labctl.raw.Raw) and in the decorator idiom `Callable[..., Any]`: fewer than 15 in all."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            named = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
            if named == "Any":  # Any, typing.Any, t.Any
                found.append(f"{path.relative_to(PACKAGE).as_posix()}:{node.lineno}")
    assert len(found) < 15, found
    assert [f for f in found if not f.startswith(("raw.py", "adapters/hypervisor/connection.py",
                                                     "commands/shared.py"))] == []


def test_storage_depends_on_no_feature() -> None:
    """The lab folder's files (state.py, records.py) and the model's values are read without any
    feature: a lab that is no classroom never loads the classroom's code to be read."""
    features = ("labctl.classroom", "labctl.cache", "labctl.hosts", "labctl.stacking", "labctl.commands")
    found = [f"{name} imports {m}" for name in ("state.py", "records.py", "seating.py", "raw.py")
             for m in labctl_imports((PACKAGE / name).read_text()) if m.startswith(features)]
    assert found == []
