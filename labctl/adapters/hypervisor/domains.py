"""Domains: their states and addresses, when labctl started them, shutting them down, starting them,
finding a lab's, removing what a lab left behind, and the management network every lab joins."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import libvirt

from labctl.adapters.hypervisor import leases
from labctl.adapters.hypervisor.connection import Connected, libvirt_errors
from labctl.errors import LabctlError
from labctl.names import BASE_SUFFIX, MANAGEMENT_NETWORK
from labctl.protocols import DomainInfo

STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "unknown", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down", libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}
# When labctl saw a domain start, kept in the running domain's own live metadata: libvirt forgets it
# when the domain stops, so it never outlives the run it dates, and it reads the same on any host.
STARTED_NS = "https://labctl.invalid/xmlns/started/1"
MANAGEMENT_XML = """<network>
  <name>vagrant-libvirt</name>
  <forward mode="nat"/>
  <ip address="192.168.121.1" netmask="255.255.255.0">
    <dhcp><range start="192.168.121.2" end="192.168.121.254"/></dhcp>
  </ip>
</network>"""


class Domains(Connected):
    @libvirt_errors
    def domain(self, name: str) -> DomainInfo | None:
        dom = self._lookup(name)
        if dom is None:
            return None
        state, _max_kb, memory_kb, vcpus, _cpu_time = dom.info()
        running = state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED)
        return DomainInfo(name=name, state=STATES.get(state, "unknown"), memory_mb=memory_kb // 1024,
                          vcpus=vcpus, addresses=_addresses(dom) if running else (),
                          uptime_s=_uptime(dom) if running else None)

    @libvirt_errors
    def lease_expiries(self, name: str) -> dict[str, float] | None:
        """When each of the domain's cards' newest DHCP lease expires (leases.expiries)."""
        dom = self._lookup(name)
        return leases.expiries(dom) if dom is not None else {}

    @libvirt_errors
    def mark_started(self, names: list[str]) -> None:
        """Date the run of each running domain that has no date yet (labctl just started it)."""
        for name in names:
            dom = self._lookup(name)
            if dom is None or not dom.isActive() or _started_at(dom) is not None:
                continue
            with contextlib.suppress(libvirt.libvirtError):  # a domain gone or stopped meanwhile has no run to date
                dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, f'<started at="{int(time.time())}"/>',
                                "labctl", STARTED_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    @libvirt_errors
    def start(self, names: list[str]) -> None:
        for name in names:
            dom = self.conn.lookupByName(name)
            if not dom.isActive():
                dom.create()
        self.mark_started(names)

    @libvirt_errors
    def shut_down(self, names: list[str], timeout: float, on_state: Callable[[str, str], None]) -> list[str]:
        """Ask every running domain to shut down (ACPI) at once, wait until they are off, and power off
        those still running after `timeout`. Returns the names that had to be powered off."""
        pending: dict[str, libvirt.virDomain] = {}
        for name in names:
            dom = self._lookup(name)
            if dom is None:
                on_state(name, "not created")
                continue
            if not dom.isActive():
                on_state(name, "already off")
                continue
            dom.shutdown()
            on_state(name, "shutting down")
            pending[name] = dom
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            time.sleep(0.5)
            for name in [n for n, dom in pending.items() if not dom.isActive()]:
                del pending[name]
                on_state(name, "halted")
        for name, dom in pending.items():
            dom.destroy()
            on_state(name, f"powered off (no clean shutdown within {timeout:.0f} s)")
        return list(pending)

    @libvirt_errors
    def domains_of(self, lab_folder: Path) -> list[str]:
        """Domains that vagrant-libvirt created from this lab folder (their description says
        "Source: <folder>/Vagrantfile"): found even when labctl lost its own record of them."""
        return sorted(dom.name() for dom in self.conn.listAllDomains() if _source_folder(dom) == str(lab_folder))

    @libvirt_errors
    def remove_leftovers(self, domains: list[str], network: str, owner: Path | None = None) -> list[str]:
        """Remove the given domains (stopped first), their `<domain>.img` volumes in every pool, and the
        lab's network once no domain uses it. Returns what was removed. Never touches other names, nor
        a domain that vagrant created from another folder than `owner` (another lab's, of the same name).
        `network`: the lab's network; its seats' networks go with it."""
        removed: list[str] = []
        kept = set()
        for name in domains:
            dom = self._lookup(name)
            if dom is None:
                continue
            source = _source_folder(dom)
            if owner is not None and source is not None and Path(source) != owner:
                kept.add(name)
                continue
            if dom.isActive():
                dom.destroy()
            _undefine(dom)
            removed.append(f"domain {name}")
        # A domain's disk, and the stacked disk its classroom's clones grew from (storage.py).
        wanted = {f"{name}{suffix}" for name in domains if name not in kept for suffix in (".img", BASE_SUFFIX)}
        for pool in self.conn.listAllStoragePools():
            if not pool.isActive():
                continue
            pool.refresh(0)
            for vol in pool.listAllVolumes():
                if vol.name() in wanted:
                    vol.delete(0)
                    removed.append(f"volume {pool.name()}/{vol.name()}")
        # With the lab's network, its seats' own (labctl.names.seat_network_name: `_` is in no lab's name).
        seats = sorted(n.name() for n in self.conn.listAllNetworks() if n.name().startswith(network + "_"))
        return removed + [gone for name in (network, *seats) for gone in self._remove_network(name)]

    def _remove_network(self, network: str) -> list[str]:
        try:
            net = self.conn.networkLookupByName(network)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return []
            raise
        marker = f"<source network='{network}'"
        if any(marker in dom.XMLDesc(0) for dom in self.conn.listAllDomains()):
            return []  # another domain still uses it
        persistent = net.isPersistent()
        if net.isActive():
            net.destroy()
        if persistent:
            net.undefine()
        return [f"network {network}"]

    @libvirt_errors
    def management_address(self) -> str:
        """The host's address on vagrant-libvirt's management network, which every lab's machines join
        (their eth0). Made here, exactly as vagrant-libvirt makes it, when no lab made it yet: then no lab
        owns it, and no lab's destroy removes it (vagrant-libvirt removes only networks it created)."""
        import xml.etree.ElementTree as ET

        try:
            net = self.conn.networkLookupByName(MANAGEMENT_NETWORK)
        except libvirt.libvirtError:
            net = self.conn.networkDefineXML(MANAGEMENT_XML)
            net.setAutostart(True)
        if not net.isActive():
            net.create()
        ip = ET.fromstring(net.XMLDesc()).find("ip")  # noqa: S314 - libvirt's own XML about its network
        address = ip.get("address") if ip is not None else None
        if not address:
            raise LabctlError(f"libvirt's network {MANAGEMENT_NETWORK} has no IPv4 address for the host",
                              hint=f"virsh net-dumpxml {MANAGEMENT_NETWORK}; remove it when no lab runs (virsh"
                                   f" net-destroy {MANAGEMENT_NETWORK}; virsh net-undefine {MANAGEMENT_NETWORK})")
        return address


def _addresses(dom: libvirt.virDomain) -> tuple[str, ...]:
    """IPv4 addresses from libvirt's DHCP leases (the management network; each card's newest only,
    labctl.adapters.hypervisor.leases says why), then its ARP table."""
    found = list(dict.fromkeys(leases.current(dom).values()))
    try:
        ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP)
    except libvirt.libvirtError:
        ifaces = {}
    for iface in ifaces.values():
        for addr in iface.get("addrs") or ():
            if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and addr["addr"] not in found:
                found.append(addr["addr"])
    return tuple(found)


