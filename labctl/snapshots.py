"""Snapshots of a lab's machines: save, list, restore, delete, and `reset` to the `stacked` one.

libvirt takes them (labctl.adapters.hypervisor): internal to each machine's disk, memory included when the
machine runs, so that a restored DevStack runs at once. labctl takes `stacked` by itself after a
machine stacks successfully. Each snapshot also keeps what labctl knew of the machine's DevStack
then (state.json's record), and a restore brings that back with the machine.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labctl import records
from labctl.errors import LabctlError, show
from labctl.names import domain_name
from labctl.state import LabDir

if TYPE_CHECKING:
    from labctl.machine_status import MachineStatus
    from labctl.protocols import HypervisorPort, SnapshotInfo, SnapshotPort, SshPort

STACKED = "stacked"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
SSH_AFTER_RESTORE = 120.0


@dataclass(frozen=True)
class Restored:
    machine: str
    clock_set: bool
    message: str = ""


def check_snapshot_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise LabctlError(f"snapshot name {show(name)}: use letters, digits, '.', '_' and '-' (at most 63)",
                          hint="e.g. labctl snapshot save before-exercise-3")
    return name


def pick(lab_dir: LabDir, names: Sequence[str]) -> list[str]:
    """The named machines (all of the lab's when none is named), refusing names it does not have."""
    return records.read_lab(lab_dir).pick(names)


def save(lab_dir: LabDir, hypervisor: SnapshotPort, machines: Sequence[str], name: str,
         description: str = "") -> list[tuple[str, SnapshotInfo]]:
    check_snapshot_name(name)
    if name == STACKED:  # what `reset` returns to: labctl's alone, with the DevStack record of that moment
        raise LabctlError(f"`{STACKED}` is the snapshot labctl reset returns to; labctl takes it itself when a"
                          " machine has stacked", hint="give your snapshot another name: labctl snapshot save NAME")
    state = records.read(lab_dir).stack
    taken = []
    for machine in machines:
        info = hypervisor.take_snapshot(domain_name(lab_dir.name, machine), name,
                                        description or f"taken by labctl snapshot save ({time.strftime('%F %T')})")
        records.keep_snapshot_record(lab_dir, machine, name, state.get(machine))
        taken.append((machine, info))
    return taken


def take_stacked(lab_dir: LabDir,
                 connect: Callable[[str], HypervisorPort]) -> Callable[[str, records.StackRecord], None]:
    """What stacking calls when a machine has stacked: the `stacked` snapshot, with that record.
    Its own connection each time (`connect`: machine -> its host's libvirt, Context.connect_for): it
    runs in the machine's worker thread."""
    def take(machine: str, record: records.StackRecord) -> None:
        hypervisor = connect(machine)
        try:
            hypervisor.take_snapshot(domain_name(lab_dir.name, machine), STACKED,
                                     f"DevStack stacked, taken by labctl ({time.strftime('%F %T')})")
        finally:
            hypervisor.close()
        records.keep_snapshot_record(lab_dir, machine, STACKED, record)
    return take


def listing(lab_dir: LabDir, hypervisor: SnapshotPort, machines: Sequence[str]) -> dict[str, list[SnapshotInfo]]:
    return {m: hypervisor.snapshots(domain_name(lab_dir.name, m)) for m in machines}


def delete(lab_dir: LabDir, hypervisor: SnapshotPort, machines: Sequence[str], name: str) -> list[str]:
    """The machines that had snapshot `name` (it is gone from them)."""
    gone = []
    for machine in machines:
        if hypervisor.delete_snapshot(domain_name(lab_dir.name, machine), name):
            gone.append(machine)
        records.forget_snapshot_record(lab_dir, machine, name)
    return gone


def drop_all(lab_dir: LabDir, hypervisor: SnapshotPort, machines: Sequence[str]) -> int:
    """Every snapshot of the lab's machines (destroy): libvirt refuses to remove a domain that has some."""
    count = 0
    for machine in machines:
        for info in reversed(hypervisor.snapshots(domain_name(lab_dir.name, machine))):
            count += hypervisor.delete_snapshot(domain_name(lab_dir.name, machine), info.name)
    return count


def restore(lab_dir: LabDir, hypervisor: SnapshotPort, ssh: SshPort, machines: Sequence[str], name: str,
            statuses: Callable[[], Sequence[MachineStatus]], on_step: Callable[[str, str], None],
            ssh_timeout: float = SSH_AFTER_RESTORE) -> list[Restored]:
    """Bring each machine back to snapshot `name`, running, with the DevStack record of that moment;
    then set its clock (it resumes at the time of the snapshot) once SSH answers."""
    check_snapshot_name(name)
    missing = [m for m in machines
               if name not in {s.name for s in hypervisor.snapshots(domain_name(lab_dir.name, m))}]
    if missing:
        raise LabctlError(f"no snapshot {name!r} on {', '.join(missing)}",
                          hint="labctl snapshot list shows them" + (
                              "; `stacked` is taken when a machine stacks successfully (labctl stack)"
                              if name == STACKED else ""))
    kept = records.snapshot_records(lab_dir)
    state = records.read(lab_dir)
    for machine in machines:
        on_step(machine, f"restoring {name}")
        hypervisor.revert_snapshot(domain_name(lab_dir.name, machine), name)
        saved = kept.get(machine, {}).get(name)
        if saved is None:
            state.stack.pop(machine, None)
        else:
            state.stack[machine] = saved
    records.write(lab_dir, state)
    by_name = {s.name: s for s in statuses()}
    with ThreadPoolExecutor(max_workers=max(1, len(machines))) as pool:
        return list(pool.map(lambda m: _set_clock(ssh, lab_dir, by_name[m], on_step, ssh_timeout), machines))


def _set_clock(ssh: SshPort, lab_dir: LabDir, status: MachineStatus, on_step: Callable[[str, str], None],
               timeout: float) -> Restored:
    from labctl.machine_status import host_of
    from labctl.protocols import SshUnreachable

    on_step(status.name, "setting the clock")
    host = host_of(lab_dir, status)
    try:
        ssh.wait(host, timeout)
        with ssh.session(host) as session:
            session.run(f"sudo date -u -s @{int(time.time())} >/dev/null", "setting the clock")
    except (SshUnreachable, LabctlError) as exc:
        return Restored(status.name, False, f"restored, but its clock is behind: {exc.message}")
    on_step(status.name, "done")
    return Restored(status.name, True)
