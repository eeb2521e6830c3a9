"""A lab's machines across their hosts, seen as one hypervisor for what acts on one domain at a time
(snapshots): each call goes to the libvirt of the host the domain's machine lives on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from labctl import records
from labctl.names import domain_name

if TYPE_CHECKING:
    from labctl.machine_status import HostAccess
    from labctl.protocols import SnapshotInfo, SnapshotPort
    from labctl.state import LabDir


class LabDomains:
    def __init__(self, lab_dir: LabDir, hosts: HostAccess) -> None:
        self._hosts = hosts
        self._host_of = {domain_name(lab_dir.name, m.name): m.host for m in records.read_lab(lab_dir).machines}

    def _on(self, domain: str) -> SnapshotPort:
        return self._hosts.hypervisor_on(self._host_of.get(domain))

    def snapshots(self, domain: str) -> list[SnapshotInfo]:
        return self._on(domain).snapshots(domain)

    def take_snapshot(self, domain: str, name: str, description: str) -> SnapshotInfo:
        return self._on(domain).take_snapshot(domain, name, description)

    def revert_snapshot(self, domain: str, name: str) -> None:
        self._on(domain).revert_snapshot(domain, name)

    def delete_snapshot(self, domain: str, name: str) -> bool:
        return self._on(domain).delete_snapshot(domain, name)
