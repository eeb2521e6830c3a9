"""What DevStack will install with pip, known before it runs: the Python a DevStack-ready box holds
already in DevStack's global virtualenv (devstack.preinstall), as labctl.devstack_packages knows its
apt packages. Pure but for `python_sets`, which reads the mirrors' files on the host.

stack.sh makes /opt/stack/data/venv unless it exists (inc/python: setup_devstack_virtualenv), then
pip-installs each project (`pip install -c upper-constraints.txt -e /opt/stack/keystone`) and a few
packages of its own (os-testr, PyMySQL, python-openstackclient...), every one pinned by the
requirements repository's upper-constraints.txt. Under software emulation that is 5 minutes of a
keystone-only stack and 30 to 40 of a compute stack (bench/results/devstack-compute.md), mostly
building and compiling. Built natively into the box it is seconds; stack.sh then finds every
requirement satisfied. A package missed here costs only time (stack.sh installs it), one too many a
little disk.

The files read come from the lab's mirrors, perhaps a stranger's, and the box is built on the host:
nothing named there may run on it. So only requirement lines of names and versions are taken (no pip
option, URL, path or variable), and the box's pip installs wheels only, whose installation runs no
code of theirs (labctl/boxdata/devstack-venv.sh; a package with no wheel is left to stack.sh).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.model import Lab

# What stack.sh pip-installs beside its projects' requirements (a keystone-only stack of master and
# stable/2026.1: ../shared/devstack-logs; pip and setuptools as setup_devstack_virtualenv upgrades them).
DEVSTACK_PIP = ("pip", "setuptools[core]", "pbr", "os-testr", "PyMySQL", "etcd3gw", "keystonemiddleware",
                "python-memcached", "python-openstackclient")
# A requirement line labctl passes on: a name, extras, version clauses and an environment marker, and
# nothing else (pip reads options, URLs, paths and ${VARIABLES} in requirement files: none of them).
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_CLAUSE = r"(?:===|~=|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_LINE_RE = re.compile(rf"({_NAME})\s*(\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?\s*(?:\(?\s*{_CLAUSE}(?:\s*,\s*{_CLAUSE})*"
                      rf"\s*\)?)?\s*(;[ A-Za-z0-9_.'\"<>=!~(),]*)?")
MAX_FILE = 512 * 1024  # upper-constraints.txt is about 20 KiB


@dataclass(frozen=True)
class PythonSet:
    """What a box's virtualenv is made of: the constraints pip is given, and what it installs."""

    constraints: tuple[str, ...]
    requirements: tuple[str, ...]

    @property
    def digest(self) -> str:
        text = "\n".join([*self.constraints, "--", *self.requirements])
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def requirement_lines(text: str) -> list[str]:
    """The lines of a requirements or constraints file labctl passes on, comments dropped; every
    other line (an option, a URL, a path, a variable) is left out."""
    out = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line and _LINE_RE.fullmatch(line):
            out.append(line)
    return out


def projects_of(services: Iterable[str]) -> list[str]:
    """The projects stack.sh installs from git for these services (keystone, nova...), requirements
    and DevStack itself aside."""
    from labctl.devstack_services import repositories_needed

    names = [repo.rsplit("/", 1)[-1].removesuffix(".git") for repo in repositories_needed(services)]
    return [n for n in names if n != "requirements"]


def python_sets(lab: Lab, local_confs: Mapping[str, str]) -> dict[str, PythonSet]:
    """With devstack.preinstall and the lab's mirrors in a folder on this host: for each catalogue box
    the lab's machines boot, what its virtualenv holds (the projects' requirements of every machine
    booting it, together, and stack.sh's own). {} when there is nothing to read (mirrors at a URL, no
    requirements repository): stack.sh then installs it all itself."""
    from labctl.devstack_services import enabled_services
    from labctl.images.key import branch_of, prefix_of
    from labctl.localconf import parse

    folder = lab.devstack.git_base_folder
    if not lab.devstack.preinstall or folder is None:
        return {}
    wanted: dict[str, list[tuple[str, str]]] = {}  # box -> (project, branch)
    branches: dict[str, set[str]] = {}
    for m in lab.machines:
        if m.name not in local_confs:
            continue
        conf = parse(local_confs[m.name], f"{m.name}'s local.conf")
        localrc = {k: v.strip("'\"") for k, v in conf.variables.items()}
        if any(f"{prefix_of(p)}_REPO" in localrc for p in ("requirements", *projects_of(enabled_services(conf)))):
            continue  # taken from elsewhere than the mirrors: left to stack.sh
        branches.setdefault(m.box, set()).add(branch_of("requirements", localrc, lab.devstack.branch))
        wanted.setdefault(m.box, []).extend((p, branch_of(p, localrc, lab.devstack.branch))
                                            for p in projects_of(enabled_services(conf)))
    checkouts = {p.name: p.checkout for p in lab.devstack.projects}
    out = {}
    for box, projects in wanted.items():
        if len(branches[box]) != 1:
            continue  # machines of one box on different constraints: no one virtualenv fits them all
        constraints = _read(folder / "openstack" / "requirements.git", branches[box].pop(), "upper-constraints.txt")
        if constraints is None:
            continue
        lines = list(DEVSTACK_PIP)
        for project, branch in dict.fromkeys(projects):
            text = (_read_checkout(checkouts[project]) if project in checkouts
                    else _read(folder / "openstack" / f"{project}.git", branch, "requirements.txt"))
            lines += requirement_lines(text or "")
        out[box] = PythonSet(tuple(requirement_lines(constraints)), tuple(dict.fromkeys(lines)))
    return out


def _read(git_dir: Path, branch: str, path: str) -> str | None:
    """A small file of a branch of a mirror on the host, read through a shadow repository (its own
    config never used), or None (no such repository, branch or file, or a large one)."""
    from labctl.errors import LabctlError
    from labctl.gitshadow import shadow_of
    from labctl.proc import CommandFailed, run

    if not git_dir.is_dir():
        return None
    try:
        with shadow_of(git_dir) as shadow:
            git = ["git", "--git-dir", str(shadow)]
            size = run([*git, "cat-file", "-s", f"{branch}:{path}"], cwd=Path("/"))
            if not size.strip().isdigit() or int(size) > MAX_FILE:
                return None
            return run([*git, "cat-file", "blob", f"{branch}:{path}"], cwd=Path("/"))
    except (CommandFailed, LabctlError):
        return None


def _read_checkout(checkout: Path) -> str | None:
    """requirements.txt of a developer's checkout: a regular file of the checkout (never a link)."""
    path = checkout / "requirements.txt"
    if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE:
        return None
    return path.read_text(errors="replace")
