"""libvirt: host capacity, domain states and addresses, snapshots, and removal of what a lab left behind.

The only importer of the libvirt module. The rest of labctl holds a `Hypervisor` (at the end of this
module): one libvirt host by its URI, owning its connection and turning libvirt's errors into labctl's.
Reading states through libvirt takes milliseconds where `vagrant status` takes over a second, so
`labctl status` never starts vagrant.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import libvirt

from labctl.errors import LabctlError
from labctl.isolation import Fence
from labctl.names import MANAGEMENT_NETWORK

DEFAULT_URI = "qemu:///system"
STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "unknown", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down", libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}
IMAGES_DIR = Path("/var/lib/libvirt/images")


class LibvirtUnavailable(LabctlError):
    """libvirtd cannot be reached, or the user may not talk to it."""


def default_uri() -> str:
    return os.environ.get("LABCTL_LIBVIRT_URI") or DEFAULT_URI


def start_hint() -> str:
    if Path("/run/systemd/system").is_dir():
        return "start it: sudo systemctl start libvirtd"
    # PID 1 is not systemd (containers, WSL, some CI): nothing starts daemons by itself.
    return "start it (no systemd here): sudo virtlogd -d && sudo libvirtd -d"


def _ignore_errors(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error to stderr by default; labctl reports them itself."""


