"""Use-case: does the cloud in each machine work? Keystone issues a token, and each service DevStack
enabled (as Keystone's catalog lists them) answers with its parts up: Nova's services, Neutron's agents,
Glance's images. Shown at the end of `up` (so that "ok" means the cloud works, not only that stack.sh
exited 0) and by `labctl status --health`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from labctl import records
from labctl.cloud.dayone import API_ROLES, Outcome, run_script
from labctl.cloud.guest import HEALTH_SCRIPT
from labctl.errors import LabctlError
from labctl.machine_status import MachineStatus, host_of
from labctl.protocols import RemoteCommandFailed, SshUnreachable

if TYPE_CHECKING:
    from labctl.protocols import SshPort
    from labctl.state import LabDir

CHECKS = ("ssh", "keystone", "compute", "network", "image")
PARALLEL = 8
# A machine up for less than this is given until then for its services to answer (they start at its
# boot; under software emulation a compute DevStack's take minutes): its failed checks are asked again.
SETTLE_S = 900


def health_machines(lab_dir: LabDir, statuses: Sequence[MachineStatus]) -> list[str]:
    """The machines whose cloud can be asked: serving the APIs, stacked fine, running."""
    stacked = records.read(lab_dir).stack
    running = {s.name for s in statuses if s.state == "running"}
    return [m.name for m in records.read_lab(lab_dir).machines
            if m.role in API_ROLES and m.name in stacked and stacked[m.name].ok and m.name in running]


def check_health(ssh: SshPort, lab_dir: LabDir, statuses: Sequence[MachineStatus], names: Sequence[str],
                 on_line: Callable[[str, str], None] | None = None) -> dict[str, list[Outcome]]:
    """Each named machine's checks; one that cannot be reached is one failed check."""
    by_name = {s.name: s for s in statuses}

    def ask(name: str) -> list[Outcome]:
        said = functools.partial(on_line, name) if on_line else None
        target = host_of(lab_dir, by_name[name])
        try:
            with ssh.session(target) as session:
                reached = Outcome("health", "ssh", "ok", f"{target.user}@{target.address}"
                                  + (" via its host" if target.proxy_command else ""))
                return [reached, *run_script(session, HEALTH_SCRIPT, {"settle": SETTLE_S}, "asking the cloud how it is",
                                             said)]
        except (SshUnreachable, RemoteCommandFailed, OSError) as exc:
            return [Outcome("health", "ssh", "failed", exc.message if isinstance(exc, LabctlError) else str(exc))]

    if not names:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(names), PARALLEL)) as pool:  # a class: every seat at once
        return dict(zip(names, pool.map(ask, names), strict=True))
