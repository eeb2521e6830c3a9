"""The SSH options with which anything reaches a lab machine (`labctl ssh`, `ssh-config`, the Ansible
inventory), written once. Pure.

Only the lab's key and known_hosts: neither the user's ~/.ssh/config nor the system's is read (-F
/dev/null), no agent or X11 forwarded (a ForwardAgent or ProxyJump there must not reach machines that
run third-party code), no password tried, and a machine on another hypervisor host reached through it
(ProxyCommand). Paths are quoted: an -o value or a config line is split at spaces unless quoted, and
LABCTL_HOME may hold a space (labctl.state refuses what a quote would not protect: `"`, `%`, `${`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MachineSsh:
    key: Path
    known_hosts: Path
    proxy: str | None = None  # ProxyCommand through the machine's host (%h:%p), when that is another machine


def options(target: MachineSsh) -> list[tuple[str, str]]:
    return [
        ("IdentityFile", f'"{target.key}"'), ("IdentitiesOnly", "yes"), ("PasswordAuthentication", "no"),
        ("ForwardAgent", "no"), ("ForwardX11", "no"), ("UserKnownHostsFile", f'"{target.known_hosts}"'),
        ("StrictHostKeyChecking", "accept-new"), ("LogLevel", "ERROR"),
        *([("ProxyCommand", target.proxy)] if target.proxy else []),
    ]


def argv(target: MachineSsh) -> list[str]:
    """For ssh's command line."""
    return ["-F", "/dev/null", *(word for name, value in options(target) for word in ("-o", f"{name}={value}"))]


def config_lines(target: MachineSsh) -> list[str]:
    """For an ssh_config Host block."""
    return [f"  {name} {value}" for name, value in options(target)]