def connect(uri: str | None = None) -> libvirt.virConnect:
    uri = uri or default_uri()
    libvirt.registerErrorHandler(_ignore_errors, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        text = str(exc)
        if "ermission denied" in text or "uthentication" in text:
            user = os.environ.get("USER", "$USER")
            raise LibvirtUnavailable(
                f"you may not talk to libvirt at {uri}: {text}",
                hint=f"sudo usermod -aG libvirt {user}, then log out and in again (or: newgrp libvirt)",
            ) from None
        raise LibvirtUnavailable(f"libvirt is not reachable at {uri}: {text}", hint=start_hint()) from None


@dataclass(frozen=True)
class Capacity:
    cpus: int
    memory_total_mb: int
    memory_available_mb: int
    disk_free_gb: int | None  # None: libvirt cannot tell yet (another host, before its pool exists)
    disk_path: str


def capacity(conn: libvirt.virConnect, pool_name: str = "default") -> Capacity:
    """What the host can still give: memory free for new guests, CPUs, and disk where volumes go."""
    info = conn.getInfo()  # [model, memory MiB, cpus, MHz, nodes, sockets, cores, threads]
    available, _total = _node_memory(conn)
    disk_free, disk_path = _disk_free(conn, pool_name)
    return Capacity(cpus=int(info[2]), memory_total_mb=int(info[1]),
                    memory_available_mb=available or int(info[1]),
                    disk_free_gb=disk_free // 1024**3 if disk_free is not None else None, disk_path=disk_path)


def _node_memory(conn: libvirt.virConnect) -> tuple[int | None, int | None]:
    """(available, total) MiB by the host's own count; page cache and buffers are given back on
    demand, so they count as available. (None, None) from libvirt's test driver and drivers that
    keep no node statistics."""
    try:
        stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
    except libvirt.libvirtError:
        return None, None
    return sum(stats.get(k, 0) for k in ("free", "buffers", "cached")) // 1024, int(stats.get("total", 0)) // 1024


def is_local(uri: str) -> bool:
    """A URI of this machine's libvirt (no host part): qemu:///system, test:///default."""
    return "://" in uri and uri.split("://", 1)[1].startswith("/")


@dataclass(frozen=True)
class HostCapacity:
    """A host's memory as libvirt tells it, for placing machines across hosts."""

    cpus: int
    memory_total_mb: int
    memory_domains_mb: int  # held by its running domains
    memory_available_mb: int | None  # free + cache by the host's own count; None if libvirt cannot say
    accelerator: str  # "kvm", else the best libvirt offers ("qemu": software emulation)
    domains_running: int


def host_capacity(conn: libvirt.virConnect) -> HostCapacity:
    info = conn.getInfo()
    total_mb = int(info[1])
    running = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    held_kb = sum(int(d.info()[2]) for d in running)
    available, total = _node_memory(conn)
    # getInfo() counts NUMA nodes' memory, which can miss hot-plugged memory the kernel has.
    total_mb = max(total_mb, total or 0)
    return HostCapacity(cpus=int(info[2]), memory_total_mb=total_mb, memory_domains_mb=held_kb // 1024,
                        memory_available_mb=available, accelerator=_accelerator(conn.getCapabilities()),
                        domains_running=len(running))


def _accelerator(capabilities_xml: str) -> str:
    """"kvm" where libvirt offers KVM guests and the host CPU has vmx/svm (a nested /dev/kvm without
    them opens, and its guests die); else "qemu" (software emulation), or the driver's own kind."""
    import xml.etree.ElementTree as ET

    caps = ET.fromstring(capabilities_xml)  # noqa: S314 - libvirt's own XML about its host
    kinds = {str(d.get("type")) for d in caps.iterfind("guest/arch/domain")}
    features = {str(f.get("name")) for f in caps.iterfind("host/cpu/feature")}
    if "kvm" in kinds and features & {"vmx", "svm"}:
        return "kvm"
    return "qemu" if "qemu" in kinds or "kvm" in kinds else min(kinds, default="none")


def _disk_free(conn: libvirt.virConnect, pool_name: str) -> tuple[int | None, str]:
    """Free bytes where the machines' volumes go, from libvirt's storage pool. Before any lab made
    the pool (vagrant-libvirt makes it in /var/lib/libvirt/images), this machine's disk there; for
    another host, unknown (None): labctl reads no remote file system except through libvirt."""
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        if pool.isActive():
            return int(pool.info()[3]), f"storage pool {pool_name}"
    except libvirt.libvirtError:
        pass
    if not is_local(conn.getURI()):
        return None, f"storage pool {pool_name} (not made yet)"
    path = IMAGES_DIR
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free, str(path)


@dataclass(frozen=True)
class DomainInfo:
    name: str
    state: str
    memory_mb: int
    vcpus: int
    addresses: tuple[str, ...]
    uptime_s: float | None


def domain_info(conn: libvirt.virConnect, name: str) -> DomainInfo | None:
    dom = _lookup(conn, name)
    if dom is None:
        return None
    state, _max_kb, memory_kb, vcpus, _cpu_time = dom.info()
    running = state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED)
    return DomainInfo(name=name, state=STATES.get(state, "unknown"), memory_mb=memory_kb // 1024,
                      vcpus=vcpus, addresses=_addresses(dom) if running else (),
                      uptime_s=_uptime(conn, dom) if running else None)


def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    """The domain, or None if there is none by that name. Any other failure of libvirt (a daemon
    gone mid-command) is raised, never taken for "no such machine"."""
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _addresses(dom: libvirt.virDomain) -> tuple[str, ...]:
    """IPv4 addresses from libvirt's DHCP leases (the management network) and its ARP table."""
    found: list[str] = []
    for source in (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP):
        try:
            ifaces = dom.interfaceAddresses(source)
        except libvirt.libvirtError:
            continue
        for iface in ifaces.values():
            for addr in iface.get("addrs") or ():
                if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and addr["addr"] not in found:
                    found.append(addr["addr"])
    return tuple(found)


# When labctl saw a domain start, kept in the running domain's own live metadata: libvirt forgets it
# when the domain stops, so it never outlives the run it dates, and it reads the same on any host.
STARTED_NS = "https://labctl.invalid/xmlns/started/1"


def _started_at(dom: libvirt.virDomain) -> float | None:
    import xml.etree.ElementTree as ET

    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, STARTED_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return float(ET.fromstring(text).get("at", ""))  # noqa: S314 - what labctl itself wrote
    except (libvirt.libvirtError, ValueError, ET.ParseError):
        return None  # started by something else than labctl, or stopped since


def _uptime(conn: libvirt.virConnect, dom: libvirt.virDomain) -> float | None:
    """Seconds since labctl saw the domain start; None when labctl did not start it."""
    at = _started_at(dom)
    return max(0.0, time.time() - at) if at is not None else None


def mark_started(conn: libvirt.virConnect, names: list[str]) -> None:
    """Date the run of each running domain that has no date yet (labctl just started it)."""
    for name in names:
        dom = _lookup(conn, name)
        if dom is None or not dom.isActive() or _started_at(dom) is not None:
            continue
        with contextlib.suppress(libvirt.libvirtError):  # a domain gone or stopped meanwhile has no run to date
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, f'<started at="{int(time.time())}"/>', "labctl",
                            STARTED_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)


