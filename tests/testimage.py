"""A bootable test image made here, for the compute DevStack tests: no CirrOS can be downloaded on this
machine kind, Debian's archive can. Debian's kernel (from its linux-image package) and an initramfs
of busybox-static whose /init writes MARKER to the serial console and waits. Uploaded to Glance as a
kernel (aki), a ramdisk (ari) and a small machine image (ami) that names both.

Kept in the test cache, made again when a file is missing (`rm -r /var/tmp/labctl-test-cache/test-image`).
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

MARKER = "LABCTL-TEST-IMAGE-BOOTED"
INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for out in /dev/kmsg /dev/ttyS0 /dev/console; do echo "{MARKER} $(uname -r)" > $out 2>/dev/null; done
while true; do sleep 3600; done
"""


@dataclass(frozen=True)
class BootImage:
    kernel: Path
    ramdisk: Path
    root: Path
    marker: str = MARKER


def _newc(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """A cpio archive in the kernel's initramfs format (newc): (name, mode, data, rdev) each."""
    out = io.BytesIO()

    def pad() -> None:
        out.write(b"\0" * (-out.tell() % 4))

    for ino, (name, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], start=1):
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF, len(encoded), 0]
        out.write(b"070701" + b"".join(f"{v:08X}".encode() for v in fields) + encoded)
        pad()
        out.write(data)
        pad()
    return out.getvalue()


def _extract(deb: Path, member_glob: str, folder: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(folder)], check=True)
    found = sorted(folder.glob(member_glob))
    if not found:
        raise RuntimeError(f"{deb.name} holds no {member_glob}")
    return found[-1]


def _download(package: str, folder: Path) -> Path:
    subprocess.run(["apt-get", "download", "-q", package], cwd=folder, check=True, capture_output=True)
    return next(folder.glob(f"{package}_*.deb"))


def kernel_package() -> str:
    """The versioned kernel package that Debian's linux-image-amd64 stands for."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True,
                         check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.strip().startswith("Depends:") and "linux-image-" in line)


def boot_image(cache: Path) -> BootImage:
    folder = cache / "test-image"
    image = BootImage(folder / "vmlinuz", folder / "initrd.gz", folder / "root.img")
    if all(p.is_file() for p in (image.kernel, image.ramdisk, image.root)):
        return image
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as work_dir:
        work = Path(work_dir)
        kernel = _extract(_download(kernel_package(), work), "boot/vmlinuz-*", work / "k")
        busybox = _extract(_download("busybox-static", work), "bin/busybox", work / "b")
        dirs = [(d, 0o040755, b"", 0) for d in ("bin", "dev", "proc", "sys", "sbin", "usr", "usr/bin", "usr/sbin")]
        files = [("bin/busybox", 0o100755, busybox.read_bytes(), 0), ("init", 0o100755, INIT.encode(), 0),
                 ("dev/console", 0o020600, b"", (5 << 8) | 1)]
        ramdisk = work / "initrd.gz"
        ramdisk.write_bytes(gzip.compress(_newc(dirs + files)))
        root = work / "root.img"
        root.write_bytes(b"\0" * (1 << 20))
        shutil.copyfile(kernel, work / "vmlinuz")
        for made, final in ((work / "vmlinuz", image.kernel), (ramdisk, image.ramdisk), (root, image.root)):
            made.replace(final)
    return image
