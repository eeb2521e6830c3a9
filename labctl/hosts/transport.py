"""How labctl reaches another host: OpenSSH, with labctl's own options, never the user's ~/.ssh.

libvirt's qemu+ssh:// transport runs `ssh` as the user's OpenSSH is configured: host keys from
~/.ssh/known_hosts (read from the passwd entry, whatever $HOME says), a prompt when the key is new.
labctl instead writes, per host, a small script running `ssh` with its options, and opens libvirt
through it (qemu+ext://NAME/system?command=SCRIPT):
- the host's key is recorded at first contact in labctl's own known_hosts ($LABCTL_HOME/hosts/),
  and a changed key is refused (as for the machines' keys);
- BatchMode: a host that would ask for a password fails at once, never waits on a hidden prompt;
- a connect timeout: a host that is down is named in seconds, not after TCP's minutes.
On the host, virt-ssh-helper (libvirt >= 6.8) bridges to its libvirtd; nc on its socket otherwise.
The same options make the ProxyCommand through which labctl and Vagrant reach a host's machines.
"""

from __future__ import annotations

import os
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from labctl.errors import LabctlError
from labctl.state import private_dir

if TYPE_CHECKING:
    from labctl.hosts.inventory import HostEntry

CONNECT_TIMEOUT = 10


@dataclass(frozen=True)
class HostRoute:
    """How Vagrant and labctl reach a host and its machines."""

    uri: str  # the libvirt URI to open
    proxy: str | None  # the ProxyCommand to its machines (%h:%p); None for a host not reached over SSH


def reached_over_ssh(entry: HostEntry) -> bool:
    return bool(entry.parts and entry.parts.over_ssh)


def route(entry: HostEntry, labctl_home: Path) -> HostRoute:
    proxy = proxy_command(entry, labctl_home) if reached_over_ssh(entry) else None
    return HostRoute(libvirt_uri(entry, labctl_home), proxy)


def hosts_dir(labctl_home: Path) -> Path:
    return labctl_home / "hosts"


def known_hosts(labctl_home: Path) -> Path:
    return hosts_dir(labctl_home) / "known_hosts"


def ssh_argv(entry: HostEntry, labctl_home: Path) -> list[str]:
    """`ssh` to the host itself, with labctl's options (a command or -W to follow)."""
    m = entry.parts
    if m is None or not m.over_ssh or m.host is None:
        raise ValueError(f"{entry.name} is not reached over SSH")
    argv = ["ssh", "-T", "-e", "none", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            # ssh splits an -o value at spaces unless quoted: $LABCTL_HOME may hold one.
            "-o", "StrictHostKeyChecking=accept-new", "-o", f'UserKnownHostsFile="{known_hosts(labctl_home)}"',
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ServerAliveInterval=15"]
    if entry.ssh_key:
        argv += ["-o", "IdentitiesOnly=yes", "-i", str(entry.ssh_key)]
    if m.port:
        argv += ["-p", m.port]
    if m.user:
        argv += ["-l", m.user]
    return [*argv, m.host.strip("[]")]


def addresses_of(entry: HostEntry) -> tuple[str, ...]:
    """The host's IP addresses as this machine resolves its name (none when it cannot)."""
    import socket

    m = entry.parts
    if m is None or m.host is None:
        return ()
    try:
        found = socket.getaddrinfo(m.host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return ()
    return tuple(sorted({str(info[4][0]) for info in found}))


def proxy_command(entry: HostEntry, labctl_home: Path) -> str:
    """An OpenSSH ProxyCommand reaching a machine on `entry` through the host (%h:%p: the machine)."""
    return shlex.join([*ssh_argv(entry, labctl_home), "-W", "%h:%p"])


def libvirt_uri(entry: HostEntry, labctl_home: Path) -> str:
    """The URI labctl (and Vagrant) open for the host: its own for this machine, else libvirt's
    external transport through a script of labctl's (written here, mode 0700)."""
    m = entry.parts
    if m is None or m.scheme != "qemu+ssh":
        return entry.uri
    folder = hosts_dir(labctl_home)
    private_dir(labctl_home)
    private_dir(folder)
    remote_uri = f"qemu://{m.path}"
    bridge = (f"if command -v virt-ssh-helper >/dev/null 2>&1; then exec virt-ssh-helper {shlex.quote(remote_uri)};"
              " else exec nc -U /var/run/libvirt/libvirt-sock; fi")
    script = folder / f"{entry.name}.ssh"
    # libvirt's external transport drops what ssh says on failure: it goes to a file, for the error.
    text = (f"#!/bin/sh\n# written by labctl for host {entry.name}: libvirt reaches it through this\n"
            f"exec {shlex.join(ssh_argv(entry, labctl_home))} {shlex.quote(bridge)}"
            f" 2>{shlex.quote(str(ssh_log(entry, labctl_home)))}\n")
    # Each writer its own temporary file: machines' threads (snapshots) may write the same script at once.
    tmp = folder / f".{entry.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o700)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, script)
    return f"qemu+ext://{entry.name}/system?command={quote(str(script), safe='/')}"


class HostUnreachable(LabctlError):
    """An inventory host's libvirt cannot be reached (the host is down, SSH refused, a key changed)."""


def ssh_log(entry: HostEntry, labctl_home: Path) -> Path:
    """What ssh said on its last connection to the host."""
    return hosts_dir(labctl_home) / f"{entry.name}.ssh.log"


def _ssh_said(entry: HostEntry, labctl_home: Path) -> str:
    try:
        with ssh_log(entry, labctl_home).open(errors="replace") as handle:
            lines = [line.strip() for line in handle.read(8192).splitlines() if line.strip()]
    except OSError:
        return ""
    return "; ".join(lines[-2:])


def host_unreachable(entry: HostEntry, message: str, labctl_home: Path) -> HostUnreachable:
    """libvirt's words about a failed connection (with ssh's own, when it said something), as the
    host's name and what to do about it."""
    reason = message.split(": ", 2)[-1] if "libvirt is not reachable at" in message else message
    said = _ssh_said(entry, labctl_home) if entry.parts and entry.parts.scheme == "qemu+ssh" else ""
    if said:
        reason = said if said.startswith("ssh:") else f"ssh: {said}"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in reason or "Host key verification failed" in reason:
        hint = (f"{entry.name}'s SSH host key is not the one labctl recorded; if the host was reinstalled,"
                f" remove its line from {known_hosts(labctl_home)} (ssh-keygen -R HOST -f FILE)")
    elif "Permission denied" in reason:
        hint = f"the host refused the key: add {entry.ssh_key or 'your key'}.pub to its authorized_keys"
    else:
        hint = f"is {entry.name} up, with sshd and libvirtd running? (labctl hosts shows every host)"
    return HostUnreachable(f"host {entry.name} ({entry.uri}) cannot be reached: {reason.strip()}", hint=hint)
