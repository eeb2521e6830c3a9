"""A lab's records, read and written here only:

- lab.json, what `labctl plan` made of the lab file (LabRecord):
    {"format": 1, "name", "source", "labctl", "network", "machines": [MachineRecord], "boxes", "classroom"}
- state.json, its DevStack runs (LabState):
    {"format": 1, "stack": {MACHINE: StackRecord}, "discover_hosts": "what discover_hosts.sh did"}
- snapshots.json, the stack record each snapshot was taken with: {MACHINE: {SNAPSHOT: StackRecord | null}}

The files are labctl's, but people edit such files by hand: a stack record that cannot be read (a
string where a mapping belongs, a number where text does) counts as "never ran", so that labctl runs
DevStack there again; a machine whose name is not a valid name (a path, say) is not the lab's. A
record never makes a command crash, and never leads labctl outside the lab's folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labctl.errors import LabctlError, LabNotFound, show
from labctl.names import valid_name
from labctl.raw import RawMap
from labctl.seating import Classroom, Seat
from labctl.state import LabDir, atomic_write, load_json

FORMAT = 1
LAB_FORMAT = 1
STATUSES = ("ok", "failed", "skipped", "started", "interrupted")


def _text(raw: dict[str, object], key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def _optional_text(raw: dict[str, object], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) else None


def _number(raw: dict[str, object], key: str) -> int | None:
    value = raw.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class StackRecord:
    """One machine's last DevStack run, as labctl saw it."""

    status: str  # one of STATUSES
    phase: str = ""
    seconds: int = 0
    message: str = ""
    dashboard: str | None = None
    keystone: str | None = None
    phases: tuple[tuple[str, float], ...] = ()
    pid: int | None = None  # of the labctl stacking it ("started")
    since: int | None = None
    finished: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_dict(cls, raw: object) -> StackRecord | None:
        if not isinstance(raw, dict) or raw.get("status") not in STATUSES:
            return None
        phases = raw.get("phases")
        return cls(
            status=str(raw["status"]), phase=_text(raw, "phase"), seconds=_number(raw, "seconds") or 0,
            message=_text(raw, "message"), dashboard=_optional_text(raw, "dashboard"),
            keystone=_optional_text(raw, "keystone"),
            phases=tuple((p[0], float(p[1])) for p in (phases if isinstance(phases, list) else ())
                         if isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                         and isinstance(p[1], int | float) and not isinstance(p[1], bool)),
            pid=_number(raw, "pid"), since=_number(raw, "since"), finished=_number(raw, "finished"))

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["phases"] = [[name, seconds] for name, seconds in self.phases]
        return {k: v for k, v in data.items() if v is not None}


@dataclass
class LabState:
    stack: dict[str, StackRecord] = field(default_factory=dict)
    discover_hosts: str | None = None


def read(lab_dir: LabDir) -> LabState:
    raw = lab_dir.read_state()
    stack = raw.get("stack")
    records = {name: record for name, entry in (stack.items() if isinstance(stack, dict) else ())
               if isinstance(name, str) and (record := StackRecord.from_dict(entry)) is not None}
    return LabState(records, _optional_text(raw, "discover_hosts"))


def write(lab_dir: LabDir, state: LabState) -> None:
    data: dict[str, object] = {"format": FORMAT, "stack": {n: r.to_dict() for n, r in state.stack.items()}}
    if state.discover_hosts is not None:
        data["discover_hosts"] = state.discover_hosts
    lab_dir.write_state(data)


def mark(lab_dir: LabDir, machines: list[str], status: str) -> None:
    """Before stacking ("started", with labctl's pid) and when stopped ("interrupted"): a machine
    being stacked is never taken for stacked, whatever happens to labctl meanwhile."""
    state = read(lab_dir)
    for name in machines:
        current = state.stack.get(name)
        if status == "interrupted" and not (current and current.status == "started"):
            continue  # finished before the interruption: its result stays
        state.stack[name] = StackRecord(status, pid=os.getpid(), since=int(time.time()))
    write(lab_dir, state)


def forget(lab_dir: LabDir, machines: list[str]) -> None:
    """Machines created anew have no DevStack, whatever was recorded for their predecessors."""
    state = read(lab_dir)
    if [name for name in machines if state.stack.pop(name, None) is not None]:
        write(lab_dir, state)


# ---------------------------------------------------------------------------------------------
# lab.json


