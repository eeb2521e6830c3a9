"""A new lab never takes what another lab holds: its machines' VM names, its network, a classroom's
forwarded ports. Each is refused before anything is made, with a free choice named in the hint."""

from __future__ import annotations

import ipaddress

from labctl import records
from labctl.errors import LabConflict
from labctl.model import Lab
from labctl.names import domain_name
from labctl.seating import Classroom
from labctl.state import LabHome


def check_network_free(lab: Lab, home: LabHome) -> None:
    """Two labs on one network would hand out the same addresses (and share a bridge address)."""
    ours = ipaddress.IPv4Network(lab.cidr)
    taken = {}
    for other in home.names():
        recorded = records.read_lab(home.lab(other)).network if other != lab.name else None
        try:
            taken[other] = ipaddress.IPv4Network(recorded) if isinstance(recorded, str) else None
        except ValueError:
            taken[other] = None
    for other, net in taken.items():
        if net is not None and net.overlaps(ours):
            used = {n for n in taken.values() if n is not None}
            free = next((f"192.168.{i}.0/24" for i in range(150, 255)
                         if not any(ipaddress.IPv4Network(f"192.168.{i}.0/24").overlaps(n) for n in used)), None)
            raise LabConflict(f"lab {lab.name!r} would use network {ours}, which lab {other!r} uses ({net})",
                              hint=f"set network.cidr in lab.yaml to a free one{f', e.g. {free}' if free else ''}")


def _ports(classroom: Classroom) -> set[int]:
    return {p for seat in classroom.seats for p in classroom.ports(seat)}


def check_ports_free(lab: Lab, home: LabHome) -> None:
    """Two classrooms forwarding the same ports: the second could not open them, after its seats
    were made. Refused before anything."""
    if lab.classroom is None:
        return
    _check_listen(lab.classroom.listen)
    ours = _ports(lab.classroom)
    for other in home.names():
        theirs = records.read_lab(home.lab(other)).classroom if other != lab.name else None
        clash = sorted(ours & _ports(theirs)) if theirs else []
        if clash and theirs:
            raise LabConflict(f"classroom {lab.name!r} would forward port {clash[0]}, which classroom {other!r}"
                              f" forwards already", hint="set classroom.ssh_port and web_port in lab.yaml to free"
                              f" ranges, e.g. ssh_port: {max(_ports(theirs)) + 100}")


def _check_listen(address: str) -> None:
    """classroom.listen must be one of this host's addresses: else the forwarder could not start, after
    the seats were made. No packet is sent (a bind to port 0 only asks the kernel)."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError as exc:
            raise LabConflict(f"classroom.listen: {address} is not an address of this host ({exc.strerror})",
                              hint="give one of its addresses (ip -4 addr shows them), or 0.0.0.0 for all") from None


def check_domains_free(lab: Lab, home: LabHome) -> None:
    """Domain names are labctl-<lab>-<machine>: lab `web` with machine `db-x1` and lab `web-db` with
    machine `x1` would both own labctl-web-db-x1 (and destroy the other's). Refused before anything."""
    ours = {domain_name(lab.name, m.name): m.name for m in lab.machines}
    for other in home.names():
        if other == lab.name:
            continue
        for name in records.read_lab(home.lab(other)).machine_names:
            domain = domain_name(other, name)
            if domain in ours:
                raise LabConflict(f"machine {ours[domain]!r} of lab {lab.name!r} would be the VM {domain}, which lab"
                                  f" {other!r} (machine {name!r}) has already",
                                  hint="rename the lab or the machine (names that run into each other across a"
                                       " '-' make the same VM name)")
