"""Git mirrors served from the host to a lab's machines: the only place labctl runs `git daemon`.

A served folder (mirrors.Served) is first copied into labctl's cache (`<cache>/git/<name>`), and the
copy is what git daemon serves:
- the source may be read-only, a course's folder or a CI share, and may be damaged in the ways copies
  of repositories are (empty `refs/` folders dropped by whatever copied them: git then no longer
  takes the folder for a repository);
- a folder from a stranger's lab must not hand the machines anything but its repositories: the copy
  has a config of labctl's own (never the source's), no hooks, no alternates (which would serve
  another repository's objects from the host), and no symbolic links (refused);
- the copy is made again only when the source changed (a fingerprint of names, sizes and times).
Objects are hard-linked where the file system allows it, so that a large mirror costs no space.

git daemon listens on the lab network's host address only (never on every interface), read-only
(upload-pack only: git daemon enables no push), for the folders of that lab only, and it dies with
the labctl that started it (setpriv --pdeathsig): a killed labctl leaves no server behind.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from labctl import supervisor
from labctl.errors import LabctlError
from labctl.mirrors import GIT_PORT, Served, is_git_dir
from labctl.proc import CommandFailed, run
from labctl.state import locked

# What is not copied from a source repository: its config (replaced), hooks, reflogs, a work tree's
# index, and alternates (objects from elsewhere on the host).
_SKIPPED = {"config", "hooks", "logs", "index", "objects/info/alternates", "objects/info/http-alternates"}
MAX_REPOSITORIES = 2000
MAX_ENTRIES = 20_000  # looked at per folder, when looking for repositories
MAX_FILES = 2_000_000
_CONFIG = "[core]\n\trepositoryformatversion = {version}\n\tfilemode = true\n\tbare = true\n"


class MirrorError(LabctlError):
    pass


def _entries(folder: Path) -> list[Path]:
    """A folder's entries; an unreadable folder has none (a git_base may name any folder)."""
    try:
        return list(itertools.islice(folder.iterdir(), MAX_ENTRIES))
    except OSError:
        return []


def repositories(served: Served) -> dict[str, Path]:
    """Served path (`openstack/keystone.git`) -> the source's git directory."""
    if not served.tree:
        git_dir = served.source if is_git_dir(served.source) else served.source / ".git"
        return {"": git_dir}
    repos: dict[str, Path] = {}
    for org in sorted(p for p in _entries(served.source) if p.is_dir() and not p.is_symlink()):
        for entry in sorted(_entries(org)):
            if entry.is_symlink() or not entry.is_dir():
                continue
            if is_git_dir(entry):
                git_dir = entry
            elif is_git_dir(entry / ".git"):
                git_dir = entry / ".git"
            else:
                continue
            name = entry.name if entry.name.endswith(".git") else entry.name + ".git"
            repos[f"{org.name}/{name}"] = git_dir
            if len(repos) > MAX_REPOSITORIES:
                raise MirrorError(f"devstack.git_base: {served.source} holds more than {MAX_REPOSITORIES}"
                                  " repositories", hint="point it at a folder of DevStack's mirrors only")
    if not repos:
        raise MirrorError(f"devstack.git_base: {served.source} holds no git repository laid out as"
                          " FOLDER/openstack/NAME.git",
                          hint="clone mirrors there: git clone --mirror https://opendev.org/openstack/keystone"
                               " FOLDER/openstack/keystone.git")
    return repos


def _files(git_dir: Path) -> list[Path]:
    """Every file of a git directory that the copy takes, relative to it; symbolic links refused."""
    out = []
    for top, dirs, files in os.walk(git_dir):
        here = Path(top).relative_to(git_dir)
        for name in list(dirs):
            rel = here / name
            if rel.as_posix() in _SKIPPED:
                dirs.remove(name)
            elif (git_dir / rel).is_symlink():
                raise MirrorError(f"{git_dir / rel} is a symbolic link: labctl serves no file from outside"
                                  " a mirror", hint="replace the link by the folder it points to")
        for name in files:
            rel = here / name
            if rel.as_posix() in _SKIPPED or name.endswith(".lock"):
                continue
            if (git_dir / rel).is_symlink() or not (git_dir / rel).is_file():
                raise MirrorError(f"{git_dir / rel} is not a plain file (a link or a device): labctl serves"
                                  " no file from outside a mirror", hint="replace it by a plain file")
            out.append(rel)
            if len(out) > MAX_FILES:
                raise MirrorError(f"{git_dir} has more than {MAX_FILES} files",
                                  hint="repack it: git -C REPO repack -a -d")
    return out