def shut_down(conn: libvirt.virConnect, names: list[str], timeout: float,
              on_state: Callable[[str, str], None]) -> list[str]:
    """Ask every running domain to shut down (ACPI) at once, wait until they are off, and power off
    those still running after `timeout`. Returns the names that had to be powered off."""
    pending: dict[str, libvirt.virDomain] = {}
    for name in names:
        dom = _lookup(conn, name)
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


def domains_of(conn: libvirt.virConnect, lab_folder: Path) -> list[str]:
    """Domains that vagrant-libvirt created from this lab folder (their description says
    "Source: <folder>/Vagrantfile"): found even when labctl lost its own record of them."""
    return sorted(dom.name() for dom in conn.listAllDomains() if _source_folder(dom) == str(lab_folder))


def domain_names(conn: libvirt.virConnect) -> list[str]:
    return sorted(d.name() for d in conn.listAllDomains())


def _source_folder(dom: libvirt.virDomain) -> str | None:
    """The lab folder vagrant-libvirt created a domain from (its description), if it says."""
    try:
        description = dom.metadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None)
    except libvirt.libvirtError:
        return None
    text = description.strip()
    return text[len("Source: "):-len("/Vagrantfile")] if text.startswith("Source: ") and \
        text.endswith("/Vagrantfile") else None


def remove_leftovers(conn: libvirt.virConnect, domains: list[str], network: str,
                     owner: Path | None = None) -> list[str]:
    """Remove the given domains (stopped first), their `<domain>.img` volumes in every pool, and the
    lab's network once no domain uses it. Returns what was removed. Never touches other names, nor
    a domain that vagrant created from another folder than `owner` (another lab's, of the same name)."""
    removed: list[str] = []
    kept = set()
    for name in domains:
        dom = _lookup(conn, name)
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
    # A domain's disk, and the stacked disk its classroom's clones grew from (clone_disks).
    wanted = {f"{name}{suffix}" for name in domains if name not in kept for suffix in (".img", BASE_SUFFIX)}
    for pool in conn.listAllStoragePools():
        if not pool.isActive():
            continue
        pool.refresh(0)
        for vol in pool.listAllVolumes():
            if vol.name() in wanted:
                vol.delete(0)
                removed.append(f"volume {pool.name()}/{vol.name()}")
    try:
        net = conn.networkLookupByName(network)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            return removed
        raise
    if not _network_in_use(conn, network):
        persistent = net.isPersistent()
        if net.isActive():
            net.destroy()
        if persistent:
            net.undefine()
        removed.append(f"network {network}")
    return removed


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


def _network_in_use(conn: libvirt.virConnect, network: str) -> bool:
    marker = f"<source network='{network}'"
    return any(marker in dom.XMLDesc(0) for dom in conn.listAllDomains())


# ---------------------------------------------------------------------------------------------
# Snapshots: internal to the domain's qcow2 disk, memory included when it runs, so that a restored
# DevStack is running at once.


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    created: int  # seconds since the epoch
    state: str    # the domain's state when it was taken: "running" (memory kept) or "shutoff"
    description: str


class SnapshotMissing(LabctlError):
    """The machine has no snapshot by that name."""


def _snapshot_info(snap: libvirt.virDomainSnapshot) -> SnapshotInfo:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(snap.getXMLDesc(0))  # noqa: S314 - libvirt's own XML about our domain
    return SnapshotInfo(snap.getName(), int(root.findtext("creationTime") or 0), root.findtext("state") or "",
                        root.findtext("description") or "")


def snapshots(conn: libvirt.virConnect, domain: str) -> list[SnapshotInfo]:
    dom = _lookup(conn, domain)
    if dom is None:
        return []
    return sorted((_snapshot_info(s) for s in dom.listAllSnapshots()), key=lambda s: (s.created, s.name))


