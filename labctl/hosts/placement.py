"""Which host each machine goes to, by free memory, with the arithmetic shown. Pure.

A machine that already exists stays where it is (records say where): `up` never moves a machine.
A machine pinned in lab.yaml (`host: rack2`) goes to that host. The others go, largest first, to
the host with the most memory left after its reserve: a class spreads over the hosts instead of
filling the first one. A lab that does not fit the hosts together is refused before anything is made.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labctl.errors import LabctlError, NotEnoughResources

if TYPE_CHECKING:
    from labctl.hosts.inventory import HostEntry
    from labctl.protocols import HostCapacity


@dataclass(frozen=True)
class HostRoom:
    """A host of the inventory and what libvirt said of it (or why it could not be asked)."""

    entry: HostEntry
    capacity: HostCapacity | None = None
    error: str | None = None  # the host could not be reached

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def free_mb(self) -> int:
        """Memory for new machines: what running domains leave of the total, no more than the host
        says it has available, less the reserve. 0 for a host that could not be asked."""
        cap = self.capacity
        if cap is None:
            return 0
        left = cap.memory_total_mb - cap.memory_domains_mb
        if cap.memory_available_mb is not None:
            left = min(left, cap.memory_available_mb)
        return max(0, left - self.entry.reserve_mb)

    @property
    def cpus(self) -> int:
        return self.capacity.cpus if self.capacity else 0


@dataclass(frozen=True)
class Need:
    """A machine to place: its memory to find (0 when it runs already) and where it must go."""

    name: str
    memory_mb: int
    cpus: int
    pin: str | None = None  # host named in lab.yaml
    kept: str | None = None  # host it already lives on (lab records)
    running: bool = False


@dataclass(frozen=True)
class Placement:
    hosts: dict[str, str]  # machine -> host
    rooms: tuple[HostRoom, ...]
    needs: tuple[Need, ...] = field(default=())

    def on(self, host: str) -> list[str]:
        return [m for m, h in self.hosts.items() if h == host]

    def lines(self) -> list[str]:
        """Per host: its machines and the arithmetic of the memory they take of what it has free."""
        taken = _taken(self.needs, self.hosts)
        out = []
        for room in self.rooms:
            names = self.on(room.name)
            if room.error:
                out.append(f"{room.name}: unreachable ({room.error})")
                continue
            memory = taken.get(room.name, [])
            free = f"{room.free_mb} MiB free"
            used = f"{sum_text(memory)} of {free}" if memory else f"nothing new; {free}"
            out.append(f"{room.name}: {len(names)} machine(s) ({_names(names)}): {used}")
        return out


class HostUnknown(LabctlError):
    """lab.yaml pins a machine to a host the inventory does not have."""


def place(needs: Sequence[Need], rooms: Sequence[HostRoom]) -> Placement:
    by_name = {r.name: r for r in rooms}
    free = {r.name: r.free_mb for r in rooms}
    hosts: dict[str, str] = {}
    for need in needs:
        wanted = need.kept or need.pin
        if wanted is None:
            continue
        if wanted not in by_name:
            where = "lives on" if need.kept else "is pinned to"
            raise HostUnknown(f"{need.name} {where} host {wanted!r}, which is not in the host inventory"
                              f" (hosts: {', '.join(by_name)})",
                              hint="add the host to hosts.yaml (labctl hosts shows them), or change host: in lab.yaml")
        hosts[need.name] = wanted
        free[wanted] -= need.memory_mb
    # Largest first, each to the host with the most memory left: spreads, and packs big seats early.
    for need in sorted((n for n in needs if n.name not in hosts), key=lambda n: (-n.memory_mb, n.name)):
        candidates = [r for r in rooms if r.error is None and r.cpus >= need.cpus]
        if not candidates:
            break
        best = max(candidates, key=lambda r: (free[r.name], -rooms.index(r)))
        if free[best.name] < need.memory_mb:
            break
        hosts[need.name] = best.name
        free[best.name] -= need.memory_mb
    placement = Placement(_in_order(hosts, needs, rooms), tuple(rooms), tuple(needs))
    _check(placement, free)
    return placement


def _in_order(hosts: dict[str, str], needs: Sequence[Need], rooms: Sequence[HostRoom]) -> dict[str, str]:
    """Alike machines (same memory and CPUs, neither pinned nor kept) swapped so that each host gets
    a run of consecutive names: seats 1-6 on the first host, 7-8 on the next, as a trainer counts."""
    order = {r.name: i for i, r in enumerate(rooms)}
    groups: dict[tuple[int, int], list[str]] = {}
    for need in needs:
        if need.name in hosts and not need.pin and not need.kept:
            groups.setdefault((need.memory_mb, need.cpus), []).append(need.name)
    result = dict(hosts)
    for names in groups.values():
        targets = sorted((hosts[n] for n in names), key=order.__getitem__)
        result.update(zip(sorted(names), targets, strict=True))
    return result


def _check(placement: Placement, free: dict[str, int]) -> None:
    needs, rooms = placement.needs, placement.rooms
    unplaced = [n for n in needs if n.name not in placement.hosts]
    overfull = [r for r in rooms if free[r.name] < 0]
    if not unplaced and not overfull:
        return
    down = [r.name for r in rooms if r.error]
    wanted = [n.memory_mb for n in needs if n.memory_mb]
    room_text = " + ".join(f"{r.name} {r.free_mb}" for r in rooms if not r.error) or "none reachable"
    total = sum(r.free_mb for r in rooms if not r.error)
    message = (f"the lab does not fit the hosts: its machines to start need {sum_text(wanted)}; the hosts have"
               f" {room_text} = {total} MiB free after their reserves")
    if overfull:
        message += "; " + ", ".join(f"{r.name} is short of {-free[r.name]} MiB for the machines that must go there"
                                    for r in overfull)
    if unplaced:
        wide = [n.name for n in unplaced if all(n.cpus > r.cpus for r in rooms if not r.error)]
        message += f"; {len(unplaced)} machine(s) find no room ({_names([n.name for n in unplaced])})"
        if wide:
            message += f"; {_names(wide)} want more vCPUs than any host has"
    if down:
        message += f" (unreachable: {', '.join(down)})"
    raise NotEnoughResources(message, hint="use fewer or smaller machines, add a host to hosts.yaml (labctl hosts),"
                                           " or stop other VMs on the hosts")


def _taken(needs: Sequence[Need], hosts: dict[str, str]) -> dict[str, list[int]]:
    taken: dict[str, list[int]] = {}
    for need in needs:
        if need.memory_mb and need.name in hosts:
            taken.setdefault(hosts[need.name], []).append(need.memory_mb)
    return taken


def sum_text(values: list[int], unit: str = "MiB") -> str:
    """'2 x 4096 + 8192 = 16384 MiB': the arithmetic of a refusal."""
    parts = [f"{n} x {v}" if n > 1 else str(v) for v, n in sorted(Counter(values).items(), reverse=True)]
    if len(values) == 1:
        return f"{values[0]} {unit}"  # no arithmetic to show
    return f"{' + '.join(parts) or '0'} = {sum(values)} {unit}"


def _names(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
