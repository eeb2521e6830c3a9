"""Disks: a classroom's seats made from one stacked disk, as qcow2 overlays on it.

Everything goes through libvirt's storage-volume API (no file of the host is renamed, chmodded or
handed to qemu-img by labctl), so it works on any host labctl reaches over a libvirt URI, not only on
the machine it runs on: the base is a volume copied from the template's by libvirt
(virStorageVolCreateXMLFrom, which flattens the template's chain onto the box into one file), and
every seat's disk is a new volume whose <backingStore> is the base."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from labctl.adapters.hypervisor.connection import Connected, libvirt_errors
from labctl.adapters.hypervisor.domains import BASE_SUFFIX
from labctl.errors import LabctlError


class Storage(Connected):
    @libvirt_errors
    def clone_disks(self, template: str, clones: list[str]) -> Path:
        """Make every clone's disk start from the template's, without a copy per seat: the template's
        disk (stacked, shut off) is copied once into a read-only base volume, `<template>.base.img` in
        the same pool, then the template's and each clone's volume is replaced by a qcow2 overlay on it
        of the same name (their domains do not change). Every domain must be shut off. The template's
        disk is removed only once the base holds it. Returns the base's path."""
        doms = {name: self.conn.lookupByName(name) for name in [template, *clones]}
        running = [name for name, dom in doms.items() if dom.isActive()]
        if running:
            raise LabctlError(f"cannot clone disks of running machines: {', '.join(running)}",
                              hint="labctl halt them first")
        for pool in self.conn.listAllStoragePools():
            if pool.isActive():
                pool.refresh(0)
        volumes = {name: self._volume_of(dom) for name, dom in doms.items()}
        pool = volumes[template].storagePoolLookupByVolume()
        base_name = f"{template}{BASE_SUFFIX}"
        if base_name in pool.listVolumes():
            raise LabctlError(f"{base_name} exists already in storage pool {pool.name()}: this classroom was"
                              " cloned before",
                              hint="labctl destroy the lab and up again, or labctl stack the seats one by one")
        capacity = volumes[template].info()[1]
        base = pool.createXMLFrom(volume_xml(base_name, capacity, mode=0o444), volumes[template], 0)
        base_path = base.path()
        for vol in volumes.values():
            own_pool, own_name = vol.storagePoolLookupByVolume(), vol.name()
            vol.delete(0)
            own_pool.createXML(volume_xml(own_name, capacity, mode=0o600, backing=base_path), 0)
        return Path(base_path)

    def _volume_of(self, dom: libvirt.virDomain) -> libvirt.virStorageVol:
        path = disk_path(dom)
        try:
            return self.conn.storageVolLookupByPath(str(path))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
        raise LabctlError(f"the disk of {dom.name()} ({path}) is in no libvirt storage pool",
                          hint=f"define a pool on its folder: virsh pool-define-as NAME dir --target {path.parent},"
                               " then virsh pool-start NAME")


def volume_xml(name: str, capacity: int, *, mode: int, backing: str | None = None) -> str:
    """A qcow2 volume's XML (on `backing` when given); names escaped by ElementTree."""
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="bytes").text = str(capacity)
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "format", type="qcow2")
    ET.SubElement(ET.SubElement(target, "permissions"), "mode").text = f"0{mode:o}"
    if backing is not None:
        store = ET.SubElement(volume, "backingStore")
        ET.SubElement(store, "path").text = backing
        ET.SubElement(store, "format", type="qcow2")
    return ET.tostring(volume, encoding="unicode")


def disk_path(dom: libvirt.virDomain) -> Path:
    """The file of a domain's first disk."""
    root = ET.fromstring(dom.XMLDesc(0))  # noqa: S314 - libvirt's own XML about our domain
    for disk in root.iter("disk"):
        source = disk.find("source")
        if disk.get("device") == "disk" and source is not None and source.get("file"):
            return Path(source.get("file", ""))
    raise LabctlError(f"domain {dom.name()} has no disk file", hint=f"virsh dumpxml {dom.name()}")