def _started_at(dom: libvirt.virDomain) -> float | None:
    import xml.etree.ElementTree as ET

    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, STARTED_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return float(ET.fromstring(text).get("at", ""))  # noqa: S314 - what labctl itself wrote
    except (libvirt.libvirtError, ValueError, ET.ParseError):
        return None  # started by something else than labctl, or stopped since


def _uptime(dom: libvirt.virDomain) -> float | None:
    """Seconds since labctl saw the domain start; None when labctl did not start it."""
    at = _started_at(dom)
    return max(0.0, time.time() - at) if at is not None else None


def _source_folder(dom: libvirt.virDomain) -> str | None:
    """The lab folder vagrant-libvirt created a domain from (its description), if it says."""
    try:
        description = dom.metadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None)
    except libvirt.libvirtError:
        return None
    text = description.strip()
    return text[len("Source: "):-len("/Vagrantfile")] if text.startswith("Source: ") and \
        text.endswith("/Vagrantfile") else None


def _undefine(dom: libvirt.virDomain) -> None:
    """Undefine with its saved state, snapshot metadata and NVRAM; drivers that refuse a flag get
    the next simpler call."""
    base = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    for flags in (base | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM, base):
        try:
            dom.undefineFlags(flags)
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                raise
    dom.undefine()
