"""DevStack into a machine: cloned there from a URL (a mirror labctl serves, or the internet), or pushed
from a checkout on the host, as it is (uncommitted changes included, .git too).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from labctl.errors import LabctlError
from labctl.mirrors import DevstackSource, redact
from labctl.protocols import RemoteCommandFailed, SessionPort

STACK_HOME = "/opt/stack"
DEVSTACK_DIR = f"{STACK_HOME}/devstack"

# $1 repo URL, $2 branch, $3 destination. Clones once; later runs switch branch if it changed (from
# the URL given now: a mirror's address may have changed).
CLONE_SCRIPT = r"""
set -eu
repo=$1; branch=$2; dest=$3
if [ -d "$dest/.git" ]; then
  git -C "$dest" remote set-url origin "$repo"
  current=$(git -C "$dest" rev-parse --abbrev-ref HEAD)
  if [ "$current" != "$branch" ]; then
    git -C "$dest" fetch origin "$branch" && git -C "$dest" checkout -B "$branch" FETCH_HEAD
  fi
else
  git clone --branch "$branch" "$repo" "$dest"
fi
"""

# $1 address, $2 port: can this machine reach labctl's git server on the host?
GIT_SERVER_CHECK = """timeout 15 bash -c ': < "/dev/tcp/$0/$1"' "$1" "$2" 2>&1"""

# $1 uploaded tarball, $2 destination: replace DevStack's tree with the pushed one, as stack.
UNPACK_SCRIPT = r"""
set -eu
tarball=$1; dest=$2
rm -rf "$dest.new" && mkdir "$dest.new"
tar -xzf "$tarball" -C "$dest.new"
rm -rf "$dest" && mv "$dest.new" "$dest"
"""


# A DevStack checkout is about 30 MiB with its history: a folder far larger is not one to push.
MAX_DEVSTACK_BYTES = 2 * 2**30


def _folder_bytes(folder: Path, limit: int) -> int:
    """Bytes of the regular files under `folder` (symlinks not followed), counted up to past `limit`."""
    total = 0
    for root, _dirs, files in os.walk(folder):  # a link to a folder is not walked into
        for name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
        if total > limit:
            break
    return total


@contextlib.contextmanager
def devstack_tarball(folder: Path) -> Iterator[Path]:
    """A DevStack checkout on the host (a mirror, or a developer's tree with its changes), .git included,
    as a gzipped tarball in a temporary file (streamed to the machine, never held in memory); links
    stay links. A folder past MAX_DEVSTACK_BYTES is refused: a lab folder's `devstack.repo` may name
    any folder with a stack.sh in it."""
    if not (folder / "stack.sh").is_file():
        raise LabctlError(f"devstack.repo: {folder} is no DevStack checkout (it has no stack.sh)",
                          hint="point devstack.repo at a DevStack clone, or at a git URL")
    size = _folder_bytes(folder, MAX_DEVSTACK_BYTES)
    if size > MAX_DEVSTACK_BYTES:
        raise LabctlError(f"devstack.repo: {folder} holds more than {MAX_DEVSTACK_BYTES // 2**20} MiB of files:"
                          " too much for a DevStack checkout to push to the machines",
                          hint="point devstack.repo at a clean DevStack clone, or at a git URL")
    # On disk, not in /tmp (which may be memory).
    with tempfile.NamedTemporaryFile(prefix="labctl-devstack-", suffix=".tar.gz", dir="/var/tmp") as out:
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            tar.add(folder, arcname=".", filter=lambda info: None if info.name.endswith("/local.conf") else info)
        out.flush()
        yield Path(out.name)


def check_git_server(session: SessionPort, address: str, port: int) -> None:
    code, out = session.run(shlex.join(["sh", "-c", GIT_SERVER_CHECK, "check", address, str(port)]),
                            "reaching labctl's git server", check=False)
    if code != 0:
        last = out.strip().splitlines()[-1:] or [f"exit {code}"]
        raise RemoteCommandFailed(session.target.name, f"reaching the host's git mirrors at {address}:{port}", code,
                                  f"{last[0]} (a firewall on the host? allow TCP {port} from the lab's network)")


def obtain_devstack(session: SessionPort, source: DevstackSource, branch: str) -> str:
    """Clone inside the machine, or push from the host's checkout. Returns how."""
    as_stack = ["sudo", "-u", "stack", "-H"]
    if source.folder is not None:
        with devstack_tarball(source.folder) as tarball:
            tmp = session.upload_file(tarball)
        session.run(f"chmod 0644 {shlex.quote(tmp)} && "
                    + shlex.join([*as_stack, "sh", "-c", UNPACK_SCRIPT, "unpack", tmp, DEVSTACK_DIR])
                    + f"; rc=$?; rm -f {shlex.quote(tmp)}; exit $rc", "pushing DevStack from the host")
        return f"pushed from {source.folder}"
    assert source.url is not None
    session.run(shlex.join([*as_stack, "sh", "-c", CLONE_SCRIPT, "clone", source.url, branch, DEVSTACK_DIR]),
                f"cloning {redact(source.url)} ({branch})")
    return f"cloned {redact(source.url)} {branch}"
