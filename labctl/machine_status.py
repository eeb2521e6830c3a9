"""What a lab's machines are doing, read from libvirt: cheap enough for `labctl status`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from labctl import records
from labctl.errors import LabctlError, LabNotFound
from labctl.names import domain_name
from labctl.state import LabDir

if TYPE_CHECKING:  # fabric and libvirt are imported only by the commands that connect
    from labctl.protocols import HypervisorPort, SshTarget


@dataclass(frozen=True)
class MachineStatus:
    name: str
    role: str
    lab_ip: str
    domain: str
    state: str  # a libvirt state ("running", "shutoff", ...) or "not created"
    addresses: tuple[str, ...]
    memory_mb: int | None
    vcpus: int | None
    uptime_s: float | None
    user: str
    devstack: str = ""  # stacked, failed at PHASE, stacking, interrupted, skipped; "" never run
    devstack_phases: tuple[tuple[str, float], ...] = ()  # the last run's phases and their seconds
    trainee: str | None = None  # a classroom seat's trainee ("" for a seat nobody has yet)
    host: str | None = None  # the inventory host it lives on (None: this machine)
    proxy: str | None = None  # ProxyCommand to reach it through its host (%h:%p), for a remote host

    @property
    def ssh_address(self) -> str | None:
        """The management address Vagrant uses, else the lab address; None when not running."""
        if self.state != "running":
            return None
        return next((a for a in self.addresses if a != self.lab_ip), self.lab_ip)

    def as_json(self) -> dict[str, object]:
        from labctl.stacklog import slowest  # here: plain `status` shows no phases

        return {"name": self.name, "role": self.role, "domain": self.domain, "state": self.state,
                "ip": self.lab_ip, "addresses": list(self.addresses), "ssh_address": self.ssh_address,
                "memory_mb": self.memory_mb, "vcpus": self.vcpus,
                "uptime_s": round(self.uptime_s) if self.uptime_s is not None else None,
                "devstack": self.devstack or None,
                "devstack_phases": [{"phase": p, "seconds": s} for p, s in self.devstack_phases],
                "devstack_slowest": [{"phase": p, "seconds": s} for p, s in slowest(self.devstack_phases)],
                "host": self.host,
                **({"trainee": self.trainee or None} if self.trainee is not None else {})}


class HostAccess(Protocol):
    """The hosts a lab's machines live on (the Context): each one's libvirt, and how to reach its machines."""

    def hypervisor_on(self, host: str | None) -> HypervisorPort: ...
    def proxy_for(self, host: str | None) -> str | None: ...


HOST_DOWN = "host unreachable"


def lab_status(lab_dir: LabDir, hypervisor: HypervisorPort, hosts: HostAccess | None = None) -> list[MachineStatus]:
    """Each machine's state from the libvirt of the host it lives on. A host that cannot be reached
    leaves its machines "host unreachable"; the others are read all the same."""
    from labctl.records import read_lab

    result = []
    record = read_lab(lab_dir)
    trainees = {s.name: s.trainee or "" for s in record.classroom.seats} if record.classroom else {}
    stacks = devstack_states(lab_dir)
    phases = devstack_phases(lab_dir)
    for m in record.machines:
        dom = domain_name(lab_dir.name, m.name)
        proxy = None
        try:
            hv = hosts.hypervisor_on(m.host) if hosts is not None and m.host else hypervisor
            proxy = hosts.proxy_for(m.host) if hosts is not None and m.host else None
            info = hv.domain(dom)
            state = info.state if info else "not created"
        except LabctlError:
            if m.host is None:
                raise  # this machine's libvirt: the command cannot go on without it
            info, state = None, HOST_DOWN
        result.append(MachineStatus(
            name=m.name, role=m.role, lab_ip=m.ip, domain=dom,
            state=state, addresses=info.addresses if info else (),
            memory_mb=info.memory_mb if info else None, vcpus=info.vcpus if info else None,
            uptime_s=info.uptime_s if info else None, user=m.user,
            devstack=stacks.get(m.name, ""), devstack_phases=phases.get(m.name, ()),
            trainee=trainees.get(m.name), host=m.host, proxy=proxy))
    return result


def devstack_phases(lab_dir: LabDir) -> dict[str, tuple[tuple[str, float], ...]]:
    """Each machine's DevStack phases of its last finished run, with their seconds."""
    return {name: r.phases for name, r in records.read(lab_dir).stack.items() if r.phases}


def devstack_states(lab_dir: LabDir) -> dict[str, str]:
    """Each machine's DevStack as `labctl status` shows it: stacked, failed, interrupted, ..."""
    out: dict[str, str] = {}
    for name, r in records.read(lab_dir).stack.items():
        if r.status == "ok":
            out[name] = "stacked"
        elif r.status == "failed":
            out[name] = f"failed at {r.phase or 'start'}"
        elif r.status == "started":
            out[name] = "stacking" if _alive(r.pid) else "interrupted"
        else:
            out[name] = r.status
    return out


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pick_machines(statuses: Sequence[MachineStatus], names: Sequence[str], everything: bool) -> list[MachineStatus]:
    if everything or not names:
        if names and everything:
            raise LabctlError("give machine names or --all, not both", hint="labctl status lists the machines")
        if not everything and not names:
            raise LabctlError("name the machines, or pass --all", hint="labctl status lists the machines")
        return list(statuses)
    known = {s.name: s for s in statuses}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LabNotFound(f"no machine named {', '.join(map(repr, unknown))} in this lab"
                          f" (machines: {', '.join(known)})", hint="labctl status lists the machines")
    return [known[n] for n in dict.fromkeys(names)]


def running(statuses: Sequence[MachineStatus], lab: str) -> None:
    down = [s.name for s in statuses if s.state != "running"]
    if down:
        raise LabctlError(f"not running: {', '.join(down)}", hint=f"labctl resume --lab {lab}, or labctl up")


def host_of(lab_dir: LabDir, status: MachineStatus, key_of: str | None = None) -> SshTarget:
    """How labctl reaches a machine over SSH: its address, the lab's key for it (or for machine
    `key_of`: a classroom's copy still has seat-01's), the known_hosts of its host, through its host."""
    from labctl.protocols import SshTarget

    address = status.ssh_address or status.lab_ip
    proxy = status.proxy.replace("%h", address).replace("%p", "22") if status.proxy else None
    return SshTarget(status.name, address, status.user, lab_dir.private_key(key_of or status.name),
                     lab_dir.known_hosts_of(status.host), proxy_command=proxy)
