"""Use-case `labctl sync PROJECT [MACHINE...]`: the developer's checkout, as it is now, brought into the
machines' DevStack without stacking again.

The checkout's working tree becomes a commit in labctl's served copy (worktree.py), served to the
machines as while they stack (stacking.serving: git daemon, and relays to other hosts), and each
machine that stacked runs the sync script (guest.py): fetch, check out, reinstall only when the
requirements or entry points changed, restart the project's services, and the previous code back if
one does not come back. Then the cloud's health, as at the end of `up`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from labctl import records
from labctl.cloud.dayone import Outcome, run_script
from labctl.devloop.guest import SYNC_SCRIPT
from labctl.errors import LabctlError
from labctl.machine_status import MachineStatus, host_of, running
from labctl.mirrors import project_url
from labctl.model import WORKTREE_BRANCH, Lab, Project

if TYPE_CHECKING:
    from labctl.protocols import Reporter, SshPort
    from labctl.stacking.serving import Relayer
    from labctl.state import LabDir

STACK_HOME = "/opt/stack"
# A project's services, as DevStack names its systemd units (devstack@NAME): names starting so.
SERVICE_PREFIXES = {"keystone": ("keystone",), "nova": ("n-",), "placement": ("placement-",), "glance": ("g-",),
                    "neutron": ("q-", "neutron-"), "cinder": ("c-",), "swift": ("s-",), "horizon": ()}
# Services that are no devstack@ unit: Horizon runs in Apache.
OTHER_UNITS = {"horizon": ("apache2.service",)}
# Where DevStack's Apache serves each project's API inside the machine (its uwsgi services). The sync
# script asks those that answer before the sync to answer after it: uwsgi stays "active" without its
# application when the code fails to import, so only a request shows the failure.
APIS = {"keystone": ("/identity/v3",), "nova": ("/compute/v2.1",), "placement": ("/placement",),
        "glance": ("/image",), "neutron": ("/networking",)}


def project_of(lab: Lab, name: str) -> Project:
    found = next((p for p in lab.devstack.projects if p.name == name), None)
    if found is None:
        mapped = ", ".join(p.name for p in lab.devstack.projects) or "none"
        raise LabctlError(f"lab {lab.name!r} stacks no checkout of {name} (devstack.projects: {mapped})",
                          hint=f"add it to lab.yaml (devstack: {{projects: {{{name}: ~/src/{name}}}}}), then"
                               " labctl stack --clean the machines")
    return found


def sync_spec(lab: Lab, project: Project, timeout: float) -> dict[str, object]:
    """What the sync script is told (pure). A library may be imported by any service: every DevStack
    service is restarted, and every API that answers is asked again."""
    if project.library:
        prefixes, units, apis = [""], [], [path for paths in APIS.values() for path in paths]
    else:
        prefixes, units = list(SERVICE_PREFIXES.get(project.name, ())), list(OTHER_UNITS.get(project.name, ()))
        apis = list(APIS.get(project.name, ()))
    return {"dir": f"{STACK_HOME}/{project.name}", "url": project_url(lab, project.checkout),
            "branch": WORKTREE_BRANCH, "prefixes": prefixes, "units": units, "venv": f"{STACK_HOME}/data/venv",
            "apis": [f"http://127.0.0.1{path}" for path in apis],
            "constraints": f"{STACK_HOME}/requirements/upper-constraints.txt", "timeout": timeout}


def chosen_machines(lab: Lab, lab_dir: LabDir, names: Sequence[str]) -> list[str]:
    """The machines named, or every machine of the lab that stacked fine."""
    known = [m.name for m in lab.machines]
    wrong = [n for n in names if n not in known]
    if wrong:
        raise LabctlError(f"{', '.join(wrong)}: no machine of lab {lab.name!r}", hint="labctl status lists them")
    stacked = records.read(lab_dir).stack
    chosen = list(names) or [n for n in known if n in stacked and stacked[n].ok]
    if not chosen:
        raise LabctlError(f"no machine of lab {lab.name!r} has stacked yet", hint="labctl up stacks them first")
    return chosen


def sync_project(ssh: SshPort, lab: Lab, lab_dir: LabDir, statuses: Sequence[MachineStatus], name: str,
                 names: Sequence[str], reporter: Reporter, cache: Path, relay: Relayer | None,
                 on_line: Callable[[str, str], None], timeout: float = 180) -> dict[str, list[Outcome]]:
    """Every chosen machine's steps, in order (a machine whose services did not come back has the
    previous code running again)."""
    from labctl.stacking.pool import machine_pool
    from labctl.stacking.serving import serving_mirrors

    project = project_of(lab, name)
    chosen = chosen_machines(lab, lab_dir, names)
    by_name = {s.name: s for s in statuses}
    running([by_name[n] for n in chosen], lab.name)
    spec = sync_spec(lab, project, timeout)

    def one(machine: str) -> list[Outcome]:
        with ssh.session(host_of(lab_dir, by_name[machine])) as session:
            return run_script(session, SYNC_SCRIPT, spec, f"syncing {name}", functools.partial(on_line, machine))

    with serving_mirrors(lab, lab_dir, cache, reporter, relay), machine_pool(len(chosen), ssh.cancel) as pool:
        futures = {m: pool.submit(one, m) for m in chosen}
        return {m: f.result() for m, f in futures.items()}
