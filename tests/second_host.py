"""A second hypervisor host that is really another: its own libvirtd in namespaces of its own,
reached from this machine only through its own sshd.

In a network namespace (its own interfaces, firewall, and so its own vagrant-libvirt management
network, even on the same 192.168.121.0/24) and a mount namespace where /etc/libvirt,
/var/lib/libvirt (storage pool, networks, domains), /var/cache/libvirt, /var/log/libvirt and /run
(libvirt's sockets) are folders of its own: nothing of it is visible to this machine's libvirtd,
and nothing of this machine's libvirtd to it. Its PID namespace ends with the test, taking its
libvirtd, its QEMUs and its dnsmasq with it; then its folders go.

This machine reaches it at 10.198.N.2 (SSH, root, a key of its own), and its machines reach the
outside through this machine (a default route and a masquerade rule for 10.198.N.0/24, removed on
stop). QEMU, libvirt's binaries and the rest of the file system are this machine's, as on a second
host installed alike. Needs root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from hosts import add_namespace, require_root, wait_port
from sshd import keygen

PRIVATE = ("etc/libvirt", "var/lib/libvirt", "var/cache/libvirt", "var/log/libvirt")

# PID 1 of the host's PID namespace: its folders over this machine's, its daemons, then waits (and so
# reaps what the daemons leave) until it is killed, which ends every process of the namespace.
HOST_SCRIPT = r"""
set -eu
root=$1
mount --make-rprivate /
for d in etc/libvirt var/lib/libvirt var/cache/libvirt var/log/libvirt; do mount --bind "$root/$d" "/$d"; done
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/libvirt /run/sshd /run/lock
mount -t proc proc /proc
hostname "$2"
/usr/sbin/virtlogd -d
/usr/sbin/libvirtd -d
/usr/sbin/sshd -D -e -f "$root/sshd_config" 2>>"$root/sshd.log" &
while :; do wait || true; sleep 1; done
"""


@dataclass
class SecondHost:
    """`index` picks its addresses (10.198.index.0/24); `folder` holds everything it has."""

    folder: Path
    index: int = 1
    name: str = "second"
    gateway_ports: bool = True  # its sshd lets labctl's forwards listen on its own addresses
    proc: subprocess.Popen[bytes] | None = None
    client_key: Path = field(init=False)

    def __post_init__(self) -> None:
        self.client_key = self.folder / "client_key"

    @property
    def tag(self) -> str:
        return f"{os.getpid() % 10000}s{self.index}"

    @property
    def netns(self) -> str:
        return f"labctl-2nd-{self.tag}"

    @property
    def veth(self) -> str:
        return f"l2{self.tag}"

    @property
    def gateway(self) -> str:
        return f"10.198.{self.index}.1"

    @property
    def address(self) -> str:
        return f"10.198.{self.index}.2"

    @property
    def subnet(self) -> str:
        return f"10.198.{self.index}.0/24"

    @property
    def uri(self) -> str:
        return f"qemu+ssh://root@{self.address}/system"

    def inventory_line(self) -> str:
        return f"  - {{name: {self.name}, uri: '{self.uri}', ssh_key: '{self.client_key}'}}\n"

    def start(self) -> SecondHost:
        require_root()
        root = self.folder / "root"
        for d in PRIVATE:
            (root / d).mkdir(parents=True, exist_ok=True)
        self._copy_config(root / "etc/libvirt")
        for d in ("images", "qemu", "dnsmasq", "network", "boot"):
            (root / "var/lib/libvirt" / d).mkdir(exist_ok=True)
        keygen(self.client_key)
        host_key = keygen(self.folder / "host_key")
        (self.folder / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        (root / "sshd_config").write_text("\n".join([
            f"ListenAddress {self.address}", f"HostKey {host_key}", f"PidFile {self.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}", "StrictModes no", "UsePAM no",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
            "AllowUsers root", "LogLevel ERROR", f"GatewayPorts {'clientspecified' if self.gateway_ports else 'no'}",
            ""]))
        add_namespace(self.netns, self.veth, self.gateway, self.address, default_route=True)
        subprocess.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", self.subnet, "!", "-d", self.subnet,
                        "-j", "MASQUERADE"], check=True)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child",
             "sh", "-c", HOST_SCRIPT, "host", str(root), self.name],
            stdout=subprocess.DEVNULL, stderr=(self.folder / "host.log").open("wb"), start_new_session=True)
        wait_port(self.address, 22, self.proc)
        self.wait_libvirt()
        return self

    def _copy_config(self, etc: Path) -> None:
        """This machine's libvirt configuration (daemon settings, nwfilters), without its domains,
        networks and storage pools: a host installed alike, with nothing defined yet."""
        shutil.copytree("/etc/libvirt", etc, dirs_exist_ok=True, symlinks=True)
        for sub in ("qemu", "storage", "secrets"):
            shutil.rmtree(etc / sub, ignore_errors=True)
            (etc / sub).mkdir()
        (etc / "qemu" / "networks" / "autostart").mkdir(parents=True)

    def ssh(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command on the host, as labctl reaches it: root over its sshd, with its key."""
        options = ["BatchMode=yes", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]
        return subprocess.run(["ssh", "-i", str(self.client_key), *(a for o in options for a in ("-o", o)),
                               f"root@{self.address}", command], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)

    def virsh(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.ssh("virsh -q -c qemu:///system " + " ".join(args))

    def wait_libvirt(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.virsh("uri").returncode == 0:
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.3)
        log = (self.folder / "host.log").read_text()[-2000:]
        raise RuntimeError(f"the second host's libvirtd did not answer: {log}")

    def stop(self) -> None:
        inside = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True).stdout.split()
        if self.proc is not None and self.proc.poll() is None:
            # --kill-child: PID 1 of its namespace goes, and the kernel ends every process in it
            # (libvirtd, QEMUs, dnsmasq, sshd), not at once: waited for, so that no QEMU holds a disk.
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{p}").exists() for p in inside) and time.monotonic() < deadline:
            time.sleep(0.1)
        subprocess.run(["iptables", "-t", "nat", "-D", "POSTROUTING", "-s", self.subnet, "!", "-d", self.subnet,
                        "-j", "MASQUERADE"], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], check=False, capture_output=True)
        shutil.rmtree(self.folder / "root", ignore_errors=True)
