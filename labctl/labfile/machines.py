"""lab.yaml's network, defaults and machines: each machine named, sized, given its distro and an
address of the lab's network (fixed ones claimed first), and the roles checked together."""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass, replace

from labctl.catalog import BOX_RE, Catalog
from labctl.errors import LabFileError, show
from labctl.labfile.scalars import check_name, matching, parse_disk, parse_memory, release_of, whole_number
from labctl.labfile.shape import DefaultsShape, MachineShape, NetworkShape, keys
from labctl.labyaml import listed, mapping
from labctl.model import (
    DEFAULT_CPUS,
    DEFAULT_DISK_GB,
    DEFAULT_MEMORY_MB,
    FIRST_HOST_OFFSET,
    ROLES,
    Machine,
)
from labctl.names import MANAGEMENT_CIDR

# Subnets that vagrant-libvirt (management network) and libvirt (default network) already use.
_TAKEN_SUBNETS = {121, 122}
_RESERVED_NETWORKS = (
    (ipaddress.IPv4Network(MANAGEMENT_CIDR), "vagrant-libvirt's management network"),
    (ipaddress.IPv4Network("192.168.122.0/24"), "libvirt's default network"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local addresses"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    (ipaddress.IPv4Network("0.0.0.0/8"), "'this network'"),
)

_HEX_RE = re.compile(r"[0-9a-f]+\Z")


def default_cidr(lab_name: str) -> str:
    """A /24 derived from the lab's name, so that two labs rarely share a private network."""
    octet = 100 + zlib.crc32(lab_name.encode()) % 100
    while octet in _TAKEN_SUBNETS:
        octet += 1
    return f"192.168.{octet}.0/24"


def parse_network(raw: object, lab_name: str) -> ipaddress.IPv4Network:
    data = mapping(raw, "network", keys(NetworkShape))
    cidr = data.get("cidr", default_cidr(lab_name))
    try:
        net = ipaddress.ip_network(cidr, strict=True) if isinstance(cidr, str) else None
    except ValueError:
        net = None
    # At least /16: a lab network is a bridge on this host, and each of its addresses a candidate.
    if not isinstance(net, ipaddress.IPv4Network) or not 16 <= net.prefixlen <= 28:
        raise LabFileError(f"network.cidr: expected an IPv4 network like 192.168.150.0/24 (from /16 to"
                           f" /28), got {show(cidr)}")
    for taken, why in _RESERVED_NETWORKS:
        if net.overlaps(taken):
            raise LabFileError(f"network.cidr: {net} overlaps {taken}, {why}",
                               hint="pick a private /24 of your own, e.g. 192.168.150.0/24")
    if not net.is_private:
        raise LabFileError(f"network.cidr: {net} is not a private network: its addresses belong to someone"
                           " on the internet", hint="pick one in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
    return net


@dataclass(frozen=True)
class Defaults:
    distro: object
    memory_mb: int
    cpus: int
    disk_gb: int


def parse_defaults(raw: object) -> Defaults:
    data = mapping(raw, "defaults", keys(DefaultsShape))
    return Defaults(
        distro=data.get("distro", "debian"),
        memory_mb=parse_memory(data.get("memory", DEFAULT_MEMORY_MB), "defaults.memory"),
        cpus=whole_number(data.get("cpus", DEFAULT_CPUS), "defaults.cpus", 1, 256),
        disk_gb=parse_disk(data.get("disk", DEFAULT_DISK_GB), "defaults.disk"),
    )


@dataclass(frozen=True)
class _Entry:
    """One entry of machines: the names it makes (count of them), their common settings (a Machine
    without an address yet), and its fixed address if it gives one."""

    names: tuple[str, ...]
    settings: Machine
    fixed_ip: object = None
    has_ip: bool = False


def _entry(entry: object, path: str, defaults: Defaults, catalog: Catalog) -> _Entry:
    data = mapping(entry, path, keys(MachineShape))
    if "name" not in data:
        raise LabFileError(f"{path}.name: every machine needs a name")
    base = check_name(data["name"], f"{path}.name")
    count = whole_number(data.get("count", 1), f"{path}.count", 1, 200)
    role = data.get("role", "allinone")
    if role not in ROLES:
        raise LabFileError(f"{path}.role: expected one of {', '.join(ROLES)}, got {show(role)}")
    if count > 1 and role == "controller":
        raise LabFileError(f"{path}.count: a lab has at most one controller")
    if count > 1 and "ip" in data:
        raise LabFileError(f"{path}.ip: a fixed address cannot be combined with count",
                           hint="drop ip: and let labctl number the machines")
    release = release_of(catalog, data.get("distro", defaults.distro), f"{path}.distro")
    memory = parse_memory(data["memory"], f"{path}.memory") if "memory" in data else defaults.memory_mb
    cpus = whole_number(data["cpus"], f"{path}.cpus", 1, 256) if "cpus" in data else defaults.cpus
    disk = parse_disk(data["disk"], f"{path}.disk") if "disk" in data else defaults.disk_gb
    box = matching(data["box"], f"{path}.box", BOX_RE, "a Vagrant box name like debian/bookworm64") \
        if "box" in data else ""
    host = check_name(data["host"], f"{path}.host") if data.get("host") is not None else None
    names = (base,) if count == 1 else tuple(f"{base}-{n}" for n in range(1, count + 1))
    for name in names:
        check_name(name, f"{path}.name")
        if _HEX_RE.match(name):
            # `vagrant up a` first looks for a machine whose id starts with "a" among every
            # machine Vagrant knows (any project), and acts on that one if there is one.
            raise LabFileError(f"{path}.name: {show(name)} is made only of hexadecimal digits, which Vagrant"
                               " takes for the start of another machine's id",
                               hint=f"use a name with a letter from g to z or a '-', e.g. 'node-{name}'")
    settings = Machine(base, release, role, memory, cpus, disk, "", box, host)
    return _Entry(names, settings, data.get("ip"), "ip" in data)


def parse_machines(raw: object, defaults: Defaults, net: ipaddress.IPv4Network, catalog: Catalog,
                   where: str | None = None) -> tuple[Machine, ...]:
    """`where`: the field that errors name instead of machines[i] (classroom.seat for seats)."""
    entries = listed(raw, "machines")
    if not entries:
        raise LabFileError("machines: a lab needs at least one machine",
                           hint="labctl init writes an example lab.yaml")
    hosts = list(net.hosts())
    reserved = {net.network_address, net.broadcast_address, hosts[0]}  # hosts[0]: libvirt's bridge
    taken: dict[str, str] = {}
    machines: list[Machine] = []
    auto = iter(hosts[FIRST_HOST_OFFSET - 1:])
    # Fixed addresses are claimed first, so that numbering never hands one of them out.
    fixed = {str(e["ip"]) for e in entries if isinstance(e, dict) and "ip" in e}
    for i, raw_entry in enumerate(entries):
        path = where or f"machines[{i}]"
        entry = _entry(raw_entry, path, defaults, catalog)
        for name in entry.names:
            if name in taken:
                raise LabFileError(f"{path}.name: machine name {show(name)} is used twice")
            if entry.has_ip:
                ip = _fixed_ip(entry.fixed_ip, f"{path}.ip", net, reserved)
            else:
                ip = str(next((a for a in auto if str(a) not in fixed), ""))
                if not ip:
                    raise LabFileError(f"network.cidr: {net} has no free address left for {show(name)}",
                                       hint="use a larger network")
            if ip in taken.values():
                raise LabFileError(f"{path}.ip: address {ip} is already used by another machine")
            taken[name] = ip
            machines.append(replace(entry.settings, name=name, ip=ip))
    roles = [m.role for m in machines]
    if roles.count("controller") > 1:
        raise LabFileError("machines: a lab has at most one controller")
    if "compute" in roles and "controller" not in roles:
        raise LabFileError("machines: compute machines need a controller",
                           hint="add a machine with role: controller")
    return tuple(machines)


def _fixed_ip(value: object, path: str, net: ipaddress.IPv4Network, reserved: set[ipaddress.IPv4Address]) -> str:
    try:
        ip = ipaddress.IPv4Address(value) if isinstance(value, str) else None
    except ValueError:
        ip = None
    if ip is None or ip not in net or ip in reserved:
        raise LabFileError(f"{path}: expected a free address inside {net} (not the network,"
                           f" broadcast or .1 bridge address), got {show(value)}")
    return str(ip)


# ---------------------------------------------------------------------------------------------
