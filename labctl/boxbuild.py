"""Build a vagrant-libvirt box of Debian from Debian's own packages, with no box registry involved.

mmdebstrap makes the root filesystem from a Debian mirror; debian-customize.sh turns it into a box's
(vagrant user with Vagrant's insecure key, passwordless sudo, DHCP, SSH host keys made at first
boot); `mkfs.ext4 -d` writes it onto a whole-disk image (no partitions, so no loop-partition
devices are needed), extlinux makes the disk boot by itself, qemu-img compresses it to qcow2, and
the qcow2 with metadata.json and a Vagrantfile is tarred into a .box.

Building needs root (mmdebstrap, chroot, mount, extlinux): as an ordinary user these steps run
through sudo. The result is cached; `vagrant box add` then makes it available to labs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labctl.catalog import Release
from labctl.devstack_python import PythonSet
from labctl.errors import LabctlError
from labctl.proc import run

DEFAULT_MIRROR = "http://deb.debian.org/debian"
VIRTUAL_SIZE_GB = 10
# e2fsprogs: the first boot grows the root filesystem (resize2fs); trixie's minbase no longer has it.
PACKAGES = ("linux-image-cloud-amd64", "systemd-sysv", "udev", "openssh-server", "sudo", "iproute2",
            "systemd-resolved", "ca-certificates", "python3", "git", "curl", "less", "e2fsprogs")
VENV_HOOK = "devstack-venv.sh"
# The host's trusted CAs: pip's downloads while the box's virtualenv is made (a TLS-inspecting proxy's
# CA included); not left in the box.
HOST_CAS = Path("/etc/ssl/certs/ca-certificates.crt")
TOOLS = ("mmdebstrap", "mkfs.ext4", "extlinux", "qemu-img", "mount", "umount")
BOX_VAGRANTFILE = """\
# Box of labctl: Debian {version} built from Debian's packages.
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
end
"""


@dataclass(frozen=True)
class BoxSpec:
    """A box labctl can build: its name in Vagrant and the file it is cached as."""

    release: Release
    name: str
    file: Path
    # Packages beyond the box's own: what stack.sh would install (labctl.devstack_packages), so that
    # a machine under software emulation does not install them itself.
    packages: tuple[str, ...] = ()
    # DevStack's virtualenv, made in the box (labctl.devstack_python), or None.
    python: PythonSet | None = None


def local_box_name(release: Release) -> str:
    return f"labctl/{release.family}-{release.version}"


def box_spec(release: Release, cache: Path, packages: tuple[str, ...] = (), python: PythonSet | None = None) -> BoxSpec:
    """The box of a release, or (with packages) its DevStack-ready kind: named after the packages and
    the Python it holds, so that a lab needing others gets a box of its own and never a stale one."""
    if not release.local_build:
        raise LabctlError(f"labctl cannot build a box for {release.ref}",
                          hint="boxes that can be built offline are marked in `labctl boxes`")
    if not packages:
        return BoxSpec(release, local_box_name(release),
                       cache / "boxes" / f"{release.family}-{release.version}-amd64.box")
    import hashlib

    # The recipe too: a box built before labctl changed what goes in or is taken out is never reused.
    recipe = (Path(__file__).parent / "boxdata" / "debian-customize.sh").read_bytes()
    if python is not None:
        recipe += (Path(__file__).parent / "boxdata" / VENV_HOOK).read_bytes() + python.digest.encode()
        packages = (*packages, "python3-venv")
    digest = hashlib.sha256("\n".join([*PACKAGES, "--", *sorted(set(packages))]).encode() + recipe).hexdigest()[:10]
    return BoxSpec(release, f"{local_box_name(release)}-devstack-{digest}",
                   cache / "boxes" / f"{release.family}-{release.version}-devstack-{digest}-amd64.box",
                   tuple(sorted(set(packages))), python)


def insecure_public_key() -> Path:
    """Vagrant's well-known insecure key, as shipped by Debian's vagrant package."""
    found = sorted(Path("/usr/share/rubygems-integration/all/gems").glob("vagrant-*/keys/vagrant.pub"))
    env = os.environ.get("LABCTL_VAGRANT_INSECURE_KEY")
    if env:
        found = [Path(env)]
    if not found or not found[-1].is_file():
        raise LabctlError("Vagrant's insecure public key (keys/vagrant.pub) was not found",
                          hint="install Debian's vagrant package, or set LABCTL_VAGRANT_INSECURE_KEY")
    return found[-1]


def _privileged() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "--non-interactive"]


def check_tools() -> None:
    missing = [t for t in TOOLS if not shutil.which(t) and not Path("/usr/sbin", t).exists()
               and not Path("/sbin", t).exists()]
    if missing:
        raise LabctlError(f"building a box needs {', '.join(missing)}",
                          hint="./install.sh installs them (apt-get install mmdebstrap extlinux e2fsprogs qemu-utils)")


def _venv_folder(python: PythonSet, work: Path) -> Path:
    """The hook's files in `work`/venv (constraints, requirements, the host's CAs): the hook's path."""
    folder = work / "venv"
    folder.mkdir()
    (folder / "constraints.txt").write_text("".join(f"{line}\n" for line in python.constraints))
    (folder / "requirements.txt").write_text("".join(f"{line}\n" for line in python.requirements))
    shutil.copyfile(HOST_CAS if HOST_CAS.is_file() else Path(os.devnull), folder / "ca.pem")
    return Path(__file__).parent / "boxdata" / VENV_HOOK


