"""`labctl images`: the host's stacked images listed (each with its volume and who stands on it),
removed, pruned. Images of other labs' machines are never removed under them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LabctlError
from labctl.images.store import Image, ImageStore, to_prune

if TYPE_CHECKING:
    from labctl.protocols import HypervisorPort


@dataclass(frozen=True)
class ImageState:
    image: Image
    present: bool            # its volume is in libvirt's pool
    users: tuple[str, ...]   # machines whose disk stands on it

    def as_json(self) -> dict[str, object]:
        return {**self.image.as_json(), "present": self.present, "users": list(self.users)}


def listed(store: ImageStore, hypervisor: HypervisorPort) -> list[ImageState]:
    out = []
    for image in store.all():
        present = hypervisor.base_named(Path(image.volume).name) is not None
        users = tuple(hypervisor.image_users(Path(image.volume))) if present else ()
        out.append(ImageState(image, present, users))
    return out


def remove(store: ImageStore, hypervisor: HypervisorPort, digests: Sequence[str]) -> list[str]:
    """Each image named removed (its volume, then its record); refused, with nothing removed, when one
    is unknown or stands under a machine."""
    images = []
    for digest in digests:
        image = store.get(digest)
        if image is None:
            raise LabctlError(f"no image {digest!r} on this host", hint="labctl images lists them")
        images.append(image)
    for image in images:
        users = hypervisor.image_users(Path(image.volume))
        if users:
            raise LabctlError(f"image {image.digest} is the disk under {', '.join(users)}",
                              hint="labctl destroy the labs of those machines first")
    for image in images:
        hypervisor.remove_image(Path(image.volume))
        store.forget(image.digest)
    return [i.digest for i in images]


def prune(store: ImageStore, hypervisor: HypervisorPort, older_than_days: float | None,
          max_gib: float | None) -> tuple[list[str], list[str]]:
    """Images unused for longer than the days given, then the least recently used beyond the total size
    given; an image a machine stands on is kept (and named). Returns (removed, kept in use)."""
    states = listed(store, hypervisor)
    chosen = to_prune([s.image for s in states], time.time(),
                      older_than_days * 86400 if older_than_days is not None else None,
                      int(max_gib * 1024**3) if max_gib is not None else None)
    in_use = {s.image.digest for s in states if s.users}
    gone = [i.digest for i in chosen if i.digest not in in_use]
    for digest in gone:
        image = store.get(digest)
        if image is not None:
            hypervisor.remove_image(Path(image.volume))
            store.forget(digest)
    return gone, sorted(in_use & {i.digest for i in chosen})
