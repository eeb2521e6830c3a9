"""A stranger's git repository read without its configuration: a shadow repository of labctl's own.

A repository's own config can make git run programs: `core.fsmonitor` when the index is read,
`diff.external` for `git diff`, a `filter.*.clean` command for `git add`, `core.sshCommand`... Lab
folders come from strangers, and with them the checkouts `devstack.projects` and `devstack.repo` name,
and the mirrors of `devstack.git_base`: git on the host never runs with such a repository as its
GIT_DIR. It runs with a shadow instead: a temporary repository with labctl's own config and hooks
(none), the source's HEAD and refs copied (small files), its objects borrowed through `alternates`
(nothing copied). A checkout's working tree is read through the shadow as the work tree.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labctl.errors import LabctlError

_CONFIG = "[core]\n\trepositoryformatversion = 0\n\tbare = true\n"
_MAX_POINTER = 4096  # a .git file ("gitdir: ..."), or commondir: one short line


def git_dirs(folder: Path) -> tuple[Path, Path]:
    """(its own git dir, the common one holding objects and refs) of a checkout or a bare repository.
    A checkout's .git may be a file naming its git dir (`git worktree`, submodules), whose commondir
    names the main repository's."""
    dot = folder / ".git"
    if dot.is_file() and not dot.is_symlink():
        text = dot.read_text(errors="replace")[:_MAX_POINTER].strip()
        if not text.startswith("gitdir:"):
            raise LabctlError(f"{dot} is neither a folder nor a gitdir: pointer", hint=f"git -C {folder} status")
        own = (folder / text.removeprefix("gitdir:").strip()).resolve()
    else:
        own = dot if dot.is_dir() else folder
    common = own
    pointer = own / "commondir"
    if pointer.is_file() and not pointer.is_symlink():
        common = (own / pointer.read_text(errors="replace")[:_MAX_POINTER].strip()).resolve()
    return own, common


@contextmanager
def shadow_of(folder: Path) -> Iterator[Path]:
    """A temporary shadow of the repository of `folder` (a checkout or a bare repository), removed
    after: its HEAD, packed-refs and refs (symlinks kept as links, never followed), objects through
    alternates, labctl's config. A repository that cannot be read is a LabctlError naming it."""
    # On disk: the working tree's new files are written into it (/tmp may be memory).
    with tempfile.TemporaryDirectory(prefix="labctl-shadow-", dir="/var/tmp") as tmp:
        shadow = Path(tmp) / "shadow.git"
        try:
            own, common = git_dirs(folder)
            for sub in ("refs/heads", "refs/tags", "objects/info"):
                (shadow / sub).mkdir(parents=True)
            for source, name in ((own, "HEAD"), (common, "packed-refs"), (common, "shallow")):
                if (source / name).is_file() and not (source / name).is_symlink():
                    shutil.copyfile(source / name, shadow / name)
            if (common / "refs").is_dir():
                shutil.copytree(common / "refs", shadow / "refs", dirs_exist_ok=True, symlinks=True)
            (shadow / "objects" / "info" / "alternates").write_text(f"{(common / 'objects').resolve()}\n")
            (shadow / "config").write_text(_CONFIG)
        except (OSError, shutil.Error) as exc:
            raise LabctlError(f"cannot read the git repository in {folder}: {exc}",
                              hint=f"check that you can read it: ls -la {folder}") from None
        yield shadow