def _bootstrap(spec: BoxSpec, work: Path, *, mirror: str, step: Callable[[str], None], log: Path) -> None:
    """mmdebstrap makes work/rootfs: Debian, the packages, DevStack's virtualenv, made a box's."""
    customize = Path(__file__).parent / "boxdata" / "debian-customize.sh"
    extra = f" and the {len(spec.packages)} packages DevStack installs" if spec.packages else ""
    step(f"bootstrapping Debian {spec.release.codename} from {mirror}{extra}")
    include = ",".join(dict.fromkeys((*PACKAGES, *spec.packages)))
    hooks = []
    if spec.python is not None:  # before debian-customize.sh, which points resolv.conf at the machine's resolver
        step(f"and DevStack's virtualenv: {len(spec.python.requirements)} requirements, wheels only")
        script = shlex.quote(str(_venv_folder(spec.python, work)))
        hooks += ["--customize-hook", f'sh {script} "$1" {shlex.quote(str(work / "venv"))}']
    run([*_privileged(), "mmdebstrap", "--variant=minbase", f"--include={include}", *hooks,
         "--customize-hook", f'sh {customize} "$1" {insecure_public_key()}',
         spec.release.codename, str(work / "rootfs"), mirror],
        log=log, what="mmdebstrap", timeout=1800,
        hint=f"check that {mirror} is reachable, or pass --mirror with a Debian mirror you can reach")


def build_box(spec: BoxSpec, *, mirror: str, step: Callable[[str], None], log: Path) -> Path:
    """Build spec.file (replacing it atomically). `step` is told each phase as it starts."""
    check_tools()
    insecure_public_key()  # missing: said before anything is made
    sudo = _privileged()
    spec.file.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=spec.file.parent))
    rootfs, disk, mnt = work / "rootfs", work / "disk.raw", work / "mnt"
    try:
        _bootstrap(spec, work, mirror=mirror, step=step, log=log)
        step("writing the disk image")
        run(["truncate", "-s", f"{VIRTUAL_SIZE_GB}G", str(disk)], log=log)
        # No 64bit feature: extlinux cannot boot from 64bit ext4.
        run([*sudo, "mkfs.ext4", "-q", "-F", "-O", "^64bit", "-L", "labctl-root", "-d", str(rootfs), str(disk)],
            log=log, what="mkfs.ext4")
        step("installing the boot loader")
        mnt.mkdir()
        run([*sudo, "mount", "-o", "loop", str(disk), str(mnt)], log=log, what="mount",
            hint="loop devices are needed: run on a host (or container) where `mount -o loop` works")
        run([*sudo, "extlinux", "--install", str(mnt / "boot" / "extlinux")], log=log, what="extlinux")
        run([*sudo, "umount", str(mnt)], log=log, what="umount")
        step("compressing the image")
        image = work / "box.img"
        run(["qemu-img", "convert", "-O", "qcow2", "-c", str(disk), str(image)], log=log, what="qemu-img")
        disk.unlink()
        (work / "metadata.json").write_text(json.dumps(
            {"provider": "libvirt", "format": "qcow2", "virtual_size": VIRTUAL_SIZE_GB}))
        (work / "Vagrantfile").write_text(BOX_VAGRANTFILE.format(version=spec.release.version))
        partial = work / "box.partial"
        with tarfile.open(partial, "w") as tar:
            for name in ("metadata.json", "Vagrantfile", "box.img"):
                tar.add(work / name, arcname=name)
        os.replace(partial, spec.file)
        return spec.file
    finally:
        for point in mounts_under(work):  # the loop mount, or mmdebstrap's, if it was cut short
            run([*sudo, "umount", "-l", str(point)], log=log)
        run([*sudo, "rm", "-rf", "--one-file-system", str(work)], log=log)


def mounts_under(folder: Path, table: Path = Path("/proc/self/mounts")) -> list[Path]:
    """What is mounted in `folder`, deepest first. mmdebstrap mounts /dev, /proc and /sys in the root
    filesystem while its hooks run, and a build cut short (a signal) may leave them: `rm
    --one-file-system` then leaves their folders, and they stay mounted."""
    inside = []
    for line in table.read_text().splitlines():
        fields = line.split()
        if len(fields) > 1:
            point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1]))
            if point.is_relative_to(folder):
                inside.append(point)
    return sorted(inside, key=lambda p: len(p.parts), reverse=True)
