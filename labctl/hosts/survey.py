"""Each host's room, asked of its libvirt in parallel: a host that is down is named, never waited on
by the others, and never taken for an empty one."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from labctl.errors import LabctlError
from labctl.hosts.placement import HostRoom, Need, Placement, place

if TYPE_CHECKING:
    from labctl.hosts.inventory import HostEntry
    from labctl.model import Machine
    from labctl.protocols import HostCapacity


class CapacitySource(Protocol):
    """What the survey needs of a hypervisor (the libvirt adapter, or a fake in tests)."""

    def host_capacity(self) -> HostCapacity: ...


def survey(entries: Sequence[HostEntry], open_host: Callable[[HostEntry], CapacitySource]) -> list[HostRoom]:
    """The inventory's hosts with their capacity, in inventory order. `open_host` connects to one
    (raising LabctlError when it cannot)."""

    def ask(entry: HostEntry) -> HostRoom:
        try:
            return HostRoom(entry, capacity=open_host(entry).host_capacity())
        except LabctlError as exc:  # a listing shows what to do as well
            return HostRoom(entry, error=exc.message + (f" (hint: {exc.hint})" if exc.hint else ""))

    if len(entries) == 1:
        return [ask(entries[0])]
    with ThreadPoolExecutor(max_workers=min(8, len(entries))) as pool:
        return list(pool.map(ask, entries))


def place_machines(machines: Sequence[Machine], entries: Sequence[HostEntry],
                   open_host: Callable[[HostEntry], CapacitySource],
                   kept: Mapping[str, str] | None = None, running: Collection[str] = ()) -> Placement:
    """Where each of a lab's machines goes: asks every host for its room, then places (pure).
    `kept`: machine -> host it already lives on (lab records); `running`: machines whose memory
    is already counted among their host's running domains."""
    kept = kept or {}
    needs = [Need(m.name, 0 if m.name in running else m.memory_mb, m.cpus, pin=m.host, kept=kept.get(m.name),
                  running=m.name in running, disk_gb=0 if m.name in kept else m.disk_filled_gb) for m in machines]
    return place(needs, survey(entries, open_host))
