"""Disks: a classroom's seats made from one stacked disk, as qcow2 overlays on it.

Done on the disk files libvirt names, so this works where libvirt runs on this machine only; making
the overlays through libvirt's storage-volume API (a volume whose <backingStore> is the base) would
work on any host (see the issue about classes across hosts)."""

from __future__ import annotations

from pathlib import Path

import libvirt

from labctl.adapters.hypervisor.connection import Connected, libvirt_errors
from labctl.adapters.hypervisor.domains import BASE_SUFFIX
from labctl.errors import LabctlError


class Storage(Connected):
    @libvirt_errors
    def clone_disks(self, template: str, clones: list[str]) -> Path:
        """Make every clone's disk start from the template's, without copying it: the template's disk
        (stacked, shut off) becomes a read-only base, `<template>.base.img` beside it, and the template and
        each clone get a fresh qcow2 overlay on it at their own disk's path (their domains do not change).
        Every domain must be shut off. Returns the base."""
        from labctl.proc import run

        doms = {name: self.conn.lookupByName(name) for name in [template, *clones]}
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
        for pool in self.conn.listAllStoragePools():
            if pool.isActive():
                pool.refresh(0)
        return base


def disk_path(dom: libvirt.virDomain) -> Path:
    """The file of a domain's first disk."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(dom.XMLDesc(0))  # noqa: S314 - libvirt's own XML about our domain
    for disk in root.iter("disk"):
        source = disk.find("source")
        if disk.get("device") == "disk" and source is not None and source.get("file"):
            return Path(source.get("file", ""))
    raise LabctlError(f"domain {dom.name()} has no disk file", hint=f"virsh dumpxml {dom.name()}")
