"""Seats of a cloned class made (again) from its base, without stack.sh: a walk-in's new seat, or a seat
whose copy failed. A class on seat networks (labctl.classroom.networks) needs it: its seats sit on
networks where no git mirror is served, under seat-01's name, and are never stacked but as copies.

The base is the template's stacked disk that the class's first `up` copied once
(labctl.stacking.clone), kept read-only under every seat's overlay; a host that has none yet gets it
sent. Each seat named is shut off, its disk replaced by a new overlay on the base, booted, fenced
in, and made its own seat by the same script as the first copies (its machine-id given back: the
base's start-up unit knows only the seats of the first copy), then its `stacked` snapshot taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from labctl import records
from labctl.errors import LabctlError
from labctl.names import BASE_SUFFIX, domain_name
from labctl.provision import StackResult
from labctl.stacking.clone import (
    TEMPLATE,
    make_seats,
    template_secrets,
)
from labctl.stacking.clone_hosts import BOOT_TIMEOUT, Hosts, send_base, wait_for_addresses
from labctl.stacking.identity import machine_ids_of
from labctl.stacking.machines import StackRun

if TYPE_CHECKING:
    from labctl.machine_status import MachineStatus
    from labctl.model import Lab
    from labctl.protocols import HypervisorPort, Reporter, SshPort
    from labctl.stacking.request import StackRequest
    from labctl.state import LabDir


def remake_seats(lab: Lab, lab_dir: LabDir, statuses: Sequence[MachineStatus], reporter: Reporter,
                 hypervisor: HypervisorPort, ssh: SshPort, names: Sequence[str], request: StackRequest) -> StackRun:
    """Seats `names` (never seat-01) made from the class's base, in parallel; their results recorded."""
    stacked = records.read(lab_dir).stack.get(TEMPLATE)
    base_name = f"{domain_name(lab.name, TEMPLATE)}{BASE_SUFFIX}"
    hosts = Hosts(hypervisor, request.hosts, {s.name: s.host for s in statuses})
    home = hosts.where.get(TEMPLATE)
    base = hosts.on(home).base_named(base_name)
    if stacked is None or not stacked.ok or base is None:
        raise LabctlError(f"{', '.join(names)} of lab {lab.name!r} can only be made from seat-01's stacked disk,"
                          f" and {'seat-01 has not stacked' if stacked is None or not stacked.ok else 'it is gone'}",
                          hint=f"labctl up stacks seat-01 and makes every seat from it; to make the class anew:"
                               f" labctl destroy --lab {lab.name}, then labctl up")
    doms = {n: domain_name(lab.name, n) for n in names}
    reporter.step(f"making {', '.join(names)} from {TEMPLATE}'s stacked disk (the class's base), without stack.sh")
    machine_ids = machine_ids_of(ssh, lab_dir, statuses, names)
    waits = []
    for host, on_host in hosts.group(names).items():
        there = hosts.on(host)
        there.shut_down([doms[n] for n in on_host], 120, lambda _d, _state: None)
        copy = there.base_named(base_name)
        if copy is None:  # a host that had no seat at the first copy
            copy = send_base(hosts.on(home), base, host, there, doms[on_host[0]], reporter)
        there.overlay_disks(copy, [doms[n] for n in on_host])
        waits.append(hosts.booted_anew({n: doms[n] for n in on_host}, BOOT_TIMEOUT))
        there.start([doms[n] for n in on_host])
    for wait in waits:  # the base asks DHCP under another client id than the box did: a new lease
        wait()
    current = wait_for_addresses(lab, lab_dir, hosts, names)
    if request.fence is not None:
        request.fence(current)
    for s in current:
        if s.name in names and s.ssh_address:  # each answers with the template's host key at first
            ssh.forget(lab_dir.known_hosts_of(s.host), [s.ssh_address])
    results = make_seats(ssh, lab, lab_dir, current, reporter, names, lab_dir.secrets().seats,
                          template_secrets(lab_dir), StackResult(TEMPLATE, "ok"), machine_ids)
    if request.snapshot is not None:
        for name in names:
            if results[name].ok:
                try:
                    request.snapshot(name, records.read(lab_dir).stack[name])
                except LabctlError as exc:
                    reporter.warn(f"{name}: made, but no snapshot: {exc.message}")
    return StackRun({n: results[n] for n in names})
