"""Snapshots: internal to the domain's qcow2 disk, memory included when it runs, so that a restored
DevStack is running at once."""

from __future__ import annotations

import libvirt

from labctl.adapters.hypervisor.connection import Connected, libvirt_errors
from labctl.errors import LabctlError
from labctl.protocols import SnapshotInfo


class SnapshotMissing(LabctlError):
    """The machine has no snapshot by that name."""


class SnapshotFailed(LabctlError):
    """libvirt could not take, restore or delete a snapshot: its own words."""


class Snapshots(Connected):
    @libvirt_errors
    def snapshots(self, domain: str) -> list[SnapshotInfo]:
        dom = self._lookup(domain)
        if dom is None:
            return []
        return sorted((_snapshot_info(s) for s in dom.listAllSnapshots()), key=lambda s: (s.created, s.name))

    @libvirt_errors
    def take_snapshot(self, domain: str, name: str, description: str) -> SnapshotInfo:
        """Take snapshot `name` of `domain` (running: memory included), replacing one of the same name."""
        from xml.sax.saxutils import escape

        try:
            dom = self._domain(domain)
            # The old one goes first: a snapshot of an older state under this name would be restored by
            # mistake (after a new stack, `stacked` must be the new DevStack, or nothing).
            old = _find_snapshot(dom, name)
            if old is not None:
                old.delete(0)
            xml = (f"<domainsnapshot><name>{escape(name)}</name><description>{escape(description)}</description>"
                   "</domainsnapshot>")
            return _snapshot_info(dom.snapshotCreateXML(xml, 0))
        except libvirt.libvirtError as exc:
            raise SnapshotFailed(f"{domain}: libvirt could not take snapshot {name!r}: {exc.get_error_message()}",
                                 hint="disks must be qcow2 and the pool must have room for the memory") from None

    @libvirt_errors
    def revert_snapshot(self, domain: str, name: str) -> None:
        """Bring `domain` back to snapshot `name`, running (a snapshot of a running machine resumes at once)."""
        dom = self._domain(domain)
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

    @libvirt_errors
    def delete_snapshot(self, domain: str, name: str) -> bool:
        dom = self._lookup(domain)
        snap = _find_snapshot(dom, name) if dom is not None else None
        if snap is None:
            return False
        snap.delete(0)
        return True


def _snapshot_info(snap: libvirt.virDomainSnapshot) -> SnapshotInfo:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(snap.getXMLDesc(0))  # noqa: S314 - libvirt's own XML about our domain
    return SnapshotInfo(snap.getName(), int(root.findtext("creationTime") or 0), root.findtext("state") or "",
                        root.findtext("description") or "")


def _find_snapshot(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot | None:
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            return None
        raise


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
