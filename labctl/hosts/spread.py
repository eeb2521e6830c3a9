"""A lab's machines spread over the inventory's hosts, for `up`: where each goes (placement), and how
Vagrant reaches each host that is not this machine (routes)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from labctl.errors import LabctlError
from labctl.hosts.placement import HostUnknown, Placement
from labctl.hosts.survey import place_machines
from labctl.hosts.transport import HostRoute, route

if TYPE_CHECKING:
    from labctl.context import Context
    from labctl.model import Lab
    from labctl.protocols import DomainInfo


@dataclass(frozen=True)
class Spread:
    lab: Lab  # its machines' `host` set: the inventory host each goes to, None for this machine
    routes: dict[str, HostRoute]
    placement: Placement | None  # None without an inventory: everything on this machine
    domains: dict[str, DomainInfo | None] = field(default_factory=dict)  # machine -> its domain, if made


def spread_existing(lab: Lab, ctx: Context) -> Spread:
    """The lab spread over the hosts, its existing machines where they live (read from libvirt)."""
    from labctl import records
    from labctl.names import domain_name

    lab_dir = ctx.home.lab(lab.name)
    lives = {m.name: m.host for m in records.read_lab(lab_dir).machines} if lab_dir.exists() else {}
    infos = {m.name: ctx.hypervisor_on(lives.get(m.name)).domain(domain_name(lab.name, m.name)) for m in lab.machines}
    spread = spread_lab(lab, ctx, kept={n: lives.get(n) for n, i in infos.items() if i is not None},
                        running={n for n, i in infos.items() if i is not None and i.state == "running"})
    return replace(spread, domains=infos)


def spread_lab(lab: Lab, ctx: Context, kept: Mapping[str, str | None], running: Collection[str]) -> Spread:
    """`kept`: machines that exist already -> the host they live on (None: this machine); they stay."""
    if not ctx.has_inventory():
        pinned = sorted({m.host for m in lab.machines if m.host})
        if pinned:
            raise HostUnknown(f"the lab pins machines to host {', '.join(pinned)}, and there is no host inventory"
                              f" ({ctx.hosts_file})", hint="list the hosts in hosts.yaml (labctl hosts --help), or"
                                                          " remove host: from lab.yaml")
        return Spread(lab, {}, None)
    entries = ctx.hosts()
    here = next((e.name for e in entries if e.uri == ctx.libvirt_uri), None)
    kept_named: dict[str, str] = {}
    for name, host in kept.items():
        where = host or here
        if where is None:
            raise HostUnknown(f"{name} lives on this machine ({ctx.libvirt_uri}), which the host inventory does not"
                              " list", hint=f"add it to hosts.yaml: {{name: local, uri: '{ctx.libvirt_uri}'}}")
        kept_named[name] = where
    placement = place_machines(lab.machines, entries, ctx.host_hypervisor, kept_named, running)
    machines = tuple(replace(m, host=None if placement.hosts[m.name] == here else placement.hosts[m.name])
                     for m in lab.machines)
    spread_lab_checks(replace(lab, machines=machines))
    used = {m.host for m in machines if m.host}
    routes = {e.name: route(e, ctx.home.root) for e in entries if e.name in used}
    return Spread(replace(lab, machines=machines), routes, placement)


def spread_lab_checks(lab: Lab) -> None:
    """What does not work across hosts yet is refused, with what to change, before anything is made."""
    from labctl.mirrors import served_folders

    hosts = {m.host for m in lab.machines}
    remote = sorted(m.name for m in lab.machines if m.host)
    if not remote:
        return
    if lab.classroom:
        # The trainees' forwarded ports, the sheet and cloning reach this machine's VMs only (issue 23):
        # seats elsewhere would get ports that lead nowhere.
        raise HostsUnsupported(f"seat(s) {', '.join(remote)} would live on another host, and the trainees'"
                               " forwarded ports reach this machine's seats only",
                               hint="keep the class on this machine: pin the seats here (classroom.seat.host:"
                                    " the name this machine has in hosts.yaml), or use fewer or smaller seats")
    if lab.caches or served_folders(lab):
        what = "the host's package caches (caches: true)" if lab.caches else "git mirrors served from this machine"
        raise HostsUnsupported(f"{', '.join(remote)} would live on another host, and {what} serve only this"
                               " machine's own VMs", hint="set caches: false and use a devstack repo URL, or keep"
                                                          " the machines on this machine (host: in lab.yaml)")
    roles = {m.role for m in lab.machines}
    if "controller" in roles and len(hosts) > 1:
        raise HostsUnsupported("the controller and its computes would be on different hosts, whose lab networks"
                               " are not joined", hint="pin them to one host (host: in lab.yaml)")


class HostsUnsupported(LabctlError):
    """A lab asks for something that labctl does not yet do across several hosts."""
