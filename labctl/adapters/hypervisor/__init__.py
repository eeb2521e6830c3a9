"""libvirt, for one host: capacity, domains, snapshots, disks and fences, as one `Hypervisor` object.

The only importer of the libvirt module. Each concern is its own module, a part of the one object:
connection.py (the URI, the connection, libvirt's errors turned into labctl's), capacity.py,
domains.py (with leases.py: the address each card holds), snapshots.py, storage.py,
images.py (stacked images kept as volumes) and fences.py.
Nothing outside this package sees libvirt's objects or errors; use-cases see it through
labctl.protocols.HypervisorPort. Reading states through libvirt takes milliseconds where `vagrant
status` takes over a second, so `labctl status` never starts vagrant.
"""

from __future__ import annotations

from labctl.adapters.hypervisor.capacity import Capacities
from labctl.adapters.hypervisor.connection import LibvirtFailed, LibvirtUnavailable, connect, is_local
from labctl.adapters.hypervisor.domains import Domains
from labctl.adapters.hypervisor.fences import Fences, NotFenced
from labctl.adapters.hypervisor.images import Images
from labctl.adapters.hypervisor.snapshots import SnapshotFailed, SnapshotMissing, Snapshots
from labctl.adapters.hypervisor.storage import Storage

__all__ = ["Hypervisor", "LibvirtFailed", "LibvirtUnavailable", "NotFenced", "SnapshotFailed", "SnapshotMissing",
           "connect", "is_local"]


class Hypervisor(Capacities, Domains, Snapshots, Storage, Images, Fences):
    """One libvirt host, reached through its URI. It owns its connection (opened at first use, closed
    by close() or `with`); each of its parts works on that connection."""
