"""Names of labs and machines (they become file names, libvirt domain names and host names), and
of the management network every lab's machines join."""

from __future__ import annotations

import re

MANAGEMENT_NETWORK = "vagrant-libvirt"  # vagrant-libvirt's own name for it
MANAGEMENT_CIDR = "192.168.121.0/24"  # vagrant-libvirt's default, which every lab's machines join
BASE_SUFFIX = ".base.img"  # a cloned classroom's base volume: `<seat-01's domain>.base.img` (storage.py)
SEAT_RE = re.compile(r"seat-([0-9]{2})\Z")  # a classroom's seats: seat-01 .. seat-99
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,62}\Z")
NAME_RULE = ("names are 1-63 characters: a lowercase letter, then lowercase letters, digits or '-'"
             " (not ending with '-'); they become file, domain and host names")


def valid_name(value: object) -> bool:
    return isinstance(value, str) and bool(NAME_RE.match(value)) and not value.endswith("-")


def domain_name(lab: str, machine: str) -> str:
    return f"labctl-{lab}-{machine}"


def network_name(lab: str) -> str:
    return f"labctl-{lab}"


def seat_network_name(lab: str, seat: str) -> str:
    """The lab network of one seat of a class whose seats keep the template's address (seating.Classroom.
    seat_networks). `_` is in no lab's name: no lab's network, nor another lab's seat's, can be named so."""
    return f"{network_name(lab)}_{seat}"
