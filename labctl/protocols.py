"""What use-cases ask of the outside systems: small protocols and the values they answer with, met by
the adapters (labctl.adapters.hypervisor for libvirt, vagrant_driver.py for Vagrant) and by the fakes
tests hand in through a Context.

Use-cases are typed with these, never with an adapter's class: a fake that answers the same calls
is as good as libvirt to them, and a second host is one more object answering them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from labctl.isolation import Fence


@dataclass(frozen=True)
class Capacity:
    """What a host can still give new machines."""

    cpus: int
    memory_total_mb: int
    memory_available_mb: int
    disk_free_gb: int | None  # None: libvirt cannot tell yet (another host, before its pool exists)
    disk_path: str


@dataclass(frozen=True)
class HostCapacity:
    """A host's memory as libvirt tells it, for placing machines across hosts."""

    cpus: int
    memory_total_mb: int
    memory_domains_mb: int  # held by its running domains
    memory_available_mb: int | None  # free + cache by the host's own count; None if libvirt cannot say
    accelerator: str  # "kvm", else the best libvirt offers ("qemu": software emulation)
    domains_running: int


@dataclass(frozen=True)
class DomainInfo:
    name: str
    state: str
    memory_mb: int
    vcpus: int
    addresses: tuple[str, ...]
    uptime_s: float | None  # None: labctl did not start it (or it is not running)


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    created: int  # seconds since the epoch
    state: str    # the domain's state when it was taken: "running" (memory kept) or "shutoff"
    description: str


class HypervisorPort(Protocol):
    """One libvirt host."""

    uri: str

    def capacity(self, pool_name: str = "default") -> Capacity: ...
    def host_capacity(self) -> HostCapacity: ...
    def domain(self, name: str) -> DomainInfo | None: ...
    def domains_of(self, lab_folder: Path) -> list[str]: ...
    def shut_down(self, names: list[str], timeout: float, on_state: Callable[[str, str], None]) -> list[str]: ...
    def remove_leftovers(self, domains: list[str], network: str, owner: Path | None = None) -> list[str]: ...
    def snapshots(self, domain: str) -> list[SnapshotInfo]: ...
    def take_snapshot(self, domain: str, name: str, description: str) -> SnapshotInfo: ...
    def revert_snapshot(self, domain: str, name: str) -> None: ...
    def delete_snapshot(self, domain: str, name: str) -> bool: ...
    def management_address(self) -> str: ...
    def clone_disks(self, template: str, clones: list[str]) -> Path: ...
    def start(self, names: list[str]) -> None: ...
    def mark_started(self, names: list[str]) -> None: ...
    def fence(self, domain: str, fences: list[Fence], host_tcp: list[int]) -> None: ...
    def close(self) -> None: ...


class SnapshotPort(Protocol):
    """Snapshots of domains: one host's libvirt, or a lab's machines across their hosts."""

    def snapshots(self, domain: str) -> list[SnapshotInfo]: ...
    def take_snapshot(self, domain: str, name: str, description: str) -> SnapshotInfo: ...
    def revert_snapshot(self, domain: str, name: str) -> None: ...
    def delete_snapshot(self, domain: str, name: str) -> bool: ...


class VagrantPort(Protocol):
    """Vagrant, run in one folder (a lab's, or labctl's cache for boxes)."""

    def check_plugin(self) -> None: ...
    def validate(self, directory: Path) -> None: ...
    def up(self, machines: list[str], on_progress: Callable[[str, str], None]) -> None: ...
    def destroy(self) -> None: ...
    def box_names(self) -> set[str]: ...
    def box_list(self) -> list[tuple[str, str, str]]: ...
    def box_add(self, name: str, url: str, force: bool = False) -> None: ...


class Reporter(Protocol):
    """Where a use-case says what it is doing: labctl.ui's console, or a test's recorder."""

    def step(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def machines(self, names: Sequence[str], verb: str) -> AbstractContextManager[MachineProgress]: ...


class MachineProgress(Protocol):
    def update(self, name: str, text: str) -> None: ...
