"""A classroom's values: its seats, who sits at each, and how trainees reach them. Frozen, and light
(no other import): the model holds them, classroom/seats.py reads them from lab.yaml, records.py keeps
them in lab.json, without storage depending on the classroom feature."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Seat:
    number: int
    trainee: str | None = None
    spare: bool = False
    held: bool = False  # a trainee has had it (now or before): their card opens it until it is made anew

    @property
    def name(self) -> str:
        return seat_name(self.number)


@dataclass(frozen=True)
class Classroom:
    seats: tuple[Seat, ...]
    # What trainees type to reach this host (a name or an address); None: the host's own address on
    # its default route, found when the sheet is written.
    address: str | None = None
    listen: str = "0.0.0.0"  # noqa: S104 - trainees come from the classroom network, not from this host
    ssh_port: int = 2200
    web_port: int = 8000
    # Stack seat-01 once and make the other seats from its disk (labctl.stacking.clone), instead of
    # N runs of stack.sh fighting for the host's CPUs.
    clone: bool = True
    # Every seat keeps the template's name and lab address, each on a lab network of its own, so that a
    # cloned DevStack whose services remember their host (Nova, Neutron, OVN) needs no rewriting
    # (labctl.stacking.clone). None in lab.yaml's reading: decided by `plan` from the seat's services.
    seat_networks: bool | None = None

    def seat(self, name: str) -> Seat | None:
        return next((s for s in self.seats if s.name == name), None)

    def ports(self, seat: Seat) -> tuple[int, int]:
        """(SSH, web) ports on the host that lead to `seat`."""
        return self.ssh_port + seat.number, self.web_port + seat.number


def seat_name(number: int) -> str:
    return f"seat-{number:02d}"
