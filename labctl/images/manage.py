"""`labctl images`: the host's stacked images listed (each with its volume and who stands on it),
removed, pruned. Images of other labs' machines are never removed under them.

An orphan is an image volume with no record: a keep killed between libvirt's copy and the record's
write leaves one, and its marker in this home's images folder (the next keep of the same stack replaces
it). It is listed, and goes with `images rm` or any `images prune`: no machine can be made from it (its
passwords and key were never written). An image volume this home has no marker of is another home's."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LabctlError
from labctl.images.store import IMAGE_PREFIX, Image, ImageStore, digest_of_volume, to_prune

if TYPE_CHECKING:
    from labctl.protocols import HypervisorPort


@dataclass(frozen=True)
class ImageState:
    image: Image
    present: bool            # its volume is in libvirt's pool
    users: tuple[str, ...]   # machines whose disk stands on it

    def as_json(self) -> dict[str, object]:
        return {**self.image.as_json(), "present": self.present, "users": list(self.users)}


@dataclass(frozen=True)
class Orphan:
    digest: str
    path: Path
    size: int
    users: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {"digest": self.digest, "volume": str(self.path), "size": self.size, "users": list(self.users)}


def orphans(store: ImageStore, hypervisor: HypervisorPort) -> list[Orphan]:
    """Image volumes whose keep by this home was cut short (only names labctl gives: a dot no lab name
    holds, 16 hex digits)."""
    out = []
    for name, (path, size) in sorted(hypervisor.image_volumes(IMAGE_PREFIX).items()):
        digest = digest_of_volume(name)
        if digest is not None and store.cut_short(digest):
            out.append(Orphan(digest, path, size, tuple(hypervisor.image_users(path))))
    return out


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
    left = {o.digest: o for o in orphans(store, hypervisor)}
    paths: dict[str, Path] = {}
    for digest in digests:
        image = store.get(digest)
        if image is None and digest not in left:
            raise LabctlError(f"no image {digest!r} on this host", hint="labctl images lists them")
        paths[digest] = Path(image.volume) if image is not None else left[digest].path
    for digest, path in paths.items():
        users = hypervisor.image_users(path)
        if users:
            raise LabctlError(f"image {digest} is the disk under {', '.join(users)}",
                              hint="labctl destroy the labs of those machines first")
    for digest, path in paths.items():
        hypervisor.remove_image(path)
        store.forget(digest)
    return list(paths)


def prune(store: ImageStore, hypervisor: HypervisorPort, older_than_days: float | None,
          max_gib: float | None) -> tuple[list[str], list[str]]:
    """Orphans, then images unused for longer than the days given, then the least recently used beyond
    the total size given; an image a machine stands on is kept (and named). Returns (removed, kept in use)."""
    states = listed(store, hypervisor)
    chosen = to_prune([s.image for s in states], time.time(),
                      older_than_days * 86400 if older_than_days is not None else None,
                      int(max_gib * 1024**3) if max_gib is not None else None)
    in_use = {s.image.digest for s in states if s.users}
    left = [o for o in orphans(store, hypervisor) if not o.users]
    for orphan in left:
        hypervisor.remove_image(orphan.path)
    gone = [i.digest for i in chosen if i.digest not in in_use]
    for digest in gone:
        image = store.get(digest)
        if image is not None:
            hypervisor.remove_image(Path(image.volume))
            store.forget(digest)
    return [o.digest for o in left] + gone, sorted(in_use & {i.digest for i in chosen})
