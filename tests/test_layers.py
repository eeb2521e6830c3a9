"""The house's walls: each outside system has one adapter, and nothing else imports its library."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "labctl"
# library -> the one module allowed to import it
ADAPTERS = {"libvirt": "hypervisor.py", "libvirt_qemu": "hypervisor.py", "vagrant": "vagrant_driver.py",
            "fabric": "remote.py", "paramiko": "remote.py", "invoke": "remote.py"}


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
            if rel != ADAPTERS[library]:
                trespasses.append(f"{rel} imports {library} (only {ADAPTERS[library]} may)")
    assert trespasses == []
