"""A lab's record of its DevStack runs (state.json in the lab's folder), read and written here only.

    {"format": 1, "stack": {MACHINE: StackRecord}, "discover_hosts": "what discover_hosts.sh did"}

The file is labctl's, but people edit such files by hand: a record that cannot be read (a string
where a mapping belongs, a number where text does) counts as "never ran", so that labctl runs
DevStack there again; it never makes a command crash.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from labctl.state import LabDir

FORMAT = 1
STATUSES = ("ok", "failed", "skipped", "started", "interrupted")


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def _optional_text(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) else None


def _number(raw: dict[str, Any], key: str) -> int | None:
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

    def to_dict(self) -> dict[str, Any]:
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
    data: dict[str, Any] = {"format": FORMAT, "stack": {n: r.to_dict() for n, r in state.stack.items()}}
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
