"""Which host each machine goes to, by free memory, CPUs and disk, with the arithmetic shown. Pure.

A machine that already exists stays where it is (records say where): `up` never moves a machine.
A machine pinned in lab.yaml (`host: rack2`) goes to that host. The others go, largest first, to
the host with the most memory left after its reserve, among those with the CPUs and the free disk
in their storage pool for it: a class spreads over the hosts instead of filling the first one. A lab
that does not fit the hosts together is refused before anything is made.
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

    @property
    def disk_free_gb(self) -> int | None:
        """Free disk in the host's storage pool; None when libvirt cannot tell yet (no pool made)."""
        return self.capacity.disk_free_gb if self.capacity else None


@dataclass(frozen=True)
class Need:
    """A machine to place: its memory to find (0 when it runs already), the disk it will fill (0 when
    it exists already), and where it must go."""

    name: str
    memory_mb: int
    cpus: int
    pin: str | None = None  # host named in lab.yaml
    kept: str | None = None  # host it already lives on (lab records)
    running: bool = False
    disk_gb: int = 0


@dataclass(frozen=True)
class Placement:
    hosts: dict[str, str]  # machine -> host
    rooms: tuple[HostRoom, ...]
    needs: tuple[Need, ...] = field(default=())

    def on(self, host: str) -> list[str]:
        return [m for m, h in self.hosts.items() if h == host]

    def lines(self) -> list[str]:
        """Per host: its machines and the arithmetic of the memory and disk they take of what it has free."""
        taken = _taken(self.needs, self.hosts, "memory_mb")
        filled = _taken(self.needs, self.hosts, "disk_gb")
        out = []
        for room in self.rooms:
            names = self.on(room.name)
            if room.error:
                out.append(f"{room.name}: unreachable ({room.error})")
                continue
            memory = taken.get(room.name, [])
            free = f"{room.free_mb} MiB free"
            used = f"{sum_text(memory)} of {free}" if memory else f"nothing new; {free}"
            if room.disk_free_gb is not None:
                disk = filled.get(room.name, [])
                used += (f"; {sum_text(disk, 'GB')} of " if disk else "; ") + f"{room.disk_free_gb} GB of disk free"
            out.append(f"{room.name}: {len(names)} machine(s) ({_names(names)}): {used}")
        return out


class HostUnknown(LabctlError):
    """lab.yaml pins a machine to a host the inventory does not have."""


def place(needs: Sequence[Need], rooms: Sequence[HostRoom]) -> Placement:
    by_name = {r.name: r for r in rooms}
    free = {r.name: r.free_mb for r in rooms}
    disk = {r.name: r.disk_free_gb for r in rooms}  # None: not known, so not held to it
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
        _take(need, wanted, hosts, free, disk)
    # Largest first, each to the host with the most memory left among those it fits: spreads, and
    # packs big seats early.
    for need in sorted((n for n in needs if n.name not in hosts), key=lambda n: (-n.memory_mb, n.name)):
        candidates = [r for r in rooms if r.error is None and r.cpus >= need.cpus and free[r.name] >= need.memory_mb
                      and _disk_takes(disk[r.name], need.disk_gb)]
        if candidates:
            best = max(candidates, key=lambda r: (free[r.name], -rooms.index(r)))
            _take(need, best.name, hosts, free, disk)
    placement = Placement(_in_order(hosts, needs, rooms), tuple(rooms), tuple(needs))
    _check(placement, free, disk)
    return placement


def _disk_takes(left: int | None, gb: int) -> bool:
    return left is None or left >= gb


def _take(need: Need, host: str, hosts: dict[str, str], free: dict[str, int], disk: dict[str, int | None]) -> None:
    hosts[need.name] = host
    free[host] -= need.memory_mb
    left = disk[host]
    if left is not None:
        disk[host] = left - need.disk_gb


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


def _check(placement: Placement, free: dict[str, int], disk: dict[str, int | None]) -> None:
    needs, rooms = placement.needs, placement.rooms
    unplaced = [n for n in needs if n.name not in placement.hosts]
    overfull = [r for r in rooms if free[r.name] < 0]
    short = [(r.name, -left) for r in rooms if (left := disk[r.name]) is not None and left < 0]
    if not unplaced and not overfull and not short:
        return
    down = [r.name for r in rooms if r.error]
    wanted = [n.memory_mb for n in needs if n.memory_mb]
    room_text = " + ".join(f"{r.name} {r.free_mb}" for r in rooms if not r.error) or "none reachable"
    total = sum(r.free_mb for r in rooms if not r.error)
    message = (f"the lab does not fit the hosts: its machines to start need {sum_text(wanted)}; the hosts have"
               f" {room_text} = {total} MiB free after their reserves")
    known = [r for r in rooms if not r.error and r.disk_free_gb is not None]
    filling = [n.disk_gb for n in needs if n.disk_gb]
    if known and filling:
        message += (f"; and up to {sum_text(filling, 'GB')} of disk; the hosts have"
                    f" {' + '.join(f'{r.name} {r.disk_free_gb}' for r in known)}"
                    f" = {sum(r.disk_free_gb or 0 for r in known)} GB free")
    if overfull:
        message += "; " + ", ".join(f"{r.name} is short of {-free[r.name]} MiB for the machines that must go there"
                                    for r in overfull)
    if short:
        message += "; " + ", ".join(f"{name} is short of {gb} GB of disk for the machines that must go there"
                                    for name, gb in short)
    if unplaced:
        wide = [n.name for n in unplaced if all(n.cpus > r.cpus for r in rooms if not r.error)]
        message += f"; {len(unplaced)} machine(s) find no room ({_names([n.name for n in unplaced])})"
        if wide:
            message += f"; {_names(wide)} want more vCPUs than any host has"
    if down:
        message += f" (unreachable: {', '.join(down)})"
    raise NotEnoughResources(message, hint="use fewer or smaller machines, add a host to hosts.yaml (labctl hosts),"
                                           " stop other VMs on the hosts, or free disk in their storage pools")


def _taken(needs: Sequence[Need], hosts: dict[str, str], what: str) -> dict[str, list[int]]:
    """Per host, the memory_mb (or disk_gb) of each machine placed there that needs any."""
    taken: dict[str, list[int]] = {}
    for need in needs:
        value = int(getattr(need, what))
        if value and need.name in hosts:
            taken.setdefault(hosts[need.name], []).append(value)
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
