"""Stacked images kept as volumes (labctl.images): a stacked machine's disk copied once into a read-only
volume that outlives its lab, later machines' disks made overlays on it, and who still stands on one.

Through libvirt's storage-volume API, as storage.py: the copy is virStorageVolCreateXMLFrom (the
machine's chain on its box flattened into one file), and a volume's backing chain is read from the
volumes' own XML, which libvirt gives for a shut-off machine too."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from labctl.adapters.hypervisor.connection import Connected, libvirt_errors
from labctl.adapters.hypervisor.storage import disk_path, volume_xml
from labctl.errors import LabctlError

CHAIN_LIMIT = 16  # a backing chain longer than this is not one labctl made


class Images(Connected):
    @libvirt_errors
    def disk_origin(self, domain: str) -> str | None:
        """The name of the volume at the bottom of the domain's disk chain (for a machine Vagrant made:
        its box's volume, which names the box and its version); None when its disk is in no pool."""
        chain = self._chain(self._disk_volume(self.conn.lookupByName(domain)))
        return chain[-1].name() if chain else None

    @libvirt_errors
    def keep_image(self, domain: str, name: str) -> tuple[Path, int]:
        """The shut-off domain's disk copied, flattened, into the read-only volume `name` in the same
        pool (one left by a copy that failed is replaced). Returns its path and its size on disk."""
        dom = self.conn.lookupByName(domain)
        if dom.isActive():
            raise LabctlError(f"cannot keep the disk of {domain} while it runs", hint="labctl halt it first")
        source = self._disk_volume(dom)
        if source is None:
            raise LabctlError(f"the disk of {domain} is in no libvirt storage pool", hint=f"virsh dumpxml {domain}")
        pool = source.storagePoolLookupByVolume()
        pool.refresh(0)
        if name in pool.listVolumes():
            pool.storageVolLookupByName(name).delete(0)
        try:
            image = pool.createXMLFrom(volume_xml(name, source.info()[1], mode=0o444), source, 0)
        except BaseException:
            pool.refresh(0)
            if name in pool.listVolumes():  # a half copy is never taken for an image
                pool.storageVolLookupByName(name).delete(0)
            raise
        return Path(image.path()), image.info()[2]

    @libvirt_errors
    def image_overlay(self, image: Path, name: str) -> Path:
        """A new qcow2 volume `name` in the image's pool, backed by the image: the disk Vagrant creates a
        box-less machine on (libvirt.storage ..., allow_existing). One of that name left by an up that
        stopped before its machine was made is replaced; one that is a machine's disk is refused."""
        base = self.conn.storageVolLookupByPath(str(image))
        pool = base.storagePoolLookupByVolume()
        pool.refresh(0)
        if name in pool.listVolumes():
            old = pool.storageVolLookupByName(name)
            users = sorted(d.name() for d in self.conn.listAllDomains()
                           if (v := self._disk_volume(d)) is not None and v.path() == old.path())
            if users:
                raise LabctlError(f"volume {name} is the disk of {', '.join(users)} already",
                                  hint="labctl destroy that machine's lab first")
            old.delete(0)
        return Path(pool.createXML(volume_xml(name, base.info()[1], mode=0o600, backing=str(image)), 0).path())

    @libvirt_errors
    def image_volumes(self, prefix: str) -> dict[str, tuple[Path, int]]:
        """The volumes of every active pool whose name starts with `prefix`: name -> (path, size on disk)."""
        found: dict[str, tuple[Path, int]] = {}
        for pool in self.conn.listAllStoragePools():
            if not pool.isActive():
                continue
            pool.refresh(0)
            for vol in pool.listAllVolumes():
                if vol.name().startswith(prefix):
                    found[vol.name()] = (Path(vol.path()), vol.info()[2])
        return found

    @libvirt_errors
    def image_users(self, path: Path) -> list[str]:
        """The domains whose disk stands on the volume at `path` (directly or further down its chain)."""
        users = []
        for dom in self.conn.listAllDomains():
            if any(v.path() == str(path) for v in self._chain(self._disk_volume(dom))[1:]):
                users.append(dom.name())
        return sorted(users)

    @libvirt_errors
    def remove_image(self, path: Path) -> bool:
        """The volume at `path` deleted; False when no pool has it. Refused while a domain stands on it."""
        users = self.image_users(path)
        if users:
            raise LabctlError(f"{path.name} is the disk under {', '.join(users)}",
                              hint="labctl destroy the labs of those machines first")
        for pool in self.conn.listAllStoragePools():
            if pool.isActive():
                pool.refresh(0)
        try:
            vol = self.conn.storageVolLookupByPath(str(path))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return False
            raise
        vol.delete(0)
        return True

    def _disk_volume(self, dom: libvirt.virDomain) -> libvirt.virStorageVol | None:
        try:
            path = disk_path(dom)
        except LabctlError:
            return None
        try:
            return self.conn.storageVolLookupByPath(str(path))
        except libvirt.libvirtError:
            return None

    def _chain(self, vol: libvirt.virStorageVol | None) -> list[libvirt.virStorageVol]:
        """The volume, then each volume it is backed by, down to the one backed by none."""
        chain: list[libvirt.virStorageVol] = []
        while vol is not None and len(chain) < CHAIN_LIMIT:
            chain.append(vol)
            root = ET.fromstring(vol.XMLDesc(0))  # noqa: S314 - libvirt's own XML about its volume
            backing = root.findtext("backingStore/path")
            if not backing:
                break
            try:
                vol = self.conn.storageVolLookupByPath(backing)
            except libvirt.libvirtError:
                break
        return chain
