"""What the machines clone from while they stack, served from this machine: the lab's git mirrors and
DevStack repository (labctl.gitserver), and the developer's checkouts (devstack.projects: their
working tree, labctl.devloop), to the machines on other hosts too (through relays)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LabctlError
from labctl.mirrors import host_address, served_folders
from labctl.model import Lab

if TYPE_CHECKING:
    from labctl.protocols import Reporter
    from labctl.state import LabDir

# (address and port on the host, address and port here: labctl.hosts.relay.Forward)
Relayer = Callable[[Lab, tuple[tuple[str, int, str, int], ...]], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def serving_mirrors(lab: Lab, lab_dir: LabDir, cache: Path, reporter: Reporter,
                    relay: Relayer | None = None) -> Iterator[None]:
    """The lab's git mirrors served on its network's host address while its machines stack, and at
    the same address to its machines on other hosts (`relay`). With no machine here, this machine has
    no lab network: git daemon listens on its loopback, for the relays only."""
    from labctl.gitserver import GitServer, prepare
    from labctl.mirrors import GIT_PORT

    served = served_folders(lab)
    if not served:
        yield
        return
    root = cache / "git"
    paths = []
    checkouts = {p.checkout for p in lab.devstack.projects}
    for folder in served:
        reporter.step(f"preparing the git mirrors of {folder.source} (a copy in {root})")
        paths.append(prepare(folder, root))
        if folder.source in checkouts:  # a developer's checkout: its working tree as it is now
            from labctl.devloop.worktree import snapshot

            commit = snapshot(folder.source, paths[-1])
            reporter.step(f"{folder.source}: its working tree, uncommitted changes included, is commit {commit[:12]}")
    address = host_address(lab.cidr)
    remote = sorted({m.host for m in lab.machines if m.host})
    here = any(m.host is None for m in lab.machines)
    listen, port = (address, GIT_PORT) if here else ("127.0.0.1", _free_port())
    with GitServer(root, listen, lab_dir.logs / "git-daemon.log", port) as server:
        server.start(paths)
        reporter.step(f"serving them to the machines at git://{address}/ while DevStack runs"
                      + (f" (on host {', '.join(remote)}{' too' if here else ''}, through SSH)" if remote else ""))
        if not remote:
            yield
            return
        if relay is None:
            raise LabctlError(f"machines on host {', '.join(remote)} need the git mirrors, and nothing relays them")
        with relay(lab, ((address, GIT_PORT, listen, port),)):
            yield


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
