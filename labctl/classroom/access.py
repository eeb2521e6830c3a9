"""How a trainee's laptop reaches its seat.

The seats live on the host's private lab network, which the classroom network cannot route to. The
host forwards two TCP ports per seat (classroom.ssh_port + N to the seat's SSH, classroom.web_port
+ N to its web server: dashboard and Keystone), so that a trainee needs nothing but an SSH client
and a browser: `ssh -p 2207 stack@host` with the seat's own password. Why ports, not the host as an
SSH jump: a jump needs an account (and keys handed out as files) on the trainer's host, while ports
give trainees no foothold on it at all; each port leads to one seat, and each seat has its own
password, so seat 1's credentials open nothing else.

A seat on another hypervisor host is reached the same way, through this machine: its port here leads
through one SSH connection to its host (the connection libvirt already uses), never through a port
opened on that host (labctl.classroom.forward). Why this machine rather than each host forwarding its
own seats: the hosts then need nothing but libvirt and sshd, trainees type one address whatever host
their seat landed on, and the flood limits of one forwarder hold for the whole class.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl import supervisor
from labctl.errors import LabctlError
from labctl.seating import Classroom
from labctl.state import LabDir, atomic_write

if TYPE_CHECKING:
    from labctl.classroom.sheet import Sheet
    from labctl.machine_status import MachineStatus

SSH_PORT = 22
WEB_PORT = 80
READY_TIMEOUT = 45.0  # the forwarder first connects to the hosts of seats on other hosts (30 s each at most)


@dataclass(frozen=True)
class Door:
    seat: str
    trainee: str | None
    spare: bool
    seat_address: str
    ssh_port: int
    web_port: int
    host: str | None = None  # the inventory host it lives on; None: this machine


def classroom_of(lab_dir: LabDir) -> Classroom:
    from labctl.records import read_lab

    classroom = read_lab(lab_dir).classroom
    if classroom is None:
        raise LabctlError(f"lab {lab_dir.name!r} is not a classroom (its lab.yaml has no classroom: section)",
                          hint="see docs/classroom.md, \"How trainees reach their seat\"; then run labctl plan again")
    return classroom


def doors(lab_dir: LabDir, classroom: Classroom, reached: Mapping[str, str] | None = None) -> list[Door]:
    """Each seat's ports and where they lead: its lab address; with seat networks (every seat at
    seat-01's lab address, labctl.classroom.networks), its management address, `reached` (from its
    status), and no address (no route) while it has none."""
    from labctl.records import read_lab

    machines = {m.name: m for m in read_lab(lab_dir).machines}
    result = []
    for seat in classroom.seats:
        m = machines.get(seat.name)
        if m is not None and m.ip:
            ssh, web = classroom.ports(seat)
            address = (reached or {}).get(seat.name, "") if classroom.seat_networks else m.ip
            result.append(Door(seat.name, seat.trainee, seat.spare, address, ssh, web, m.host))
    return result


def forwarded(lab_dir: LabDir, classroom: Classroom) -> dict[str, str]:
    """Where the forwarder's routes (as last written) lead each seat's SSH port: seat -> address."""
    try:
        routes_now = json.loads(_routes_file(lab_dir).read_text(encoding="utf-8"))["routes"]
        by_port = {int(r[1]): str(r[2]) for r in routes_now if isinstance(r, list) and len(r) >= 3}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {seat.name: by_port[classroom.ports(seat)[0]] for seat in classroom.seats
            if classroom.ports(seat)[0] in by_port}


def management_addresses(statuses: Sequence[MachineStatus]) -> dict[str, str]:
    """Each running machine's management address (never its lab address)."""
    return {s.name: a for s in statuses if (a := s.ssh_address) and a != s.lab_ip}


def refused_networks(lab_dir: LabDir, host_addresses: Sequence[str] = ()) -> list[str]:
    """Where no trainee sits: a seat dialling the host's forwarded ports comes from vagrant-libvirt's
    management network or from its lab network, and a seat on another host from that host's address
    (its machines reach the outside through it), never a trainee."""
    from labctl.names import MANAGEMENT_CIDR
    from labctl.records import read_lab

    network = read_lab(lab_dir).network
    return [MANAGEMENT_CIDR, *([network] if network else []), *host_addresses]


def routes(classroom: Classroom, seat_doors: Sequence[Door]) -> list[list[str | int | None]]:
    out: list[list[str | int | None]] = []
    for d in seat_doors:
        if not d.seat_address:  # a seat on a network of its own, not running: its ports lead nowhere yet
            continue
        out.append([classroom.listen, d.ssh_port, d.seat_address, SSH_PORT, d.host])
        out.append([classroom.listen, d.web_port, d.seat_address, WEB_PORT, d.host])
    return out


@dataclass(frozen=True)
class HostWay:
    """How the forwarder reaches another host's seats: the ssh command to the host, and the host's
    addresses (refused as clients: its seats come from them)."""

    ssh: list[str]
    addresses: tuple[str, ...]


