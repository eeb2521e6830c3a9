"""This machine's services for a lab's machines on every host: the package caches (started here,
and relayed to the other hosts its machines live on), and the git mirrors' relays while DevStack runs
(labctl.hosts.relay). A use-case: it reaches the hosts through the Context."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from labctl.names import MANAGEMENT_NETWORK

if TYPE_CHECKING:
    from pathlib import Path

    from labctl.cache.services import Endpoints
    from labctl.context import Context
    from labctl.hosts.relay import Forward, Relay
    from labctl.model import Lab
    from labctl.protocols import Reporter
    from labctl.stacking.serving import Relayer
    from labctl.state import LabDir


def host_caches(lab: Lab, ctx: Context, reporter: Reporter) -> Endpoints | None:
    """The host's package caches running, when the lab uses them (started if need be, kept when they
    run); None for a lab that does not. A cache that cannot start is an error, never the internet.
    Machines on other hosts (`lab`'s machines placed) get them through relays to their hosts."""
    return caches_for(lab.caches, {m.host for m in lab.machines if m.host}, ctx, reporter)


def caches_for(used: bool, hosts: set[str], ctx: Context, reporter: Reporter) -> Endpoints | None:
    """host_caches for a lab that uses them or not (`used`), whose machines live on `hosts` (other than
    this machine): as `up` and `stack` ask, and `resume` again (this machine may have restarted, and its
    relays with it)."""
    if not used:
        return None
    from labctl.cache.services import HostCaches

    caches = HostCaches(ctx.cache)
    # The management network first, made by labctl if no lab made it: then no lab's destroy removes it.
    address = ctx.hypervisor().management_address()
    ends = caches.endpoints()
    if ends is None or ends.address != address:
        reporter.step(f"starting the host's package caches (apt-cacher-ng, devpi-server) in {caches.root}")
        ends = caches.start(address)
    reporter.step(f"the machines fetch packages through the host's caches at {ends.address}"
                  + (" (offline: only what they hold)" if ends.offline else ""))
    from labctl.hosts.relay import RelayError, same

    for host in sorted(hosts):
        there = ctx.hypervisor_on(host).management_address()
        if there != ends.address:
            raise RelayError(f"host {host}'s management network gives the host {there}, this machine's gives"
                             f" {ends.address}: its machines would look for the caches at an address of their own",
                             hint=f"make {MANAGEMENT_NETWORK} alike on both hosts (virsh net-dumpxml"
                                  f" {MANAGEMENT_NETWORK})")
        host_relay(ctx, host, "caches", (same(ends.address, ends.apt_port), same(ends.address, ends.pypi_port)),
                   ctx.cache / "caches" / "relays").start()
        reporter.step(f"host {host}'s machines reach the same caches at {ends.address}, through SSH to {host}")
    return ends


def host_relay(ctx: Context, host: str, what: str, forwards: tuple[Forward, ...], folder: Path) -> Relay:
    """This machine's `forwards` offered on another host (labctl.hosts.relay)."""
    from labctl.hosts.relay import Relay, RelayError
    from labctl.hosts.transport import reached_over_ssh, ssh_argv

    entry = ctx.entry(host)
    if not reached_over_ssh(entry):
        raise RelayError(f"machines live on host {host} ({entry.uri}), which labctl does not reach over SSH: its"
                         f" machines get this machine's {what} through SSH to it",
                         hint=f"give {host} a qemu+ssh:// URI in hosts.yaml")
    return Relay(host, ssh_argv(entry, ctx.home.root), folder, what, forwards)


def relayer(ctx: Context, lab_dir: LabDir) -> Relayer:
    """For stacking: this machine's forwards (the git mirrors) offered on every host the lab's
    machines live on, other than this machine, for the time of a block."""
    from labctl.hosts.relay import relaying

    def relay(lab: Lab, forwards: tuple[Forward, ...]) -> AbstractContextManager[None]:
        hosts = sorted({m.host for m in lab.machines if m.host})
        return relaying([host_relay(ctx, h, "git mirrors", forwards, lab_dir.path / "relays") for h in hosts])

    return relay
