"""A lab's machines spread over the inventory's hosts, for `up`: where each goes (placement), and how
Vagrant reaches each host that is not this machine (routes)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from labctl.errors import LabctlError
from labctl.hosts.placement import HostUnknown, Placement
from labctl.hosts.survey import place_machines
from labctl.hosts.transport import HostRoute, reached_over_ssh, route

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
    spread_lab_checks(replace(lab, machines=machines), {e.name for e in entries if reached_over_ssh(e)})
    used = {m.host for m in machines if m.host}
    routes = {e.name: route(e, ctx.home.root) for e in entries if e.name in used}
    return Spread(replace(lab, machines=machines), routes, placement)


def spread_lab_checks(lab: Lab, over_ssh: Collection[str] = ()) -> None:
    """What does not work across hosts is refused, with what to change, before anything is made.
    `over_ssh`: the hosts labctl reaches over SSH."""
    from labctl.mirrors import served_folders

    hosts = {m.host for m in lab.machines}
    remote = sorted(m.name for m in lab.machines if m.host)
    if not remote:
        return
    # A classroom's seats, the host's caches and the served git mirrors reach other hosts through
    # SSH: the trainees' ports (classroom.access), the caches and mirrors through relays
    # (hosts.relay); a cloned class's base is sent once to each host (stacking.clone).
    needs = ("the trainees' ports" if lab.classroom else "the host's package caches (caches: true)" if lab.caches
             else "the git mirrors served from this machine" if served_folders(lab) else None)
    no_ssh = sorted({m.host for m in lab.machines if m.host and m.host not in over_ssh})
    if needs and no_ssh:
        raise HostsUnsupported(f"machines would live on host {', '.join(no_ssh)}, which labctl does not reach over"
                               f" SSH, and {needs} reach another host's machines through SSH",
                               hint="give the host a qemu+ssh:// URI in hosts.yaml, or keep the machines on this"
                                    " machine (host: in lab.yaml)")
    roles = {m.role for m in lab.machines}
    if "controller" in roles and len(hosts) > 1:
        raise HostsUnsupported("the controller and its computes would be on different hosts, whose lab networks"
                               " are not joined", hint="pin them to one host (host: in lab.yaml)")


class HostsUnsupported(LabctlError):
    """A lab asks for something that labctl does not yet do across several hosts."""
