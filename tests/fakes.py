"""Fakes of labctl's protocols (labctl.protocols), for testing use-cases without libvirt or Vagrant.

Why fakes here, when real libvirt and Vagrant run on this machine: these tests are about what a
use-case asks of the outside and what it makes of the answers (the order of calls, a refusal before
anything is made), including answers the real systems give only rarely. The adapters themselves are
tested against the real things (test_hypervisor.py, test_vagrant_driver.py, the VM tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labctl.isolation import Fence
from labctl.protocols import Capacity, DomainInfo, HostCapacity, SnapshotInfo


@dataclass
class FakeHost:
    """A libvirt host: its domains are a dict name -> state; `calls` records what was asked."""

    uri: str = "fake:///"
    domains: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 64 * 1024
    cpus: int = 16
    disk_gb: int = 500
    stubborn: set[str] = field(default_factory=set)  # domains that ignore a clean shutdown
    calls: list[tuple[str, object]] = field(default_factory=list)
    closed: bool = False

    def capacity(self, pool_name: str = "default") -> Capacity:
        return Capacity(self.cpus, self.memory_mb, self.memory_mb - self._held(), self.disk_gb, "fake pool")

    def host_capacity(self) -> HostCapacity:
        running = [d for d, s in self.domains.items() if s == "running"]
        return HostCapacity(self.cpus, self.memory_mb, self._held(), None, "kvm", len(running))

    def _held(self) -> int:
        return 1024 * sum(1 for s in self.domains.values() if s == "running")

    def domain(self, name: str) -> DomainInfo | None:
        state = self.domains.get(name)
        if state is None:
            return None
        running = state == "running"
        return DomainInfo(name, state, 1024, 1, ("192.168.121.5",) if running else (), 60.0 if running else None)

    def domains_of(self, lab_folder: Path) -> list[str]:
        return []

    def shut_down(self, names: list[str], timeout: float, on_state: Callable[[str, str], None]) -> list[str]:
        self.calls.append(("shut_down", list(names)))
        for name in names:
            self.domains[name] = "shutoff"
            on_state(name, "halted")
        return [n for n in names if n in self.stubborn]

    def remove_leftovers(self, domains: list[str], network: str, owner: Path | None = None) -> list[str]:
        self.calls.append(("remove_leftovers", (list(domains), network)))
        removed = [d for d in domains if d in self.domains]
        for d in removed:
            del self.domains[d]
        return removed

    def snapshots(self, domain: str) -> list[SnapshotInfo]:
        return []

    def take_snapshot(self, domain: str, name: str, description: str) -> SnapshotInfo:
        raise NotImplementedError("not asked by the use-cases these fakes test")

    def revert_snapshot(self, domain: str, name: str) -> None:
        raise NotImplementedError("not asked by the use-cases these fakes test")

    def delete_snapshot(self, domain: str, name: str) -> bool:
        return False

    def management_address(self) -> str:
        self.calls.append(("management_address", None))
        return "192.168.121.1"

    def clone_disks(self, template: str, clones: list[str]) -> Path:
        raise NotImplementedError("not asked by the use-cases these fakes test")

    def lease_expiries(self, name: str) -> dict[str, float] | None:
        return None  # as libvirt's test driver: no lease lists, nothing to wait for

    def start(self, names: list[str]) -> None:
        self.calls.append(("start", list(names)))
        for name in names:
            self.domains[name] = "running"

    def mark_started(self, names: list[str]) -> None:
        self.calls.append(("mark_started", list(names)))

    def fence(self, domain: str, fences: list[Fence], host_tcp: list[int]) -> None:
        self.calls.append(("fence", [domain, *(f.network for f in fences)]))

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeVagrant:
    """Vagrant: `up` makes the named machines' domains run on `host`; every call is recorded."""

    host: FakeHost
    lab: str = ""
    boxes: set[str] = field(default_factory=lambda: {"labctl/debian-12"})
    calls: list[tuple[str, object]] = field(default_factory=list)

    def check_plugin(self) -> None:
        self.calls.append(("check_plugin", None))

    def validate(self, directory: Path) -> None:
        self.calls.append(("validate", (directory / "Vagrantfile").is_file()))

    def up(self, machines: list[str], on_progress: Callable[[str, str], None]) -> None:
        self.calls.append(("up", list(machines)))
        for m in machines:
            on_progress(m, "booted")
            self.host.domains[f"labctl-{self.lab}-{m}"] = "running"

    def destroy(self) -> None:
        self.calls.append(("destroy", None))
        for name in [d for d in self.host.domains if d.startswith(f"labctl-{self.lab}-")]:
            del self.host.domains[name]

    def box_names(self) -> set[str]:
        return set(self.boxes)

    def box_list(self) -> list[tuple[str, str, str]]:
        return [(b, "libvirt", "1") for b in sorted(self.boxes)]

    def box_add(self, name: str, url: str, force: bool = False) -> None:
        self.calls.append(("box_add", name))
        self.boxes.add(name)
