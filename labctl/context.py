"""The Context of a command: built once by the CLI, handed to every use-case. It holds the labs'
home, the cache, the host inventory, and the outside systems behind their protocols
(labctl.protocols), connected at first use and closed once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labctl import records
from labctl.cancel import CancelToken
from labctl.errors import LabctlError
from labctl.state import LabDir, LabHome

if TYPE_CHECKING:
    from labctl.hosts.inventory import HostEntry
    from labctl.protocols import HypervisorPort, SshPort, VagrantPort


@dataclass(frozen=True)
class Context:
    """What a command works with, built once per command: the labs' home, the cache, the host
    inventory, and the outside systems behind their protocols (labctl.protocols). The adapters are
    made by the factories; tests hand in factories that make fakes."""

    home: LabHome
    cache: Path
    libvirt_uri: str
    hosts_file: Path | None = None  # the host inventory; None: this machine alone
    open_hypervisor: Callable[[str], HypervisorPort] | None = None  # URI -> connected; default: libvirt
    make_vagrant: Callable[[Path, Path, str], VagrantPort] | None = None  # folder, log, URI; default: vagrant
    make_ssh: Callable[[CancelToken], SshPort] | None = None  # default: Fabric
    cancel: CancelToken = field(default_factory=CancelToken, compare=False)  # this command's run
    _hypervisor: list[HypervisorPort] = field(default_factory=list, repr=False, compare=False)
    _hosts: dict[str, HypervisorPort] = field(default_factory=dict, repr=False, compare=False)
    _down: dict[str, LabctlError] = field(default_factory=dict, repr=False, compare=False)
    _inventory: list[HostEntry] = field(default_factory=list, repr=False, compare=False)
    _ssh: list[SshPort] = field(default_factory=list, repr=False, compare=False)

    def _open(self, uri: str) -> HypervisorPort:
        if self.open_hypervisor is not None:
            return self.open_hypervisor(uri)
        from labctl.adapters.hypervisor import Hypervisor

        return Hypervisor.open(uri)

    def hypervisor(self) -> HypervisorPort:
        """This machine's libvirt (libvirt_uri), connected at first use."""
        if not self._hypervisor:
            self._hypervisor.append(self._open(self.libvirt_uri))
        return self._hypervisor[0]

    def hosts(self) -> list[HostEntry]:
        """The host inventory (hosts.yaml, read once per command), or this machine alone."""
        if not self._inventory:
            from labctl.hosts.inventory import load_hosts, local_host

            self._inventory.extend(load_hosts(self.hosts_file, self.libvirt_uri) if self.hosts_file
                                   else [local_host(self.libvirt_uri)])
        return list(self._inventory)

    def host_hypervisor(self, entry: HostEntry) -> HypervisorPort:
        """One inventory host's libvirt, connected once per command (LabctlError when it cannot be)."""
        if entry.uri == self.libvirt_uri:
            return self.hypervisor()
        if entry.name in self._down:  # tried once this command: not again for each of its machines
            raise self._down[entry.name]
        if entry.name not in self._hosts:
            from labctl.hosts.transport import host_unreachable, libvirt_uri

            try:
                self._hosts[entry.name] = self._open(libvirt_uri(entry, self.home.root))
            except LabctlError as exc:
                self._down[entry.name] = host_unreachable(entry, exc.message, self.home.root)
                raise self._down[entry.name] from None
        return self._hosts[entry.name]

    def has_inventory(self) -> bool:
        return self.hosts_file is not None and (self.hosts_file.exists() or self.hosts_file.is_symlink())

    def entry(self, host: str) -> HostEntry:
        from labctl.hosts.placement import HostUnknown

        entries = self.hosts()
        found = next((e for e in entries if e.name == host), None)
        if found is None:
            names = ", ".join(e.name for e in entries)
            raise HostUnknown(f"host {host!r} is not in the host inventory (hosts: {names})",
                              hint="a lab's machines live there: put the host back in hosts.yaml (labctl hosts)")
        return found

    def hypervisor_on(self, host: str | None) -> HypervisorPort:
        """The libvirt of the host a machine lives on (None: this machine)."""
        return self.hypervisor() if host is None else self.host_hypervisor(self.entry(host))

    def connect_for(self, lab_dir: LabDir) -> Callable[[str], HypervisorPort]:
        """machine -> a new connection to the libvirt of the host it lives on: its own, for a worker
        thread (libvirt connections are not shared across threads here); the caller closes it."""
        from labctl.hosts.transport import libvirt_uri

        record = records.read_lab(lab_dir)

        def connect(machine: str) -> HypervisorPort:
            m = record.machine(machine)
            return self._open(libvirt_uri(self.entry(m.host), self.home.root) if m and m.host else self.libvirt_uri)
        return connect

    def proxy_for(self, host: str | None) -> str | None:
        """The ProxyCommand to a machine on that host (%h:%p); None for this machine's."""
        if host is None:
            return None
        from labctl.hosts.transport import proxy_command, reached_over_ssh

        entry = self.entry(host)
        return proxy_command(entry, self.home.root) if reached_over_ssh(entry) else None

    def vagrant(self, folder: Path, log: Path) -> VagrantPort:
        """Vagrant run in `folder`, its output appended to `log`."""
        if self.make_vagrant is not None:
            return self.make_vagrant(folder, log, self.libvirt_uri)
        from labctl.adapters.vagrant import VagrantDriver

        return VagrantDriver(folder, log, self.libvirt_uri)

    @staticmethod
    def outside_failure(exc: BaseException) -> LabctlError | None:
        """An outside system's own error that escaped its adapter (libvirt's, when libvirtd went away
        mid-command in a thread of its own), as labctl's; None for anything else."""
        import sys

        if "libvirt" not in sys.modules:
            return None
        from labctl.adapters.hypervisor.connection import as_labctl_error

        return as_labctl_error(exc)

    def ssh(self) -> SshPort:
        """SSH to the lab's machines, for this command's run (its sessions end when it is cancelled)."""
        if not self._ssh:
            if self.make_ssh is not None:
                self._ssh.append(self.make_ssh(self.cancel))
            else:
                from labctl.adapters.ssh import Ssh

                self._ssh.append(Ssh(self.cancel))
        return self._ssh[0]

    def close(self) -> None:
        for hypervisor in [*self._hypervisor, *self._hosts.values()]:
            hypervisor.close()
        self._hypervisor.clear()
        self._hosts.clear()
