"""What keeps each machine to itself, and lets trainees in: every running machine fenced in on its
networks (labctl.isolation), and a classroom's ports opened to its seats (labctl.classroom.access),
after every start, since a started or copied seat may have a new lease."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from labctl import records
from labctl.errors import LabctlError
from labctl.machine_status import MachineStatus, lab_status

if TYPE_CHECKING:
    from labctl.context import Context
    from labctl.model import Lab
    from labctl.protocols import Reporter
    from labctl.seating import Classroom
    from labctl.state import LabDir


def fence_machines(lab: str, classroom: Classroom | None, ctx: Context, statuses: Sequence[MachineStatus]) -> None:
    """Every running machine fenced in on its networks (labctl.isolation), before anyone is let in:
    again after each start, since a copied seat's card gets a new lease. A seat alone on a network of
    its own (classroom.seat_networks) has its card there sealed: nothing passes it."""
    from labctl.cache.services import HostCaches
    from labctl.classroom import networks
    from labctl.isolation import fences_for, host_ports
    from labctl.mirrors import GIT_PORT

    ports = host_ports(GIT_PORT, HostCaches(ctx.cache).machine_ports())
    for s in statuses:
        if s.state == "running":
            alone = networks.isolated(classroom, s.name)
            fences = fences_for(classroom is not None, networks.network_of(lab, classroom, s.name), s.lab_ip, alone)
            ctx.hypervisor_on(s.host).fence(s.domain, fences, ports)


def fencer(lab: Lab, ctx: Context) -> Callable[[Sequence[MachineStatus]], None]:
    """fence_machines for one lab's machines, as the clone step calls it once the copies have leases;
    with seat networks, the trainees' ports then lead to those leases (labctl.classroom.networks)."""
    def fence(statuses: Sequence[MachineStatus]) -> None:
        fence_machines(lab.name, lab.classroom, ctx, statuses)
        if lab.classroom is not None and lab.classroom.seat_networks:
            from labctl.classroom.access import forwarder_pid

            lab_dir = ctx.home.lab(lab.name)
            if forwarder_pid(lab_dir) is not None:
                open_doors(lab_dir, ctx, None, statuses)

    return fence


def open_doors(lab_dir: LabDir, ctx: Context, reporter: Reporter | None,
               statuses: Sequence[MachineStatus] | None = None) -> None:
    """Open (or keep, or point anew) the trainees' ports; `statuses`: the seats' as just read, if known."""
    from labctl.classroom.access import HostWay, open_access
    from labctl.hosts.transport import addresses_of, reached_over_ssh, ssh_argv

    def way_to(host: str) -> HostWay:
        entry = ctx.entry(host)
        if not reached_over_ssh(entry):
            raise LabctlError(f"seats live on host {host} ({entry.uri}), which labctl does not reach over SSH: the"
                              " trainees' ports lead to another host's seats through SSH",
                              hint=f"give {host} a qemu+ssh:// URI in hosts.yaml")
        return HostWay(ssh_argv(entry, ctx.home.root), addresses_of(entry))

    reached = None
    if (recorded := records.read_lab(lab_dir).classroom) is not None and recorded.seat_networks:
        # Every seat at seat-01's lab address: each is reached at its management address, from libvirt.
        from labctl.classroom.access import management_addresses

        reached = management_addresses(statuses if statuses is not None else lab_status(lab_dir, ctx.hypervisor(), ctx))
    doors = open_access(lab_dir, way_to, reached)
    if doors and reporter is not None:
        first, last = doors[0], doors[-1]
        reporter.step(f"trainees reach their seats from the classroom network: SSH on ports {first.ssh_port}-"
                      f"{last.ssh_port}, web on {first.web_port}-{last.web_port} (labctl sheet writes the cards)")
