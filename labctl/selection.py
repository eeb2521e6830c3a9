"""Which lab a command acts on: -f FILE, --lab NAME, ./lab.yaml, or the only lab there is.

Kept apart from the lab model so that `labctl status --lab NAME` needs neither YAML nor templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LabctlError, LabNotFound
from labctl.state import LabDir, LabHome

if TYPE_CHECKING:
    from collections.abc import Callable

    from labctl.catalog import Catalog

LAB_FILE = "lab.yaml"


@dataclass(frozen=True)
class LabRequest:
    """What the user named: -f FILE, --lab NAME, or --distro D (with its overrides), or nothing."""

    file: Path | None = None
    lab: str | None = None
    distro: str | None = None
    name: str | None = None
    memory: str | None = None
    cpus: int | None = None
    disk: str | None = None


def only_lab(home: LabHome) -> str:
    """The name of the only lab there is; else an error saying what to pass."""
    names = home.names()
    if not names:
        raise LabNotFound("no lab here: no lab.yaml in this folder and no lab created yet",
                          hint="labctl init writes a lab.yaml; or labctl up --distro debian makes a one-machine lab")
    if len(names) > 1:
        raise LabNotFound(f"several labs exist ({', '.join(names)}); say which", hint="use --lab NAME or -f lab.yaml")
    return names[0]


def existing_lab(home: LabHome, name: str) -> LabDir:
    lab_dir = home.lab(name)
    if not lab_dir.exists():
        known = ", ".join(home.names()) or "none yet"
        raise LabNotFound(f"no lab named {name!r} (labs: {known})",
                          hint="labctl list shows the labs; labctl up creates one")
    return lab_dir


def resolve_lab_dir(req: LabRequest, home: LabHome, catalog_loader: Callable[[], Catalog], cwd: Path) -> LabDir:
    """The folder of an existing lab: --lab NAME, -f FILE, ./lab.yaml, else the only lab."""
    if req.file and req.lab:
        raise LabctlError("-f and --lab both name a lab; give one", hint="-f for a lab file, --lab for a lab by name")
    name = req.lab
    if name is not None and not name.strip():  # `--lab "$UNSET"` must never mean "the only lab"
        raise LabctlError("--lab was given an empty name",
                          hint="name a lab (labctl list shows them); an unset shell variable gives an empty one")
    if name is None and (req.file or (cwd / LAB_FILE).is_file()):
        from labctl.labfile import load_lab

        name = load_lab(req.file or cwd / LAB_FILE, catalog_loader()).name
    return existing_lab(home, name if name is not None else only_lab(home))
