"""Use-case: lab.yaml's day-one resources made in a stacked machine (images, flavors, keypair, rules).

Run once DevStack has stacked on a machine that serves the APIs (all-in-one or controller), before its
`stacked` snapshot (so that `reset` keeps them), by `up` and `stack`, and alone by `labctl cloud`.
Image files go from the lab's folder to the machine over SSH, each into a new 0600 file the script
deletes once uploaded to Glance; nothing is read from anywhere else on the host.
"""

from __future__ import annotations

import functools
import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labctl import records
from labctl.cloud.guest import DAY_ONE_SCRIPT
from labctl.cloud.spec import CloudSpec
from labctl.errors import LabctlError
from labctl.machine_status import MachineStatus, host_of, running

if TYPE_CHECKING:
    from labctl.model import Lab
    from labctl.protocols import SessionPort, SshPort
    from labctl.state import LabDir

API_ROLES = ("allinone", "controller")
STATES = ("created", "present", "replaced", "ok", "failed")  # "ok": a health check (labctl.cloud.health)


@dataclass(frozen=True)
class Outcome:
    kind: str  # image, flavor, keypair, rule (or cloud: the script could not start)
    name: str
    state: str  # one of STATES
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    def line(self) -> str:
        return f"{self.kind} {self.name}: {self.state}" + (f" ({self.detail})" if self.detail else "")


def parse_outcomes(output: str) -> list[Outcome]:
    """The script's JSON lines among whatever else it printed. Pure."""
    found = []
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        if isinstance(raw, dict) and raw.get("state") in STATES and all(
                isinstance(raw.get(k), str) for k in ("kind", "name", "state", "detail")):
            found.append(Outcome(raw["kind"], raw["name"], raw["state"], raw["detail"]))
    return found


def make_resources(session: SessionPort, spec: CloudSpec,
                   on_line: Callable[[str], None] | None = None) -> list[Outcome]:
    """Make what `spec` asks in the machine `session` reaches; every resource's outcome, failures too."""
    uploaded = {image.name: session.upload_file(image.file) for image in spec.images if image.file is not None}
    told = spec.as_json(uploaded)
    return run_script(session, DAY_ONE_SCRIPT, told, "making the day-one resources", on_line,
                      list(uploaded.values()))


def run_script(session: SessionPort, script: str, told: dict[str, object], what: str,
               on_line: Callable[[str], None] | None = None, uploads: Sequence[str] = ()) -> list[Outcome]:
    """One of labctl.cloud.guest's scripts run as root in the machine, its spec in a 0600 file: each
    outcome as it comes, then all; a script that stopped otherwise is one failed outcome more."""
    spec_file = session.upload_private(json.dumps(told).encode())
    script_file = session.upload_private(script.encode())

    def each(line: str) -> None:
        if on_line is not None:
            for outcome in parse_outcomes(line):
                on_line(outcome.line())

    leftovers = [script_file, spec_file, *uploads]
    code, output = session.run(shlex.join(["sudo", "python3", script_file, spec_file])
                               + f"; rc=$?; rm -f {shlex.join(leftovers)}; exit $rc", what, on_line=each, check=False)
    outcomes = parse_outcomes(output)
    if code not in (0, 3) or (code == 3 and not any(o.failed for o in outcomes)):
        last = output.strip().splitlines()[-1:] or [f"exit {code}"]
        outcomes.append(Outcome("cloud", "script", "failed", f"stopped with exit {code}: {last[0][-300:]}"))
    return outcomes


def make_cloud(ssh: SshPort, lab: Lab, lab_dir: LabDir, statuses: Sequence[MachineStatus], names: Sequence[str],
               on_line: Callable[[str, str], None]) -> dict[str, list[Outcome]]:
    """`labctl cloud`: the day-one resources made again (only what is missing) on the lab's machines
    that serve the APIs and have stacked, or on those named. Every machine's outcomes, in order."""
    if not lab.cloud:
        raise LabctlError(f"lab {lab.name!r} asks for no day-one resources",
                          hint="add a cloud: section to lab.yaml (images, flavors, keypair, security_group_rules)")
    api = [m.name for m in lab.machines if m.role in API_ROLES]
    wrong = [n for n in names if n not in api]
    if wrong:
        raise LabctlError(f"{', '.join(wrong)}: no machine of lab {lab.name!r} that serves the APIs",
                          hint=f"day-one resources are made on {', '.join(api)}")
    stacked = records.read(lab_dir).stack
    chosen = list(names) or [n for n in api if n in stacked and stacked[n].ok]
    if not chosen:
        raise LabctlError(f"no machine of lab {lab.name!r} has stacked yet", hint="labctl up stacks them first")
    by_name = {s.name: s for s in statuses}
    running([by_name[n] for n in chosen], lab.name)
    found: dict[str, list[Outcome]] = {}
    for name in chosen:
        with ssh.session(host_of(lab_dir, by_name[name])) as session:
            found[name] = make_resources(session, lab.cloud, functools.partial(on_line, name))
    return found
