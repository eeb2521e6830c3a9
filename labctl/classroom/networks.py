"""Seats on lab networks of their own (classroom.seat_networks), for DevStacks that remember their host.

A cloned seat starts as a copy of the template's stacked disk. A keystone-only DevStack is made into
another seat by rewriting its name, address and passwords (labctl.stacking.clone_guest). A compute
DevStack cannot be, reliably: Nova's services and its compute's resource provider are registered
under the host's name, OVN's chassis under its name and tunnel address, Neutron's agents under its
name, each in databases of their own (MySQL, OVN's northbound and southbound). So in such a class,
every seat keeps the template's name (the lab's name) and its lab address, and only its passwords and
secrets are made its own; each seat sits alone on a lab network of its own, with no address of the
host on it (vagrant-libvirt's `veryisolated` mode), where the same address cannot meet another seat.
The host, the forwarder and labctl reach each seat by its management address, which is its own
(DHCP, fenced: labctl.isolation). seat-01 stays on the lab's network, where the host serves the git
mirrors its stack.sh clones from.

Decided by `plan` (`seat_networks` not set in lab.yaml): on when the seat's DevStack runs a service
that remembers its host (labctl.devstack_services.host_bound), the classroom clones, and it has more
than one seat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from labctl.devstack_services import host_bound
from labctl.errors import LabctlError
from labctl.model import Lab
from labctl.names import network_name, seat_network_name
from labctl.seating import Classroom, seat_name

TEMPLATE = seat_name(1)


def decide(lab: Lab, services: Sequence[str], before: Classroom | None = None,
           made: bool = False) -> tuple[Lab, str | None]:
    """The lab with its classroom's `seat_networks` decided (and, when on, every seat given the
    template's address), and what the plan says about it (None: nothing to say). `services`: what the
    seat's DevStack runs (labctl.devstack_services.enabled_services of its local.conf); `before`: the
    classroom as recorded, whose decision cannot change once its seats are `made`. Pure."""
    classroom = lab.classroom
    if classroom is None:
        return lab, None
    bound = host_bound(services)
    on = classroom.seat_networks
    if on is None:
        on = bool(bound) and classroom.clone and len(classroom.seats) > 1
    was = before.seat_networks if before is not None else None
    if made and was is not None and was != on:
        raise LabctlError(f"lab {lab.name!r}: its seats {'are' if was else 'are not'} on networks of their own, and"
                          " this lab.yaml would change that under seats that exist",
                          hint=f"labctl destroy --lab {lab.name} first, or set classroom.seat_networks:"
                               f" {'true' if was else 'false'}")
    lab = replace(lab, classroom=replace(classroom, seat_networks=on))
    if not on:
        return lab, None
    template = next(m for m in lab.machines if m.name == TEMPLATE)
    lab = replace(lab, machines=tuple(replace(m, ip=template.ip) for m in lab.machines))
    why = (f" ({', '.join(bound[:4])}{'...' if len(bound) > 4 else ''} remember their host)" if bound else "")
    return lab, (f"every seat keeps seat-01's name ({lab.name}) and address ({template.ip}), each on a network"
                 f" of its own{why}: cloned seats need no rewriting but their passwords (classroom.seat_networks)")


def on(classroom: Classroom | None) -> bool:
    return bool(classroom and classroom.seat_networks)


def hostname(lab: str, classroom: Classroom | None, machine: str) -> str:
    """The machine's host name: with seat networks, every seat's is the lab's name (the template's name,
    which its DevStack remembers, and no trainee's seat number on another's seat)."""
    return lab if on(classroom) else machine


def network_of(lab: str, classroom: Classroom | None, machine: str) -> str:
    """The lab network a machine's second card is on."""
    return seat_network_name(lab, machine) if on(classroom) and machine != TEMPLATE else network_name(lab)


def isolated(classroom: Classroom | None, machine: str) -> bool:
    """Whether that network is the seat's alone, with no address of the host (nothing on it to fence)."""
    return on(classroom) and machine != TEMPLATE
