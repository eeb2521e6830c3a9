"""Test hosts: real sshd servers in network namespaces, each in its own copy of a Debian root
filesystem (overlayfs over one cached rootfs, in a private mount, PID and UTS namespace), so that
provisioning creates users and writes /etc and /opt in them and never on the machine running the
tests. Needs root (namespaces, mounts). Addresses: 10.199.N.2, the host side being 10.199.N.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import TEST_CACHE, require_tool

# What a DevStack box has before labctl prepares it (lsb-release: labctl installs it on a real box,
# but these hosts reach no package mirror). The cache folder's name changes with the list.
PACKAGES = "openssh-server,sudo,git,python3,iproute2,ca-certificates,procps,lsb-release"
ROOTFS = TEST_CACHE / f"hosts-rootfs-bookworm-{zlib.crc32(PACKAGES.encode()):08x}"
INSECURE_KEYS = sorted(Path("/usr/share/rubygems-integration/all/gems").glob("vagrant-*/keys/vagrant"))

HOST_SCRIPT = r"""
set -eu
merged=$1; name=$2; repo=$3; lower=$4; upper=$5; work=$6
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$merged"
mount -t proc proc "$merged/proc"
mount --rbind /dev "$merged/dev"
mount -t tmpfs tmpfs "$merged/run"
mkdir -p "$merged/run/sshd" "$merged/srv/devstack"
mount --bind -o ro "$repo" "$merged/srv/devstack"
hostname "$name"
echo "127.0.1.1 $name" >> "$merged/etc/hosts"
exec chroot "$merged" /usr/sbin/sshd -D -e -o UsePAM=no -o UseDNS=no
"""


def require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the SSH host tests need root (network namespaces, mounts)")
        pytest.skip("the SSH host tests need root (network namespaces, mounts)")


def ensure_rootfs() -> Path:
    """Build the shared root filesystem once (about half a minute); kept in the test cache."""
    require_tool("mmdebstrap")
    if (ROOTFS / "usr/sbin/sshd").exists():
        return ROOTFS
    partial = ROOTFS.with_name(ROOTFS.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)  # a fresh machine has no test cache yet
    pub = INSECURE_KEYS[-1].with_suffix(".pub")
    hook = (f'chroot "$1" useradd -m -s /bin/bash -p "*" vagrant && '
            f'install -d -m 700 "$1/home/vagrant/.ssh" && install -m 600 {pub} "$1/home/vagrant/.ssh/authorized_keys"'
            f' && chroot "$1" chown -R vagrant:vagrant /home/vagrant/.ssh && '
            f'echo "vagrant ALL=(ALL) NOPASSWD:ALL" > "$1/etc/sudoers.d/vagrant" && '
            f'chmod 440 "$1/etc/sudoers.d/vagrant"')
    mirror = os.environ.get("LABCTL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    built = subprocess.run(["mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", "--customize-hook", hook,
                            "bookworm", str(partial), mirror], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, f"mmdebstrap failed ({built.returncode}): {built.stderr[-2000:]}"
    partial.rename(ROOTFS)
    return ROOTFS


@dataclass
class TestHost:
    __test__ = False  # not a test class, whatever its name
    name: str
    index: int
    folder: Path
    repo: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def netns(self) -> str:
        return f"labctl-t{os.getpid() % 10000}-{self.index}"

    @property
    def veth(self) -> str:
        return f"lt{os.getpid() % 10000}h{self.index}"

    @property
    def address(self) -> str:
        return f"10.199.{self.index}.2"

    def start(self) -> TestHost:
        upper, work, merged = (self.folder / d for d in ("upper", "work", "merged"))
        for d in (upper, work, merged):
            d.mkdir(parents=True, exist_ok=True)
        add_namespace(self.netns, self.veth, f"10.199.{self.index}.1", self.address)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child",
             "sh", "-c", HOST_SCRIPT, "host", str(merged), self.name, str(self.repo), str(ROOTFS), str(upper),
             str(work)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.address, 22, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # unshare --kill-child takes sshd (PID 1 of the host's namespace) and all below with it.
            self.proc.kill()
            self.proc.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], check=False, capture_output=True)


def add_namespace(netns: str, veth: str, host_address: str, address: str, default_route: bool = False) -> None:
    """A network namespace joined to this host by a veth pair: `host_address` on this side, `address`
    (eth0) inside, both /24; with `default_route`, everything inside goes through this host."""
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns], check=True)
    subprocess.run(["ip", "addr", "add", f"{host_address}/24", "dev", veth], check=True)
    subprocess.run(["ip", "link", "set", veth, "up"], check=True)
    inside = [["addr", "add", f"{address}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
              ["link", "set", "lo", "up"]]
    if default_route:
        inside.append(["route", "add", "default", "via", host_address])
    for cmd in inside:
        subprocess.run(["ip", "-n", netns, *cmd], check=True)


def wait_port(address: str, port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the test host at {address} exited with {proc.returncode}")
        try:
            socket.create_connection((address, port), timeout=0.3).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on {address}:{port}")


class SilentServer:
    """A TCP server on loopback that accepts connections and never says a word: an SSH that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)

    def close(self) -> None:
        self.sock.close()
        for client in self.clients:
            client.close()
