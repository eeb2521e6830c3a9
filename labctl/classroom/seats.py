"""The `classroom:` section of lab.yaml: seats, trainees, and how trainees reach their seat.

A classroom lab describes one seat machine (an all-in-one DevStack) and labctl makes one copy per
seat, named `seat-01`, `seat-02`... so that a trainer can say "seat 7". Each seat has its own
secrets (DevStack's passwords and the trainee's SSH password): no trainee can log into, or reach
the database of, another's seat.

    classroom:
      trainees: [Ada Lovelace, Grace Hopper]   # one seat each, in this order
      seats: 12                                # at least this many seats (unnamed ones are free)
      spares: 2                                # more seats for walk-ins, marked as spares
      seat: {distro: debian:12, memory: 8G, cpus: 2, disk: 40G}
      address: 192.168.1.50                    # what trainees type to reach this host
      listen: 0.0.0.0                          # where the host listens for them
      ssh_port: 2200                           # seat N: ssh -p 2200+N stack@address
      web_port: 8000                           # seat N: http://address:8000+N/dashboard
      clone: true                              # stack seat-01 once, copy it to the others (default)
      seat_networks: true                      # every seat keeps seat-01's name and address, on a network
                                               # of its own (default: when Nova, Neutron, OVN or Cinder run)
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace

from labctl.errors import LabFileError, show
from labctl.raw import RawMap
from labctl.seating import Classroom, Seat, seat_name

MAX_SEATS = 99
TRAINEE_NAME_LIMIT = 60
_ADDRESS_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
# Ports this host's own services listen on, which no classroom port may take (labctl.mirrors.GIT_PORT,
# labctl.cache.services' APT_PORT and PYPI_PORT; libvirt gives consoles VNC ports from 5900 up).
RESERVED_PORTS = ((9418, 9418, "labctl's git daemon"), (3148, 3149, "labctl's package caches"),
                  (5900, 5999, "the VMs' consoles (VNC)"))




# ---------------------------------------------------------------------------------------------
# Parsing


def _whole(value: object, path: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise LabFileError(f"{path}: expected a whole number from {lo} to {hi}, got {show(value)}")
    return value


def trainee_name(value: object, path: str) -> str:
    """A name printed on the sheet, in a terminal and in CSV: one line of printable text."""
    if not isinstance(value, str) or not value.strip():
        raise LabFileError(f"{path}: expected a trainee's name, got {show(value)}")
    name = " ".join(w for w in value.split(" ") if w)  # extra spaces go; any other blank (a newline, a tab) is refused
    if len(name) > TRAINEE_NAME_LIMIT or any(unicodedata.category(c).startswith(("C", "Z")) and c != " "
                                             for c in name):
        raise LabFileError(f"{path}: a trainee's name is one line of printable text of at most"
                           f" {TRAINEE_NAME_LIMIT} characters, got {show(value)}")
    return name


def _listen(value: object) -> str:
    try:
        return str(ipaddress.IPv4Address(value)) if isinstance(value, str) else ""
    except ValueError:
        pass
    raise LabFileError(f"classroom.listen: expected an IPv4 address of this host (or 0.0.0.0 for all),"
                       f" got {show(value)}")


def _seat_networks(value: object, clone: bool) -> bool | None:
    """classroom.seat_networks as lab.yaml says it (None: `plan` decides, labctl.classroom.networks)."""
    if value is not None and not isinstance(value, bool):
        raise LabFileError(f"classroom.seat_networks: expected true or false, got {show(value)}")
    if value and not clone:
        raise LabFileError("classroom.seat_networks: seats on networks of their own are copies of seat-01, and"
                           " classroom.clone is false", hint="remove seat_networks (each seat then stacks as"
                           " itself), or set clone: true")
    return value


def parse_classroom(raw: object) -> tuple[Classroom, RawMap]:
    """The classroom and the seat machine's settings (machine keys, checked by the lab model). Its keys
    and their kinds were checked by lab.yaml's shape (labctl.labfile.shape) before."""
    if not isinstance(raw, dict):
        raise LabFileError(f"classroom: expected a mapping, got {type(raw).__name__}")
    names = raw.get("trainees") or []
    if not isinstance(names, list):
        raise LabFileError(f"classroom.trainees: expected a list of names, got {type(names).__name__}")
    trainees = [trainee_name(v, f"classroom.trainees[{i}]") for i, v in enumerate(names[:MAX_SEATS + 1])]
    wanted = _whole(raw["seats"], "classroom.seats", 1, MAX_SEATS) if "seats" in raw else 0
    spares = _whole(raw.get("spares", 0), "classroom.spares", 0, MAX_SEATS)
    regular = max(wanted, len(trainees))
    if regular == 0:
        raise LabFileError("classroom: say how many seats (seats: 12) or list the trainees (trainees: [...])")
    if regular + spares > MAX_SEATS:
        raise LabFileError(f"classroom: {regular} seats and {spares} spares make {regular + spares} seats;"
                           f" a classroom has at most {MAX_SEATS}",
                           hint="split the class into two labs (each with its own network)")
    seats = tuple(Seat(n, trainees[n - 1] if n <= len(trainees) else None, n > regular, n <= len(trainees))
                  for n in range(1, regular + spares + 1))
    address = raw.get("address")
    if address is not None and (not isinstance(address, str) or not _ADDRESS_RE.match(address)):
        raise LabFileError(f"classroom.address: expected this host's name or address as trainees reach it,"
                           f" got {show(address)}")
    ssh_port = _whole(raw.get("ssh_port", 2200), "classroom.ssh_port", 1024, 65535 - len(seats))
    web_port = _whole(raw.get("web_port", 8000), "classroom.web_port", 1024, 65535 - len(seats))
    if abs(ssh_port - web_port) <= len(seats):
        raise LabFileError(f"classroom: SSH ports {ssh_port + 1}-{ssh_port + len(seats)} and web ports"
                           f" {web_port + 1}-{web_port + len(seats)} overlap",
                           hint="keep ssh_port and web_port more than the number of seats apart")
    for key, first in (("ssh_port", ssh_port), ("web_port", web_port)):
        for low, high, whose in RESERVED_PORTS:
            if first + 1 <= high and low <= first + len(seats):
                raise LabFileError(f"classroom.{key}: ports {first + 1}-{first + len(seats)} take {low}-{high},"
                                   f" {whose}", hint=f"choose classroom.{key} so that its ports stay clear of it")
    machine = raw.get("seat") or {}
    if not isinstance(machine, Mapping):
        raise LabFileError(f"classroom.seat: expected a mapping, got {type(machine).__name__}")
    clone = raw.get("clone", True)
    if not isinstance(clone, bool):
        raise LabFileError(f"classroom.clone: expected true or false, got {show(clone)}")
    classroom = Classroom(seats, address, _listen(raw.get("listen", "0.0.0.0")), ssh_port,  # noqa: S104
                          web_port, clone, _seat_networks(raw.get("seat_networks"), clone))
    return classroom, dict(machine)


