"""Disks: a classroom's seats made from one stacked disk, as qcow2 overlays on it.

Everything goes through libvirt's storage-volume API (no file of the host is renamed, chmodded or
handed to qemu-img by labctl), so it works on any host labctl reaches over a libvirt URI, not only on
the machine it runs on: the base is a volume copied from the template's by libvirt
(virStorageVolCreateXMLFrom, which flattens the template's chain onto the box into one file), and
every seat's disk is a new volume whose <backingStore> is the base. For seats on another host, the
base is sent there once, through libvirt's volume download and upload (sparse: holes are not sent),
over the connections labctl already has to both hosts, and those seats are overlays on that copy."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import libvirt

from labctl.adapters.hypervisor.connection import Connected, libvirt_errors
from labctl.errors import LabctlError
from labctl.names import BASE_SUFFIX

if TYPE_CHECKING:
    from labctl.protocols import HypervisorPort

CHUNK = 4 * 1024 * 1024

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
        self._overlay(list(volumes.values()), base_path, capacity)
        return Path(base_path)

    @libvirt_errors
    def base_named(self, name: str) -> Path | None:
        """The path of the volume `name` (a classroom's base, `<template>.base.img`) in any active pool of
        this host; None when no pool holds it."""
        for pool in self.conn.listAllStoragePools():
            if pool.isActive():
                pool.refresh(0)
                if name in pool.listVolumes():
                    return Path(pool.storageVolLookupByName(name).path())
        return None

    @libvirt_errors
    def overlay_disks(self, base: Path, clones: list[str]) -> None:
        """Each clone's volume replaced by a qcow2 overlay on `base` (a volume of this host: the base
        sent here by send_base), of the same name. Every clone must be shut off."""
        doms = {name: self.conn.lookupByName(name) for name in clones}
        running = [name for name, dom in doms.items() if dom.isActive()]
        if running:
            raise LabctlError(f"cannot replace the disks of running machines: {', '.join(running)}",
                              hint="labctl halt them first")
        capacity = self.conn.storageVolLookupByPath(str(base)).info()[1]
        self._overlay([self._volume_of(dom) for dom in doms.values()], str(base), capacity)

    def _overlay(self, volumes: list[libvirt.virStorageVol], base_path: str, capacity: int) -> None:
        for vol in volumes:
            own_pool, own_name = vol.storagePoolLookupByVolume(), vol.name()
            vol.delete(0)
            own_pool.createXML(volume_xml(own_name, capacity, mode=0o600, backing=base_path), 0)

    @libvirt_errors
    def send_base(self, base: Path, to: HypervisorPort, beside: str, on_bytes: Callable[[int], None]) -> Path:
        """A copy of this host's volume `base` on host `to`, of the same name, in the storage pool of
        domain `beside`'s disk there (one left there by an attempt that failed is replaced).
        `on_bytes`: the bytes sent so far, now and then. Returns the copy's path there."""
        if not isinstance(to, Storage):
            raise TypeError(f"cannot send a volume to {to!r}")
        source = self.conn.storageVolLookupByPath(str(base))
        capacity = source.info()[1]
        pool = to._volume_of(to.conn.lookupByName(beside)).storagePoolLookupByVolume()
        pool.refresh(0)
        name = source.name()
        if name in pool.listVolumes():
            pool.storageVolLookupByName(name).delete(0)
        copy = pool.createXML(volume_xml(name, capacity, mode=0o444), 0)
        try:
            _stream(self.conn, source, to.conn, copy, on_bytes)
        except BaseException:
            copy.delete(0)  # a half copy is never taken for a base
            raise
        return Path(copy.path())


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


def _stream(src: libvirt.virConnect, source: libvirt.virStorageVol, dst: libvirt.virConnect,
            copy: libvirt.virStorageVol, on_bytes: Callable[[int], None]) -> None:
    """The volume's bytes from one host to the other, holes as holes."""
    down, up = src.newStream(0), dst.newStream(0)
    source.download(down, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
    copy.upload(up, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
    sent = reported = 0
    try:
        while True:
            got = down.recvFlags(CHUNK, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
            if got == -3:  # a hole: its length, not its zeros
                up.sendHole(down.recvHole(0), 0)
                continue
            if not isinstance(got, bytes) or not got:
                break
            view = memoryview(got)
            while view:
                n = up.send(view.tobytes())
                view = view[n:]
            sent += len(got)
            if sent - reported >= 64 * CHUNK:
                on_bytes(sent)
                reported = sent
        down.finish()
        up.finish()
    except BaseException:
        for stream in (down, up):
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
        raise
    on_bytes(sent)
