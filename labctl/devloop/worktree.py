"""A checkout's working tree as one commit, made in labctl's copy of its repository (the copy
gitserver.prepare keeps in the cache and git daemon serves): a developer rarely commits before trying,
so the machines stack what the files are now, uncommitted changes and new files included (what the
checkout's .gitignore ignores stays out).

The checkout is only read: git runs with the copy as its repository and a temporary index of the
copy's, the checkout as its work tree, so the developer's index, HEAD, branches and objects are never
touched. The commit is the branch `labctl-worktree` of the copy; its parent is the checkout's HEAD,
and it is HEAD itself when nothing differs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from labctl.errors import LabctlError
from labctl.model import WORKTREE_BRANCH as BRANCH

MAX_NEW_BYTES = 256 * 2**20  # new files taken in: a build folder not in .gitignore is refused, not copied


class WorktreeError(LabctlError):
    """A checkout's working tree cannot be taken in."""


def _git(*argv: str, copy: Path | None = None, checkout: Path | None = None, index: Path | None = None) -> str:
    """git in an environment of labctl's only (none of the user's GIT_* variables), its hooks off;
    with `copy`, that repository and `index`, the checkout as work tree."""
    env = {"GIT_AUTHOR_NAME": "labctl", "GIT_AUTHOR_EMAIL": "labctl@localhost", "GIT_COMMITTER_NAME": "labctl",
           "GIT_COMMITTER_EMAIL": "labctl@localhost", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    if copy is not None and checkout is not None and index is not None:
        env.update({"GIT_DIR": str(copy), "GIT_WORK_TREE": str(checkout), "GIT_INDEX_FILE": str(index)})
    done = subprocess.run(["git", "-c", "safe.directory=*", "-c", "core.hooksPath=/dev/null", *argv], env=env, cwd="/",
                          capture_output=True, text=True, errors="surrogateescape", stdin=subprocess.DEVNULL,
                          timeout=600, check=False)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"git {argv[0]} failed"])[-1][:300]
        raise WorktreeError(f"git {argv[0]}: {said}")
    return done.stdout.strip()


def _kept(tree: str, head: str, where: dict[str, Path]) -> str | None:
    """The commit of the last snapshot when it holds this very tree on this HEAD: the same working
    tree is the same commit (a machine already at it has nothing to do)."""
    try:
        last = _git("rev-parse", "--verify", "--quiet", f"refs/heads/{BRANCH}^{{commit}}", **where)
        if _git("rev-parse", f"{last}^{{tree}}", **where) == tree and _git("rev-parse", f"{last}^", **where) == head:
            return last
    except WorktreeError:
        pass
    return None


def _new_files_size(checkout: Path, where: dict[str, Path]) -> int:
    """Bytes of the files git would add that the index (HEAD's tree) does not hold (ignored ones left out)."""
    listed = _git("ls-files", "-z", "--others", "--exclude-standard", **where)
    total = 0
    for name in filter(None, listed.split("\0")):
        path = checkout / name
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def _take(checkout: Path, where: dict[str, Path]) -> tuple[str, str]:
    """The checkout's HEAD and the tree of its working tree, as `git add -A` sees it, written into the
    repository `where` names (labctl's own: the checkout's config is never read)."""
    head = _git("rev-parse", "--verify", "HEAD^{commit}", **where)
    _git("read-tree", head, **where)
    size = _new_files_size(checkout, where)
    if size > MAX_NEW_BYTES:
        raise WorktreeError(f"{checkout} has {size // 2**20} MiB of files git does not track yet: labctl takes"
                            f" at most {MAX_NEW_BYTES // 2**20} MiB of them into the machines",
                            hint="add build folders and virtualenvs to the checkout's .gitignore")
    _git("add", "-A", **where)
    return head, _git("write-tree", **where)


def state(checkout: Path) -> str:
    """The working tree as the machines would get it: HEAD, and the tree's id when it differs from
    HEAD's (uncommitted changes and new files included). Read through a shadow repository
    (labctl.gitshadow): the checkout may be a stranger's, whose config could run programs."""
    from labctl.gitshadow import shadow_of

    try:
        with shadow_of(checkout) as shadow:
            where = {"copy": shadow, "checkout": checkout, "index": shadow / "labctl-index"}
            head, tree = _take(checkout, where)
            same = tree == _git("rev-parse", f"{head}^{{tree}}", **where)
    except WorktreeError as exc:
        raise WorktreeError(f"cannot read the working tree of {checkout}: {exc.message}", hint=exc.hint
                            or f"git -C {checkout} status shows what git makes of it") from None
    return head if same else f"{head}+{tree[:12]}"


def snapshot(checkout: Path, copy: Path) -> str:
    """The working tree of `checkout` as the commit of branch labctl-worktree in `copy`; its id."""
    index = copy / "labctl-index"
    where = {"copy": copy, "checkout": checkout, "index": index}
    try:
        head, tree = _take(checkout, where)
        same = tree == _git("rev-parse", f"{head}^{{tree}}", **where)
        commit = head if same else _kept(tree, head, where) or _git(
            "commit-tree", tree, "-p", head, "-m",
            f"labctl: the working tree of {checkout}, uncommitted changes included", **where)
        _git("update-ref", f"refs/heads/{BRANCH}", commit, **where)
    except WorktreeError as exc:
        raise WorktreeError(f"cannot take the working tree of {checkout}: {exc.message}", hint=exc.hint
                            or f"git -C {checkout} status shows what git makes of it") from None
    finally:
        index.unlink(missing_ok=True)
    return commit
