"""What use-cases ask of the outside systems: small protocols and the values they answer with, met by
the adapters (labctl.adapters: hypervisor for libvirt, vagrant for Vagrant, ssh for Fabric) and by the
fakes tests hand in through a Context.

Use-cases are typed with these, never with an adapter's class: a fake that answers the same calls
is as good as libvirt to them, and a second host is one more object answering them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from labctl.errors import LabctlError

if TYPE_CHECKING:
    from labctl.cancel import CancelToken
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
    """A host's memory, CPUs and disk as libvirt tells them, for placing machines across hosts."""

    cpus: int
    memory_total_mb: int
    memory_domains_mb: int  # held by its running domains
    memory_available_mb: int | None  # free + cache by the host's own count; None if libvirt cannot say
    accelerator: str  # "kvm", else the best libvirt offers ("qemu": software emulation)
    domains_running: int
    disk_free_gb: int | None = None  # free in its storage pool; None: not known (no pool on it yet)
    disk_path: str = ""  # where that is: "storage pool default", or this machine's folder


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
    def base_named(self, name: str) -> Path | None: ...
    def overlay_disks(self, base: Path, clones: list[str]) -> None: ...
    def send_base(self, base: Path, to: HypervisorPort, beside: str, on_bytes: Callable[[int], None]) -> Path: ...
    def lease_expiries(self, name: str) -> dict[str, float] | None: ...
    def disk_origin(self, domain: str) -> str | None: ...
    def keep_image(self, domain: str, name: str) -> tuple[Path, int]: ...
    def image_overlay(self, image: Path, name: str) -> Path: ...
    def image_volumes(self, prefix: str) -> dict[str, tuple[Path, int]]: ...
    def image_users(self, path: Path) -> list[str]: ...
    def remove_image(self, path: Path) -> bool: ...
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
    def box_volume(self, box: str) -> str | None: ...
    def box_add(self, name: str, url: str, force: bool = False) -> None: ...


class Reporter(Protocol):
    """Where a use-case says what it is doing: labctl.ui's console, or a test's recorder."""

    def step(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def machines(self, names: Sequence[str], verb: str) -> AbstractContextManager[MachineProgress]: ...


class MachineProgress(Protocol):
    def update(self, name: str, text: str) -> None: ...


@dataclass(frozen=True)
class SshTarget:
    """How labctl reaches one machine over SSH: its address, the lab's key for it, the lab's known_hosts."""

    name: str
    address: str
    user: str
    key_file: Path
    known_hosts: Path
    port: int = 22
    proxy_command: str | None = None  # through the machine's hypervisor host, when that is another machine


@dataclass(frozen=True)
class CommandResult:
    """One machine's answer to a command run on many: its output, or why the command never ran."""

    name: str
    exit_code: int | None  # None: the command never ran (see error)
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class HostKeyChanged(LabctlError):
    exit_code = 1

    def __init__(self, target: SshTarget) -> None:
        super().__init__(f"{target.name}: the host key of {target.address} changed since labctl first saw it:"
                         " refusing to connect",
                         hint=f"if the machine was recreated, remove its line from {target.known_hosts}")


class VagrantMissing(LabctlError):
    """vagrant, or its libvirt provider, is not usable."""


class SshUnreachable(LabctlError):
    exit_code = 1


class RemoteCommandFailed(LabctlError):
    """A command in a machine exited non-zero: carries the command, exit code and last lines."""

    exit_code = 1

    def __init__(self, host: str, what: str, code: int, output: str) -> None:
        self.code = code
        self.tail = "\n".join(output.strip().splitlines()[-30:])
        last = self.tail.splitlines()[-1] if self.tail else "no output"
        super().__init__(f"{host}: {what} failed (exit {code}): {last}")


class SessionPort(Protocol):
    """One SSH connection to a machine, for a sequence of commands and uploads (a context manager)."""

    target: SshTarget

    def __enter__(self) -> SessionPort: ...
    def __exit__(self, *exc: object) -> None: ...
    def run(self, command: str, what: str, *, on_line: Callable[[str], None] | None = None,
            check: bool = True, timeout: float | None = None) -> tuple[int, str]: ...
    def upload_private(self, data: bytes) -> str: ...
    def upload_file(self, local: Path) -> str: ...


class SshPort(Protocol):
    """SSH to a lab's machines, for one run: its cancel token ends every wait and open session."""

    cancel: CancelToken

    def session(self, target: SshTarget) -> SessionPort: ...
    def wait(self, target: SshTarget, timeout: float, interval: float = 2.0) -> None: ...
    def run_parallel(self, targets: Sequence[SshTarget], command: str, timeout: float | None = None,
                     on_done: Callable[[CommandResult], None] | None = None) -> dict[str, CommandResult]: ...
    def forget(self, known_hosts: Path, addresses: Sequence[str]) -> None: ...
    def public_key(self, private_key: Path) -> str: ...
    def make_key(self, private_key: Path) -> None: ...
