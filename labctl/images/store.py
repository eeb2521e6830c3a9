"""The host's stacked images, as labctl knows them: one folder per image under $LABCTL_HOME/images/,
named by its key's digest, with

- image.json    what it is (its key's parts, the volume, the lab and machine that made it, that
                machine's host name and address inside it, when it was made and last used, how often)
- secrets.json  the passwords it was stacked with (0600): the ones a machine made from it replaces
- key           the SSH key its login user accepts (0600; a copy of the key of the machine it was
                made from, whose lab may be gone since)

The volume itself is libvirt's (labctl.adapters.hypervisor.images). A folder that cannot be read is
skipped, never trusted: labctl made it, but a hand or a crash may have changed it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from labctl.errors import LabctlError
from labctl.images.key import StackKey
from labctl.passwords import Passwords
from labctl.state import atomic_write, private_dir

FORMAT = 1
_DIGEST = re.compile(r"[0-9a-f]{16}\Z")
IMAGE_PREFIX = "labctl-image."


def volume_name(digest: str) -> str:
    """The image's volume in libvirt's pool. A dot no lab or machine name may hold: never a lab's disk
    (`labctl-<lab>-<machine>.img`, which a destroy removes), whatever the lab and machine are named."""
    return f"{IMAGE_PREFIX}{digest}.img"


def digest_of_volume(name: str) -> str | None:
    """The digest in an image volume's name, or None for a name labctl does not give."""
    digest = name.removeprefix(IMAGE_PREFIX).removesuffix(".img")
    return digest if name == volume_name(digest) and _DIGEST.match(digest) else None


@dataclass(frozen=True)
class Image:
    digest: str
    volume: str             # its path in libvirt's pool
    lab: str                # the lab and machine it was made from
    machine: str
    hostname: str           # that machine's, inside the image
    ip: str
    user: str
    created: float
    size: int = 0           # bytes on disk
    stack_seconds: float = 0.0  # what its stack.sh took: what a machine made from it saves
    last_used: float = 0.0
    uses: int = 0
    parts: dict[str, str] = field(default_factory=dict)  # its StackKey's

    @property
    def key(self) -> StackKey:
        return StackKey(self.parts)

    def as_json(self) -> dict[str, object]:
        return asdict(self)


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise LabctlError(f"{digest!r} is no image of labctl's (16 hexadecimal digits)",
                              hint="labctl images lists them")
        return self.root / digest

    def get(self, digest: str) -> Image | None:
        try:
            raw = json.loads((self.folder(digest) / "image.json").read_text(encoding="utf-8"))
            image = Image(**{k: v for k, v in raw.items() if k != "format"})
        except (OSError, ValueError, TypeError, LabctlError):
            return None
        ok = (image.digest == digest and isinstance(image.parts, dict) and StackKey(image.parts).digest == digest
              and all(isinstance(v, str) for v in (image.volume, image.hostname, image.ip, image.user))
              and Path(image.volume).name == volume_name(digest))  # never another volume (a lab's disk)
        return image if ok else None

    def all(self) -> list[Image]:
        """Every readable image, the most recently used first."""
        found = []
        with contextlib.suppress(OSError):
            for folder in self.root.iterdir():
                image = self.get(folder.name) if _DIGEST.match(folder.name) else None
                if image is not None:
                    found.append(image)
        return sorted(found, key=lambda i: max(i.last_used, i.created), reverse=True)

    def secrets(self, image: Image) -> Passwords:
        try:
            found = Passwords.from_raw(json.loads((self.folder(image.digest) / "secrets.json").read_text()))
        except (OSError, ValueError):
            found = None
        if found is None:
            raise LabctlError(f"image {image.digest} has lost its passwords", hint=f"labctl images rm {image.digest}")
        return found

    def key_file(self, image: Image) -> Path:
        return self.folder(image.digest) / "key"

    def save(self, image: Image, passwords: Passwords, key_file: Path) -> None:
        """Its passwords and key first, image.json last: a folder without image.json is no image."""
        private_dir(self.root)
        folder = self.folder(image.digest)
        private_dir(folder)
        with contextlib.suppress(FileNotFoundError):
            (folder / "image.json").unlink()
        atomic_write(folder / "secrets.json", json.dumps(passwords.as_dict()) + "\n", mode=0o600)
        try:
            atomic_write(folder / "key", key_file.read_text(encoding="ascii"), mode=0o600)
        except (OSError, UnicodeDecodeError) as exc:
            raise LabctlError(f"cannot keep the key of {image.machine} with its image: {exc}",
                              hint="labctl up --fresh stacks without images") from None
        self._write(image)

    def used(self, image: Image) -> Image:
        now = replace(image, uses=image.uses + 1, last_used=time.time())
        self._write(now)
        return now

    def forget(self, digest: str) -> None:
        shutil.rmtree(self.folder(digest), ignore_errors=True)

    def cut_short(self, digest: str) -> bool:
        """Whether a keep of `digest` by this home was cut short: its marker left by a labctl that died,
        and no record written (a record a newer labctl wrote counts as one). Image volumes without such
        a marker are not this home's to remove: another $LABCTL_HOME on this host may have made them."""
        folder = self.folder(digest)
        return ((folder / "keeping").exists() and not (folder / "image.json").exists()
                and not self.being_kept(digest))

    @contextlib.contextmanager
    def keeping(self, digest: str) -> Iterator[None]:
        """While the image of `digest` is copied and recorded: marked with this labctl's pid. A keep that
        ends, well or not, removes the marker (and a copy it could not record); one killed leaves it,
        and its volume is then an orphan of this home's."""
        private_dir(self.root)
        private_dir(self.folder(digest))
        marker = self.folder(digest) / "keeping"
        atomic_write(marker, f"{os.getpid()}\n", mode=0o600)
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)

    def being_kept(self, digest: str) -> bool:
        """Whether a living labctl is keeping the image of `digest` now."""
        try:
            pid = int((self.folder(digest) / "keeping").read_text(encoding="ascii"))
            os.kill(pid, 0)
        except PermissionError:
            return True  # alive, another user's
        except (OSError, ValueError):
            return False
        return True

    def _write(self, image: Image) -> None:
        atomic_write(self.folder(image.digest) / "image.json",
                     json.dumps({"format": FORMAT, **image.as_json()}, indent=2) + "\n", mode=0o600)


def nearest(images: Sequence[Image], key: StackKey) -> Image | None:
    """The image that differs from `key` in the fewest parts (to say why it is not used)."""
    return min(images, key=lambda i: len(key.differences(i.key)), default=None)


def to_prune(images: Sequence[Image], now: float, older_than_s: float | None, max_bytes: int | None) -> list[Image]:
    """Images unused for longer than `older_than_s`, then the least recently used until the rest fit
    in `max_bytes`. Pure."""
    by_age = sorted(images, key=lambda i: max(i.last_used, i.created))
    gone = [i for i in by_age if older_than_s is not None and now - max(i.last_used, i.created) > older_than_s]
    if max_bytes is not None:
        kept = [i for i in by_age if i not in gone]
        while kept and sum(i.size for i in kept) > max_bytes:
            gone.append(kept.pop(0))
    return gone
