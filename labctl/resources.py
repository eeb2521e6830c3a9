"""Where the data shipped with labctl lives: Vagrantfile.j2, boxes/, local.conf.d/.

In the repository they sit at the top level (the design card's layout); an installed wheel carries
them in labctl/data/ (see pyproject.toml's force-include). Editable installs read the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_path(name: str) -> Path:
    for candidate in (_PACKAGE / "data" / name, _PACKAGE.parent / name):
        if candidate.exists():
            return candidate
    # Not a user error: the installation itself is broken.
    raise FileNotFoundError(f"labctl is installed without its data file {name!r} (looked in {_PACKAGE})")