def _routes_file(lab_dir: LabDir) -> Path:
    return lab_dir.path / "access.json"


def _pid_file(lab_dir: LabDir) -> Path:
    return lab_dir.path / "access.pid"


def _markers(lab_dir: LabDir) -> list[str]:
    return ["labctl.classroom.forward", str(_routes_file(lab_dir))]


def forwarder_pid(lab_dir: LabDir) -> int | None:
    """The running forwarder of this lab: the recorded process (same start time), running labctl's
    forwarder on this lab's routes. Any other process is never named, let alone signalled."""
    return supervisor.recorded(_pid_file(lab_dir), _markers(lab_dir))


def open_access(lab_dir: LabDir, way_to: Callable[[str], HostWay] | None = None,
                reached: Mapping[str, str] | None = None) -> list[Door]:
    """Start (or keep) the lab's forwarder. Raises with the port at fault when one is taken, or with
    the host when one of the seats' hosts cannot be reached. `way_to`: how to reach another host's
    seats (needed when seats live on one); `reached`: the seats' management addresses (needed with
    seat networks, see doors)."""
    classroom = classroom_of(lab_dir)
    seat_doors = doors(lab_dir, classroom, reached)
    ways: dict[str, HostWay] = {}
    for host in sorted({d.host for d in seat_doors if d.host}):
        if way_to is None:
            raise LabctlError(f"seats of lab {lab_dir.name!r} live on host {host}, and no way to it was given")
        ways[host] = way_to(host)
    wanted = {"routes": routes(classroom, seat_doors), "tunnels": {h: w.ssh for h, w in ways.items()},
              "refuse_from": refused_networks(lab_dir, [a for w in ways.values() for a in w.addresses])}
    path = _routes_file(lab_dir)
    running = forwarder_pid(lab_dir)
    if running is not None:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()) == wanted:
                return seat_doors
        close_access(lab_dir)
    atomic_write(path, json.dumps(wanted, indent=2) + "\n", mode=0o600)
    log = lab_dir.logs / "access.log"
    proc = supervisor.spawn([sys.executable, "-m", "labctl.classroom.forward", str(path)], log, stdout=True)
    line = supervisor.first_line(proc, READY_TIMEOUT)
    if line != "ready":
        supervisor.kill(proc)
        why = line.removeprefix("error: ") if line else f"it did not start (see {log})"
        hint = ("is the host up, with its sshd? (labctl hosts shows every host); then labctl access open"
                if why.startswith("host ") else
                "another program or classroom uses that port: change classroom.ssh_port or web_port in"
                " lab.yaml, run labctl plan, then labctl access open")
        raise LabctlError(f"classroom access for lab {lab_dir.name!r}: {why}", hint=hint)
    assert proc.stdout is not None
    proc.stdout.close()
    supervisor.record(_pid_file(lab_dir), proc.pid)
    return seat_doors


def close_access(lab_dir: LabDir) -> bool:
    """Stop the lab's forwarder; False when none was running."""
    return supervisor.stop_recorded(_pid_file(lab_dir), _markers(lab_dir))


def host_address() -> str:
    """This host's address on its default route: what trainees type when lab.yaml names none. No
    packet is sent (a UDP socket only picks its source address)."""
    import socket

    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
        return str(s.getsockname()[0])
    return socket.gethostname()


def build_sheet(lab_dir: LabDir, statuses: Sequence[MachineStatus], host: str) -> Sheet:
    """The cards of every seat, from the lab's records (secrets, DevStack's results) and statuses.
    `host`: this machine's name, for the seats that live on it (a seat on another hypervisor host
    gets that host's name from the inventory, as `labctl status` shows it)."""
    from labctl import records
    from labctl.classroom.sheet import Sheet, card

    classroom = classroom_of(lab_dir)
    address = classroom.address or host_address()
    secrets = lab_dir.secrets().seats
    stacked = records.read(lab_dir).stack
    by_name = {s.name: s for s in statuses}
    cards = []
    for d in doors(lab_dir, classroom, management_addresses(statuses)):
        status = by_name.get(d.seat)
        record = stacked.get(d.seat)
        if d.seat not in secrets:
            raise LabctlError(f"seat {d.seat} has no passwords yet", hint=f"labctl plan --lab {lab_dir.name}")
        cards.append(card(seat=d.seat, number=int(d.seat.rsplit("-", 1)[1]), trainee=d.trainee, spare=d.spare,
                          address=address, ssh_port=d.ssh_port, web_port=d.web_port, secrets=secrets[d.seat],
                          has_dashboard=bool(record and record.dashboard), state=status.state if status else "unknown",
                          devstack=status.devstack if status else "",
                          host=(status.host if status and status.host else host),  # as status names it
                          seat_address=d.seat_address))
    return Sheet(lab_dir.name, address, tuple(cards))
