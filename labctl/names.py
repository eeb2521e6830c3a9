"""Names of labs and machines: they become file names, libvirt domain names and host names."""

from __future__ import annotations

import re

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,62}\Z")
NAME_RULE = ("names are 1-63 characters: a lowercase letter, then lowercase letters, digits or '-'"
             " (not ending with '-'); they become file, domain and host names")


def valid_name(value: object) -> bool:
    return isinstance(value, str) and bool(NAME_RE.match(value)) and not value.endswith("-")


def domain_name(lab: str, machine: str) -> str:
    return f"labctl-{lab}-{machine}"


def network_name(lab: str) -> str:
    return f"labctl-{lab}"
