"""A cloned classroom across hypervisor hosts: each seat's host, and the stacked base sent once to
every other host that has seats (through libvirt's volume streams, storage.py), its bytes shown."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labctl.errors import LabctlError
from labctl.machine_status import lab_status

if TYPE_CHECKING:
    from pathlib import Path

    from labctl.machine_status import HostAccess, MachineStatus
    from labctl.model import Lab
    from labctl.protocols import HypervisorPort, Reporter
    from labctl.state import LabDir


BOOT_TIMEOUT = 900.0  # a seat booting a stacked DevStack under software emulation, several at once


@dataclass(frozen=True)
class Hosts:
    """The libvirt of each seat's host: this machine's, or another's (`access`, the Context)."""

    here: HypervisorPort
    access: HostAccess | None
    where: Mapping[str, str | None]  # seat -> its host (None: this machine)

    def on(self, host: str | None) -> HypervisorPort:
        if host is None or self.access is None:
            return self.here
        return self.access.hypervisor_on(host)

    def booted_anew(self, doms: Mapping[str, str], timeout: float) -> Callable[[], None]:
        """Mark the DHCP leases of the seats' domains (`doms`: seat -> domain) now, before they start
        on a new disk; the function returned waits until each has asked DHCP since (or `timeout`).
        Until then libvirt still lists the lease of the disk before, which a new disk that asks under
        another client id leaves behind: its address would be taken for the seat's, and its card
        fenced to it (labctl.adapters.hypervisor.leases)."""
        before = {seat: self.on(self.where.get(seat)).lease_expiries(dom) for seat, dom in doms.items()}

        def wait() -> None:
            deadline = time.monotonic() + timeout
            waiting = dict(before)
            while waiting and time.monotonic() < deadline:
                for seat in list(waiting):
                    if renewed(waiting[seat], self.on(self.where.get(seat)).lease_expiries(doms[seat])):
                        del waiting[seat]
                if waiting:
                    time.sleep(2)

        return wait

    def group(self, seats: Sequence[str]) -> dict[str | None, list[str]]:
        """Seats by host, this machine's first."""
        groups: dict[str | None, list[str]] = {}
        for seat in sorted(seats, key=lambda s: (self.where.get(s) is not None, self.where.get(s) or "", s)):
            groups.setdefault(self.where.get(seat), []).append(seat)
        return groups


def renewed(before: Mapping[str, float] | None, now: Mapping[str, float] | None) -> bool:
    """Whether a card asked DHCP since `before` (its newest lease expires later, or it has its first).
    Without lease lists (None: libvirt's test driver) there is nothing to wait for. Pure."""
    if before is None or now is None:
        return True
    return any(expiry > before.get(mac, float("-inf")) for mac, expiry in now.items())


def send_base(hv: HypervisorPort, base: Path, host: str | None, there: HypervisorPort, beside: str,
               reporter: Reporter) -> Path:
    """The base sent once to another host's pool, the bytes shown as they go: its path there."""
    began = time.monotonic()
    sent = [0]
    where = f"host {host}" if host else "this machine"

    def on_bytes(n: int) -> None:
        sent[0] = n
        reporter.step(f"sending the base to {where}: {n / 2**20:.0f} MiB so far")

    copy = hv.send_base(base, there, beside, on_bytes)
    seconds = time.monotonic() - began
    reporter.step(f"{where} has the base: {sent[0] / 2**20:.0f} MiB sent in {seconds:.0f} s"
                  f" ({sent[0] / 2**20 / max(seconds, 0.001):.0f} MiB/s)")
    return copy


def wait_for_addresses(lab: Lab, lab_dir: LabDir, hosts: Hosts, names: Sequence[str]) -> list[MachineStatus]:
    """Until every seat has its own DHCP lease on the management network. Never an address of the lab
    network: a copy answers on seat-01's lab address until it is made its own seat, and labctl would
    then reach seat-01 instead."""

    network = ipaddress.IPv4Network(lab.cidr)

    def leased(s: MachineStatus) -> bool:
        return bool(s.state == "running" and s.ssh_address and ipaddress.IPv4Address(s.ssh_address) not in network)

    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        statuses = lab_status(lab_dir, hosts.here, hosts.access)
        waiting = [s.name for s in statuses if s.name in names and not leased(s)]
        if not waiting:
            return statuses
        if time.monotonic() > deadline:
            raise LabctlError(f"{', '.join(waiting)} got no address within {BOOT_TIMEOUT:.0f} s after cloning",
                              hint="labctl status shows them; labctl halt and resume, then labctl stack")
        time.sleep(3)
