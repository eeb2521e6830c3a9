"""DevStack on a lab's machines: the one `stack` use-case, which `labctl up` and `labctl stack` call.

- request.py      what a command asks (StackRequest)
- machines.py     machine by machine: each machine's local.conf pushed and stack.sh run, in parallel,
                  computes after their controller; records, credentials, the served git mirrors
- clone.py        a classroom at the speed of one seat: seat-01 stacked once, every seat made from its disk
- clone_guest.py  what runs inside each copy to make it its own seat (pure text)
- clone_hosts.py  a cloned classroom across hosts: its base sent once to each other host
- remake.py       seats made (again) from the class's base without stack.sh: walk-ins, failed copies
- images.py       a developer's one machine made from a stacked image of the same stack, or kept as one
- class_images.py a class's seat-01 made the template from such an image, or its stacked disk kept as one
- serving.py      the git mirrors and the developer's checkouts served while the machines stack
- pool.py         the threads machines are worked on in, stopped at once on Ctrl-C or SIGTERM
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from labctl.classroom import networks as seat_networks
from labctl.errors import LabctlError
from labctl.stacking.clone import TEMPLATE, clone_applies, stack_classroom
from labctl.stacking.images import images_apply, stack_with_images
from labctl.stacking.machines import StackRun, machines_to_stack, stack_lab
from labctl.stacking.remake import remake_seats
from labctl.stacking.request import StackRequest

__all__ = ["StackRequest", "StackRun", "stack"]

if TYPE_CHECKING:
    from labctl.machine_status import MachineStatus
    from labctl.model import Lab
    from labctl.protocols import HypervisorPort, Reporter, SshPort
    from labctl.state import LabDir


def stack(lab: Lab, lab_dir: LabDir, statuses: Sequence[MachineStatus], reporter: Reporter, hypervisor: HypervisorPort,
          ssh: SshPort, request: StackRequest) -> StackRun | None:
    """The machines that need DevStack get it; None when every one has stacked fine already. A
    classroom whose seats all need it is stacked once and cloned (the strategy of clone.py); any other
    lab, a chosen set of machines, or --clean, machine by machine (machines.py); a lab of one machine
    from a stacked image of the same stack when the host keeps one (images.py)."""
    names = [m.name for m in machines_to_stack(lab, lab_dir, request.names, request.everything)]
    if clone_applies(lab, names) and not request.clean:
        return stack_classroom(lab, lab_dir, statuses, reporter, hypervisor, ssh, names, request)
    copies = [n for n in names if n != TEMPLATE] if seat_networks.on(lab.classroom) else []
    if copies and TEMPLATE not in names:  # on a network with no git mirrors, under seat-01's name: made as copies
        return remake_seats(lab, lab_dir, statuses, reporter, hypervisor, ssh, copies, request)
    if copies:
        raise LabctlError(f"{', '.join(copies)} of lab {lab.name!r} can only be made from seat-01's stacked disk"
                          " (its seats keep seat-01's name and address, classroom.seat_networks), and seat-01 is"
                          " asked to stack again with them", hint=f"labctl stack {TEMPLATE} alone, then labctl stack"
                          f" {' '.join(copies)} (made from its disk); or labctl reset SEAT")

    def by_machine() -> StackRun | None:
        return stack_lab(ssh, lab, lab_dir, statuses, reporter, names=request.names, everything=request.everything,
                         clean=request.clean, cache=request.cache, snapshot=request.snapshot, caches=request.caches,
                         relay=request.relay)

    if images_apply(lab, names, request):
        return stack_with_images(lab, lab_dir, reporter, hypervisor, ssh, request, by_machine)
    return by_machine()