def _domain(conn: libvirt.virConnect, domain: str) -> libvirt.virDomain:
    dom = _lookup(conn, domain)
    if dom is None:
        raise LabctlError(f"libvirt has no domain {domain}", hint="labctl status shows the lab's machines;"
                          " labctl up makes the missing ones")
    return dom


class SnapshotFailed(LabctlError):
    """libvirt could not take, restore or delete a snapshot: its own words."""


def take_snapshot(conn: libvirt.virConnect, domain: str, name: str, description: str) -> SnapshotInfo:
    """Take snapshot `name` of `domain` (running: memory included), replacing one of the same name."""
    try:
        return _take_snapshot(conn, domain, name, description)
    except libvirt.libvirtError as exc:
        raise SnapshotFailed(f"{domain}: libvirt could not take snapshot {name!r}: {exc.get_error_message()}",
                             hint="disks must be qcow2 and the pool must have room for the memory") from None


def _take_snapshot(conn: libvirt.virConnect, domain: str, name: str, description: str) -> SnapshotInfo:
    from xml.sax.saxutils import escape

    dom = _domain(conn, domain)
    # The old one goes first: a snapshot of an older state under this name would be restored by
    # mistake (after a new stack, `stacked` must be the new DevStack, or nothing).
    old = _find_snapshot(dom, name)
    if old is not None:
        old.delete(0)
    xml = (f"<domainsnapshot><name>{escape(name)}</name><description>{escape(description)}</description>"
           "</domainsnapshot>")
    return _snapshot_info(dom.snapshotCreateXML(xml, 0))