@dataclass(frozen=True)
class MachineRecord:
    name: str
    role: str = ""
    ip: str = ""
    distro: str = ""
    box: str = ""
    user: str = "vagrant"
    memory_mb: int | None = None
    cpus: int | None = None
    disk_gb: int | None = None
    host: str | None = None  # the inventory host it lives on; None: this machine (labctl.hosts)

    @classmethod
    def from_dict(cls, raw: object) -> MachineRecord | None:
        if not isinstance(raw, dict) or not valid_name(raw.get("name")):
            return None
        host = raw.get("host")
        return cls(name=str(raw["name"]), role=_text(raw, "role"), ip=_text(raw, "ip"), distro=_text(raw, "distro"),
                   box=_text(raw, "box"), user=_optional_text(raw, "user") or "vagrant",
                   memory_mb=_number(raw, "memory_mb"), cpus=_number(raw, "cpus"), disk_gb=_number(raw, "disk_gb"),
                   host=host if valid_name(host) else None)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class LabRecord:
    name: str
    source: Path | None = None  # the lab.yaml it is defined by
    labctl: str = ""            # the version that wrote it
    network: str | None = None
    machines: tuple[MachineRecord, ...] = ()
    boxes: dict[str, str] = field(default_factory=dict)  # catalogue box -> the local box used instead
    classroom: Classroom | None = None
    caches: bool = False  # the lab's machines fetch through the host's package caches (labctl.cache)

    @property
    def machine_names(self) -> list[str]:
        return [m.name for m in self.machines]

    def machine(self, name: str) -> MachineRecord | None:
        return next((m for m in self.machines if m.name == name), None)

    def pick(self, names: Sequence[str]) -> list[str]:
        """The named machines, once each (all of the lab's when none is named); unknown names refused."""
        known = self.machine_names
        unknown = [n for n in names if n not in known]
        if unknown:
            raise LabNotFound(f"no machine named {', '.join(map(show, unknown))} in lab {self.name!r}"
                              f" (machines: {', '.join(known)})", hint="labctl status lists the machines")
        return list(dict.fromkeys(names)) or known

    @classmethod
    def from_dict(cls, raw: RawMap, name: str) -> LabRecord:
        version = raw.get("format", LAB_FORMAT)
        if not isinstance(version, int) or version > LAB_FORMAT:
            raise LabctlError(f"lab {name!r}: lab.json is of format {version!r}, which this labctl ({LAB_FORMAT})"
                              " does not know", hint="use the labctl that made this lab, or a newer one")
        machines = raw.get("machines")
        boxes = raw.get("boxes")
        source = _optional_text(raw, "source")
        return cls(
            name=name, source=Path(source) if source else None, labctl=_text(raw, "labctl"),
            network=_optional_text(raw, "network"),
            machines=tuple(m for m in map(MachineRecord.from_dict, machines if isinstance(machines, list) else ())
                           if m is not None),
            boxes={k: v for k, v in boxes.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(boxes, dict) else {},
            classroom=classroom_from_json(raw.get("classroom")), caches=raw.get("caches") is True)

    def to_dict(self) -> dict[str, object]:
        return {"format": LAB_FORMAT, "name": self.name, "source": str(self.source) if self.source else None,
                "labctl": self.labctl, "network": self.network, "machines": [m.to_dict() for m in self.machines],
                "boxes": self.boxes, "classroom": classroom_json(self.classroom) if self.classroom else None,
                "caches": self.caches}


def read_lab(lab_dir: LabDir) -> LabRecord:
    """lab.json, typed; an empty record before the first `plan`."""
    return LabRecord.from_dict(lab_dir.read_meta(), lab_dir.name)


def write_lab(lab_dir: LabDir, record: LabRecord) -> None:
    lab_dir.write_meta(record.to_dict())


def lab_source(lab_dir: LabDir) -> Path:
    """The lab.yaml this lab is defined by (its copy in the lab's folder if none is recorded)."""
    return read_lab(lab_dir).source or lab_dir.lab_file


# What each snapshot remembers of its machine's DevStack (snapshots.json): machine -> snapshot ->
# the stack record at that moment (None: it had not stacked), which `restore` brings back with it.
def _snapshots_file(lab_dir: LabDir) -> Path:
    return lab_dir.path / "snapshots.json"


def _read_snapshots_raw(lab_dir: LabDir) -> dict[str, RawMap]:
    try:
        data = load_json(_snapshots_file(lab_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def snapshot_records(lab_dir: LabDir) -> dict[str, dict[str, StackRecord | None]]:
    """Every snapshot's stack record (a damaged or hand-edited entry reads as "had not stacked")."""
    return {machine: {name: StackRecord.from_dict(raw) for name, raw in kept.items()}
            for machine, kept in _read_snapshots_raw(lab_dir).items()}


def keep_snapshot_record(lab_dir: LabDir, machine: str, name: str, record: StackRecord | None) -> None:
    kept = _read_snapshots_raw(lab_dir)
    kept.setdefault(machine, {})[name] = record.to_dict() if record else None
    atomic_write(_snapshots_file(lab_dir), json.dumps(kept, indent=2, sort_keys=True) + "\n")


def forget_snapshot_record(lab_dir: LabDir, machine: str, name: str) -> None:
    kept = _read_snapshots_raw(lab_dir)
    if kept.get(machine, {}).pop(name, "absent") != "absent":
        atomic_write(_snapshots_file(lab_dir), json.dumps(kept, indent=2, sort_keys=True) + "\n")


# The classroom's record in lab.json (its values are seating.py's; classroom/seats.py reads lab.yaml's section).
def classroom_json(classroom: Classroom) -> dict[str, object]:
    return {"seats": [{"number": s.number, "name": s.name, "trainee": s.trainee, "spare": s.spare, "held": s.held}
                      for s in classroom.seats],
            "address": classroom.address, "listen": classroom.listen,
            "ssh_port": classroom.ssh_port, "web_port": classroom.web_port, "clone": classroom.clone,
            "seat_networks": classroom.seat_networks}


def classroom_from_json(raw: object) -> Classroom | None:
    """The classroom labctl recorded in lab.json; None for a lab without one (or a damaged record,
    which `labctl plan` writes again)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("seats"), list):
        return None
    try:
        seats = tuple(Seat(int(s["number"]), s.get("trainee") if isinstance(s.get("trainee"), str) else None,
                           bool(s.get("spare")), s.get("held") is True or isinstance(s.get("trainee"), str))
                      for s in raw["seats"])
        return Classroom(seats, raw.get("address") if isinstance(raw.get("address"), str) else None,
                         str(raw.get("listen", "0.0.0.0")), int(raw["ssh_port"]), int(raw["web_port"]),  # noqa: S104
                         raw.get("clone") is not False,
                         raw["seat_networks"] if isinstance(raw.get("seat_networks"), bool) else None)
    except (KeyError, TypeError, ValueError):
        return None
