"""A cloned classroom across hypervisor hosts: each seat's host, and the stacked base sent once to
every other host that has seats (through libvirt's volume streams, storage.py), its bytes shown."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from labctl.machine_status import HostAccess
    from labctl.protocols import HypervisorPort, Reporter


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

    def group(self, seats: Sequence[str]) -> dict[str | None, list[str]]:
        """Seats by host, this machine's first."""
        groups: dict[str | None, list[str]] = {}
        for seat in sorted(seats, key=lambda s: (self.where.get(s) is not None, self.where.get(s) or "", s)):
            groups.setdefault(self.where.get(seat), []).append(seat)
        return groups


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