def _find_snapshot(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot | None:
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            return None
        raise


def revert_snapshot(conn: libvirt.virConnect, domain: str, name: str) -> None:
    """Bring `domain` back to snapshot `name`, running (a snapshot of a running machine resumes at once)."""
    dom = _domain(conn, domain)
    snap = _find_snapshot(dom, name)
    if snap is None:
        raise SnapshotMissing(f"{domain} has no snapshot {name!r}",
                              hint="labctl snapshot list shows the machine's snapshots")
    fenced = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    try:
        dom.revertToSnapshot(snap, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
    except libvirt.libvirtError as exc:
        raise SnapshotFailed(f"{domain}: libvirt could not restore snapshot {name!r}: {exc.get_error_message()}",
                             hint="labctl status shows the machine; labctl snapshot list its snapshots") from None
    _keep_fences(dom, fenced)


def _keep_fences(dom: libvirt.virDomain, before: str) -> None:
    """A snapshot brings back the domain's XML of its time: a card fenced now (labctl.isolation) stays
    fenced, as it is now, even if the snapshot is older than its filter."""
    from labctl import isolation

    for network, (iface, _mac) in isolation.cards(before).items():
        if not isolation.is_fenced(before, network):
            continue
        for flags, xml in ((libvirt.VIR_DOMAIN_AFFECT_LIVE, dom.XMLDesc()),
                           (libvirt.VIR_DOMAIN_AFFECT_CONFIG, dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))):
            if flags == libvirt.VIR_DOMAIN_AFFECT_LIVE and not dom.isActive():
                continue
            if not isolation.is_fenced(xml, network):
                dom.updateDeviceFlags(isolation.refenced(xml, network, iface), flags)


def delete_snapshot(conn: libvirt.virConnect, domain: str, name: str) -> bool:
    dom = _lookup(conn, domain)
    snap = _find_snapshot(dom, name) if dom is not None else None
    if snap is None:
        return False
    snap.delete(0)
    return True


# ---------------------------------------------------------------------------------------------
# The adapter: one object per libvirt connection


BASE_SUFFIX = ".base.img"


def disk_path(dom: libvirt.virDomain) -> Path:
    """The file of a domain's first disk."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(dom.XMLDesc(0))  # noqa: S314 - libvirt's own XML about our domain
    for disk in root.iter("disk"):
        source = disk.find("source")
        if disk.get("device") == "disk" and source is not None and source.get("file"):
            return Path(source.get("file", ""))
    raise LabctlError(f"domain {dom.name()} has no disk file", hint=f"virsh dumpxml {dom.name()}")


def clone_disks(conn: libvirt.virConnect, template: str, clones: list[str]) -> Path:
    """Make every clone's disk start from the template's, without copying it: the template's disk
    (stacked, shut off) becomes a read-only base, `<template>.base.img` beside it, and the template and
    each clone get a fresh qcow2 overlay on it at their own disk's path (their domains do not change).
    Every domain must be shut off. Returns the base."""
    from labctl.proc import run

    doms = {name: conn.lookupByName(name) for name in [template, *clones]}
    running = [name for name, dom in doms.items() if dom.isActive()]
    if running:
        raise LabctlError(f"cannot clone disks of running machines: {', '.join(running)}",
                          hint="labctl halt them first")
    source = disk_path(doms[template])
    base = source.with_name(f"{template}{BASE_SUFFIX}")
    if base.exists():
        raise LabctlError(f"{base} exists already: this classroom was cloned before",
                          hint="labctl destroy the lab and up again, or labctl stack the seats one by one")
    source.rename(base)
    base.chmod(0o444)
    for name, dom in doms.items():
        path = source if name == template else disk_path(dom)
        if name != template:
            path.unlink(missing_ok=True)
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(path)],
            what=f"qemu-img create (the disk of {name})")
    for pool in conn.listAllStoragePools():
        if pool.isActive():
            pool.refresh(0)
    return base


def start(conn: libvirt.virConnect, names: list[str]) -> None:
    for name in names:
        dom = conn.lookupByName(name)
        if not dom.isActive():
            dom.create()
    mark_started(conn, names)


MANAGEMENT_XML = """<network>
  <name>vagrant-libvirt</name>
  <forward mode="nat"/>
  <ip address="192.168.121.1" netmask="255.255.255.0">
    <dhcp><range start="192.168.121.2" end="192.168.121.254"/></dhcp>
  </ip>
</network>"""


def management_address(conn: libvirt.virConnect) -> str:
    """The host's address on vagrant-libvirt's management network, which every lab's machines join
    (their eth0). Made here, exactly as vagrant-libvirt makes it, when no lab made it yet: then no lab
    owns it, and no lab's destroy removes it (vagrant-libvirt removes only networks it created)."""
    import xml.etree.ElementTree as ET

    try:
        net = conn.networkLookupByName(MANAGEMENT_NETWORK)
    except libvirt.libvirtError:
        net = conn.networkDefineXML(MANAGEMENT_XML)
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


class NotFenced(LabctlError):
    """A machine's card could not be fenced in (labctl.isolation): the machine is not handed out."""


def fence(conn: libvirt.virConnect, domain: str, fences: list[Fence], host_tcp: list[int]) -> None:
    """Put labctl's filter on the domain's cards (running and as defined): labctl.isolation says why
    and what it lets through. A card without its own address (`Fence.ips`) is held to its DHCP leases.
    The host's addresses dropped: its side of every libvirt network, and all of its own when it is this
    machine (libvirt does not say a remote host's)."""
    from labctl import isolation
    from labctl.host import local_ipv4

    # Defined once per host: the name carries the rules' version, and redefining a filter makes
    # libvirt rebuild the rules of every card using it (each seat's up would churn every other seat).
    try:
        conn.nwfilterLookupByName(isolation.FILTER)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_NWFILTER:
            raise
        conn.nwfilterDefineXML(isolation.FILTER_XML)
    gateways = {}
    for net in conn.listAllNetworks():
        gw = isolation.gateway(net.XMLDesc())
        if gw is not None:
            gateways[net.name()] = gw
    dom = _domain(conn, domain)
    held = [f if f.ips else isolation.Fence(f.network, _leased(dom, f.network)) for f in fences]
    addresses = [*(local_ipv4() if is_local(conn.getURI()) else []), *(g.address for g in gateways.values())]
    try:
        if dom.isActive():
            for xml in isolation.fenced_interfaces(dom.XMLDesc(), held, gateways, addresses, host_tcp):
                dom.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        if dom.isPersistent():
            inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            for xml in isolation.fenced_interfaces(inactive, held, gateways, addresses, host_tcp):
                dom.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except ValueError as exc:
        raise NotFenced(f"{domain}: {exc}", hint=f"virsh domiflist {domain}; labctl status shows its addresses;"
                        " a machine whose card cannot be fenced is not handed out") from None


def _leased(dom: libvirt.virDomain, network: str) -> tuple[str, ...]:
    """The IPv4 addresses libvirt's DHCP server leased to the domain's card on `network`."""
    from labctl import isolation

    card = isolation.cards(dom.XMLDesc()).get(network)
    if card is None:
        return ()
    try:
        ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
    except libvirt.libvirtError:
        return ()
    return tuple(a["addr"] for i in ifaces.values() if str(i.get("hwaddr", "")).lower() == card[1]
                 for a in i.get("addrs") or () if a.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4)


class LibvirtFailed(LabctlError):
    """libvirt failed in the middle of a command (libvirtd gone, a domain removed under labctl)."""

    exit_code = 1


F = TypeVar("F", bound=Callable[..., Any])


def _libvirt_errors(method: F) -> F:
    """libvirt's errors leave the adapter as labctl's, with how to start libvirtd."""
    @functools.wraps(method)
    def call(self: Hypervisor, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except libvirt.libvirtError as exc:
            raise LibvirtFailed(f"libvirt failed during the command: {exc}",
                                hint=f"is libvirtd still running? {start_hint()}; then run the command again") from None
    return call  # type: ignore[return-value]


class Hypervisor:
    """One libvirt host, reached through its URI: capacity, domains, shutdowns, leftovers, snapshots.
    It owns its connection (opened at first use, closed by close() or `with`), and nothing outside
    this module sees libvirt's own objects or errors."""

    def __init__(self, uri: str | None = None, conn: libvirt.virConnect | None = None) -> None:
        self.uri = uri or default_uri()
        self._conn = conn

    @classmethod
    def open(cls, uri: str | None = None) -> Hypervisor:
        """Connected now: a command that needs libvirt says so before it does anything."""
        hypervisor = cls(uri)
        hypervisor.conn  # noqa: B018 - the connection is made by the property
        return hypervisor

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None:
            self._conn = connect(self.uri)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @_libvirt_errors
    def capacity(self, pool_name: str = "default") -> Capacity:
        return capacity(self.conn, pool_name)

    @_libvirt_errors
    def host_capacity(self) -> HostCapacity:
        return host_capacity(self.conn)

    @_libvirt_errors
    def domain(self, name: str) -> DomainInfo | None:
        return domain_info(self.conn, name)

    @_libvirt_errors
    def domains_of(self, lab_folder: Path) -> list[str]:
        return domains_of(self.conn, lab_folder)

    @_libvirt_errors
    def shut_down(self, names: list[str], timeout: float, on_state: Callable[[str, str], None]) -> list[str]:
        return shut_down(self.conn, names, timeout, on_state)

    @_libvirt_errors
    def remove_leftovers(self, domains: list[str], network: str, owner: Path | None = None) -> list[str]:
        return remove_leftovers(self.conn, domains, network, owner)

    @_libvirt_errors
    def snapshots(self, domain: str) -> list[SnapshotInfo]:
        return snapshots(self.conn, domain)

    @_libvirt_errors
    def take_snapshot(self, domain: str, name: str, description: str) -> SnapshotInfo:
        return take_snapshot(self.conn, domain, name, description)

    @_libvirt_errors
    def revert_snapshot(self, domain: str, name: str) -> None:
        revert_snapshot(self.conn, domain, name)

    @_libvirt_errors
    def delete_snapshot(self, domain: str, name: str) -> bool:
        return delete_snapshot(self.conn, domain, name)

    @_libvirt_errors
    def management_address(self) -> str:
        return management_address(self.conn)

    @_libvirt_errors
    def clone_disks(self, template: str, clones: list[str]) -> Path:
        return clone_disks(self.conn, template, clones)

    @_libvirt_errors
    def start(self, names: list[str]) -> None:
        start(self.conn, names)

    @_libvirt_errors
    def mark_started(self, names: list[str]) -> None:
        mark_started(self.conn, names)

    @_libvirt_errors
    def fence(self, domain: str, fences: list[Fence], host_tcp: list[int]) -> None:
        fence(self.conn, domain, fences, host_tcp)
