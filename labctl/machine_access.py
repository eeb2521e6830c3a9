"""Use-cases of reaching a lab's machines from the host: `labctl ssh`, `ssh-config` and `exec`, with
labctl's own SSH options (labctl.sshopts) and each machine's key."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from labctl.errors import LabctlError
from labctl.machine_status import MachineStatus, host_of, running
from labctl.protocols import CommandResult, SshPort
from labctl.sshopts import MachineSsh, argv, config_lines
from labctl.state import LabDir


def _key(lab_dir: LabDir, machine: str) -> Path:
    key = lab_dir.private_key(machine)
    if not key.is_file():
        raise LabctlError(f"{machine} has no SSH key yet (it was never brought up)",
                          hint=f"labctl up --lab {lab_dir.name}")
    return key


def machine_ssh(lab_dir: LabDir, status: MachineStatus) -> MachineSsh:
    return MachineSsh(_key(lab_dir, status.name), lab_dir.known_hosts_of(status.host), status.proxy)


def ssh_options(lab_dir: LabDir, machine: str) -> list[str]:
    """ssh's options for a lab machine on this host (labctl.sshopts)."""
    return argv(MachineSsh(_key(lab_dir, machine), lab_dir.known_hosts))


def ssh_argv(lab_dir: LabDir, status: MachineStatus, command: Sequence[str]) -> list[str]:
    running([status], lab_dir.name)
    line = ["ssh", *argv(machine_ssh(lab_dir, status)), f"{status.user}@{status.ssh_address}"]
    if command:
        line += ["--", remote_command(command)]
    return line


def remote_command(command: Sequence[str]) -> str:
    """One argument is a shell command line as typed (like ssh); several are quoted word by word."""
    return command[0] if len(command) == 1 else shlex.join(command)


def ssh_config(lab_dir: LabDir, statuses: Sequence[MachineStatus]) -> str:
    blocks = []
    for s in statuses:
        if s.ssh_address is None or not lab_dir.private_key(s.name).is_file():
            blocks.append(f"# {s.name}: {s.state}, no address\n")
            continue
        lines = [f"Host {s.name} {lab_dir.name}-{s.name}", f"  HostName {s.ssh_address}", f"  User {s.user}",
                 "  Port 22", *config_lines(machine_ssh(lab_dir, s))]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def exec_on(ssh: SshPort, lab_dir: LabDir, statuses: Sequence[MachineStatus], command: Sequence[str],
            timeout: float | None = None) -> dict[str, CommandResult]:
    running(statuses, lab_dir.name)
    for s in statuses:
        _key(lab_dir, s.name)  # a machine never brought up has no key: say so before connecting
    return ssh.run_parallel([host_of(lab_dir, s) for s in statuses], remote_command(command), timeout=timeout)
