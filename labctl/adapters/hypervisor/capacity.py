"""What a host can still give: memory, CPUs, the accelerator its guests can use, and disk."""

from __future__ import annotations

from pathlib import Path

import libvirt

from labctl.adapters.hypervisor.connection import Connected, is_local, libvirt_errors
from labctl.protocols import Capacity, HostCapacity

IMAGES_DIR = Path("/var/lib/libvirt/images")


class Capacities(Connected):
    @libvirt_errors
    def capacity(self, pool_name: str = "default") -> Capacity:
        """What the host can still give: memory free for new guests, CPUs, and disk where volumes go."""
        info = self.conn.getInfo()  # [model, memory MiB, cpus, MHz, nodes, sockets, cores, threads]
        available, _total = _node_memory(self.conn)
        disk_free, disk_path = _disk_free(self.conn, pool_name)
        return Capacity(cpus=int(info[2]), memory_total_mb=int(info[1]),
                        memory_available_mb=available or int(info[1]),
                        disk_free_gb=disk_free // 1024**3 if disk_free is not None else None, disk_path=disk_path)

    @libvirt_errors
    def host_capacity(self) -> HostCapacity:
        """A host's memory, CPUs and disk as libvirt tells them, for placing machines across hosts."""
        info = self.conn.getInfo()
        total_mb = int(info[1])
        running = self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        held_kb = sum(int(d.info()[2]) for d in running)
        available, total = _node_memory(self.conn)
        # getInfo() counts NUMA nodes' memory, which can miss hot-plugged memory the kernel has.
        total_mb = max(total_mb, total or 0)
        disk_free, disk_path = _disk_free(self.conn, "default")  # vagrant-libvirt's pool
        return HostCapacity(cpus=int(info[2]), memory_total_mb=total_mb, memory_domains_mb=held_kb // 1024,
                            memory_available_mb=available, accelerator=accelerator(self.conn.getCapabilities()),
                            domains_running=len(running),
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


def accelerator(capabilities_xml: str) -> str:
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
    import shutil

    uri = conn.getURI()
    here = is_local(uri) and not uri.startswith("test:")  # libvirt's test driver keeps no volume on this disk
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        if pool.isActive():
            free = int(pool.info()[3])
            target = _pool_path(pool.XMLDesc()) if here else None
            if target is not None and target.exists():
                # libvirt counts the blocks a file system keeps for root; QEMU writes as an
                # unprivileged user and cannot fill them (215 GB said, 65 GB usable, on one machine).
                free = min(free, shutil.disk_usage(target).free)
            return free, f"storage pool {pool_name}"
    except libvirt.libvirtError:
        pass
    if not here:
        return None, f"storage pool {pool_name} (not made yet)"
    path = IMAGES_DIR
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free, str(path)


def _pool_path(pool_xml: str) -> Path | None:
    import xml.etree.ElementTree as ET

    path = ET.fromstring(pool_xml).findtext("target/path")  # noqa: S314 - libvirt's own XML
    return Path(path) if path and path.startswith("/") else None