def keep_seats(classroom: Classroom, before: Classroom | None) -> tuple[Classroom, list[str]]:
    """The classroom with each trainee on the seat they had before (lab.yaml's list is an order of
    names, not of seats: removing Ada must not move Grace onto Ada's seat, whose card Ada holds).
    Newcomers take seats no one has ever had first, then those left; the second list says which
    newcomer got a seat someone else had (its passwords are still on the leaver's card). Pure."""
    names = [s.trainee for s in classroom.seats if s.trainee]
    if before is None or len(set(names)) != len(names):  # two trainees of one name: by order, as written
        return classroom, []
    had = {s.trainee: s.number for s in before.seats if s.trainee}
    held = {s.number for s in before.seats if s.trainee or s.held}
    regular = [s for s in classroom.seats if not s.spare]
    trainees = [s.trainee for s in regular if s.trainee]
    placed = {t: had[t] for t in trainees if t in had and had[t] <= len(regular)}
    free = sorted((s.number for s in regular if s.number not in placed.values()), key=lambda n: (n in held, n))
    handed = []
    for trainee in (t for t in trainees if t not in placed):
        placed[trainee] = free.pop(0)
        if placed[trainee] in held:
            handed.append(f"{seat_name(placed[trainee])} goes to {trainee}, but someone had it before: their card"
                          f" still opens it (its passwords stay until the seat is made anew)")
    by_seat = {n: t for t, n in placed.items()}
    seats = tuple(replace(s, trainee=None if s.spare else by_seat.get(s.number),
                          held=s.number in held or s.number in by_seat) for s in classroom.seats)
    return replace(classroom, seats=seats), handed


def seat_machines(classroom: Classroom, machine: RawMap) -> list[RawMap]:
    """The lab's `machines:` entries: one all-in-one per seat, with the seat's settings."""
    return [{**machine, "name": s.name, "role": "allinone"} for s in classroom.seats]


def fitting_seats(seat_memory_mb: int, seat_disk_gb: int, memory_available_mb: int, disk_free_gb: int | None) -> int:
    """How many seats of this size the host has room for (disk not counted when unknown)."""
    by_memory = memory_available_mb // max(seat_memory_mb, 1)
    return max(0, by_memory if disk_free_gb is None else min(by_memory, disk_free_gb // max(seat_disk_gb, 1)))


# ---------------------------------------------------------------------------------------------
# The class's arithmetic


@dataclass(frozen=True)
class ClassFit:
    seats: int
    seat_memory_mb: int
    seat_disk_gb: int
    memory_available_mb: int
    disk_free_gb: int | None

    @property
    def fitting(self) -> int:
        return fitting_seats(self.seat_memory_mb, self.seat_disk_gb, self.memory_available_mb, self.disk_free_gb)

    @property
    def fits(self) -> bool:
        return self.fitting >= self.seats

    def lines(self) -> list[str]:
        n, mem, disk = self.seats, self.seat_memory_mb, self.seat_disk_gb
        verdict = "fits" if self.fits else f"does not fit: only {self.fitting} of the {n} seats to start would"
        return [f"memory: {n} seats x {mem} MiB = {n * mem} MiB; this host has {self.memory_available_mb} MiB"
                f" available", f"disk: {n} seats x up to {disk} GB filled (volumes are thin) = {n * disk} GB; "
                + (f"{self.disk_free_gb} GB free" if self.disk_free_gb is not None else "free space not known yet"),
                f"the class {verdict}"]
