"""`labctl inventory`: the lab as an Ansible inventory (YAML), so that a playbook reaches every machine.

Groups per role (allinone, controller, compute) and, in a classroom, per seat (seat_07: Ansible's
group names are identifiers). Each host carries the SSH settings labctl itself uses: the lab's
key for that machine, the lab's known_hosts, no user or system ssh_config.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

import yaml

from labctl.sshopts import MachineSsh, argv
from labctl.state import LabDir

if TYPE_CHECKING:
    from labctl.machine_status import MachineStatus


def inventory(lab_dir: LabDir, statuses: Sequence[MachineStatus]) -> dict[str, object]:
    from labctl.names import SEAT_RE

    hosts: dict[str, dict[str, str]] = {}
    children: dict[str, dict[str, dict[str, None]]] = {}
    for s in statuses:
        key = lab_dir.private_key(s.name)
        if s.ssh_address is None or not key.is_file():
            continue  # not running, or never up: Ansible would only time out on it
        hosts[s.name] = {
            "ansible_host": s.ssh_address, "ansible_user": s.user, "ansible_ssh_private_key_file": str(key),
            # The same options as `labctl ssh` (labctl.sshopts), the ProxyCommand to a machine on another
            # host included; ansible splits this string like a shell.
            "ansible_ssh_common_args": shlex.join(argv(MachineSsh(key, lab_dir.known_hosts_of(s.host), s.proxy))),
            "labctl_lab_ip": s.lab_ip, "labctl_role": s.role,
        }
        children.setdefault(s.role, {"hosts": {}})["hosts"][s.name] = None
        if SEAT_RE.match(s.name):
            children.setdefault("seats", {"hosts": {}})["hosts"][s.name] = None
            children[s.name.replace("-", "_")] = {"hosts": {s.name: None}}
    return {"all": {"hosts": hosts, "children": children, "vars": {"labctl_lab": lab_dir.name}}}


def render(lab_dir: LabDir, statuses: Sequence[MachineStatus]) -> str:
    skipped = [s.name for s in statuses if s.ssh_address is None or not lab_dir.private_key(s.name).is_file()]
    head = f"# Ansible inventory of lab {lab_dir.name}, written by labctl inventory.\n"
    if skipped:
        head += f"# Left out (not running): {', '.join(skipped)}\n"
    return head + yaml.safe_dump(inventory(lab_dir, statuses), sort_keys=False, default_flow_style=False)