def _fingerprint(repos: dict[str, Path]) -> tuple[str, dict[str, list[Path]], int]:
    digest = hashlib.sha256()
    files: dict[str, list[Path]] = {}
    size = 0
    for served_path, git_dir in sorted(repos.items()):
        files[served_path] = _files(git_dir)
        for rel in files[served_path]:
            st = (git_dir / rel).stat()
            size += st.st_size
            digest.update(f"{served_path}\0{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest(), files, size


def _object_format(git_dir: Path) -> str | None:
    try:
        out = run(["git", "config", "--file", str(git_dir / "config"), "--get", "extensions.objectformat"])
    except CommandFailed:
        return None  # not set (exit 1), or no config at all
    return out.strip() or None


def _copy_repository(git_dir: Path, files: list[Path], dest: Path) -> None:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[0] == "objects":
            try:  # objects never change in place: a hard link costs nothing
                os.link(git_dir / rel, target)
                continue
            except OSError:
                pass
        shutil.copyfile(git_dir / rel, target)
    for folder in ("refs/heads", "refs/tags", "objects/info", "objects/pack"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
    object_format = _object_format(git_dir)
    config = _CONFIG.format(version=1 if object_format else 0)
    if object_format:
        config += f"[extensions]\n\tobjectformat = {object_format}\n"
    (dest / "config").write_text(config)
    try:
        heads = run(["git", "--git-dir", str(dest), "for-each-ref", "--format=%(objectname)", "refs/heads",
                     "refs/tags"]).split()
        if not heads:
            raise CommandFailed(["git", "for-each-ref"], 1, "no branch or tag")
        run(["git", "--git-dir", str(dest), "cat-file", "-e", heads[0]])
    except CommandFailed as exc:
        raise MirrorError(f"{git_dir} is not a usable git repository ({exc.tail.splitlines()[-1:] or exc.code})",
                          hint="check it with: git --git-dir REPO fsck") from None


def prepare(served: Served, root: Path) -> Path:
    """The cache's copy of a served folder, made or refreshed; returns its path."""
    if not served.source.is_dir():
        raise MirrorError(f"{served.source} is no folder", hint="check devstack.git_base and devstack.repo")
    repos = repositories(served)
    fingerprint, files, size = _fingerprint(repos)
    dest = root / (served.name if served.tree else served.name + ".git")
    stamp = dest / ".labctl-source.json"
    try:
        if json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
            return dest
    except (OSError, ValueError, AttributeError):
        pass
    root.mkdir(parents=True, exist_ok=True)
    # Two labctl (two labs) may refresh the same copy at once: one at a time.
    with locked(root / f".{dest.name}.lock"):
        try:
            if json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
                return dest  # the other one just made it
        except (OSError, ValueError, AttributeError):
            pass
        _replace(served, repos, files, size, fingerprint, root, dest)
    return dest


def _replace(served: Served, repos: dict[str, Path], files: dict[str, list[Path]], size: int, fingerprint: str,
             root: Path, dest: Path) -> None:
    free = shutil.disk_usage(root).free
    if size > free:
        raise MirrorError(f"no room for a copy of {served.source}: {size // 2**20} MiB needed,"
                          f" {free // 2**20} MiB free in {root}", hint="free some disk, or set LABCTL_CACHE")
    partial = root / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for served_path, git_dir in repos.items():
            _copy_repository(git_dir, files[served_path], partial / served_path if served_path else partial)
        (partial / ".labctl-source.json").write_text(json.dumps({"source": str(served.source),
                                                               "fingerprint": fingerprint}))
        old = root / f".{dest.name}.old-{os.getpid()}"
        if dest.exists():
            dest.rename(old)
        partial.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


class GitServer:
    """`git daemon` serving prepared copies on one address, for as long as the object lives."""

    def __init__(self, root: Path, address: str, log: Path, port: int = GIT_PORT) -> None:
        self.root = root
        self.address = address
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, paths: Sequence[Path], timeout: float = 10) -> None:
        if shutil.which("git") is None:
            raise LabctlError("git is not installed on this host", hint="./install.sh installs it")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # git-daemon itself, not `git daemon` (a git that would run it as its child): the death
        # signal and the pid in its log are then the daemon's own.
        daemon = Path(run(["git", "--exec-path"]).strip()) / "git-daemon"
        argv = ["setpriv", "--pdeathsig", "TERM", str(daemon), f"--listen={self.address}", f"--port={self.port}",
                f"--base-path={self.root}", "--export-all", "--reuseaddr", "--verbose", "--timeout=120",
                "--init-timeout=30", "--max-connections=64", *map(str, paths)]
        with self.log.open("ab") as handle:
            handle.write(f"--- {time.strftime('%F %T')} serving {', '.join(map(str, paths))}\n".encode())
        proc = self.proc = supervisor.spawn(argv, self.log)
        # git daemon says "[PID] Ready to rumble" once it listens (an answer on the port could come
        # from another program that holds it).
        ready = f"[{proc.pid}] Ready to rumble"
        if supervisor.wait_until(proc, lambda: ready in self.log.read_text(errors="replace"), timeout):
            return
        if proc.poll() is not None:
            said = self.log.read_text(errors="replace")
            last = [line for line in said.splitlines() if f"[{proc.pid}]" in line][-1:]
            hint = (f"another program listens on port {self.port} of {self.address}: stop it"
                    if "allocate" in " ".join(last) or "in use" in " ".join(last)
                    else f"the whole log is in {self.log}")
            self.proc = None
            raise LabctlError(f"git daemon could not serve the mirrors on {self.address}:{self.port}"
                              f" ({' '.join(last) or f'exit {proc.returncode}'})", hint=hint)
        self.stop()
        raise LabctlError(f"git daemon did not start serving on {self.address}:{self.port} within {timeout:.0f} s",
                          hint=f"see {self.log}")

    def stop(self) -> None:
        if self.proc is not None:
            supervisor.end(self.proc, 5)
        self.proc = None

    def __enter__(self) -> GitServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
