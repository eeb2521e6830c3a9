"""What a machine's DevStack will clone, known before it runs: its services (ENABLED_SERVICES and the
enable_service/disable_service lines of its local.conf, over DevStack's own default list) and the
repositories and downloads they need. Pure.

When the lab's git mirrors are a folder on the host, a repository missing from it fails stack.sh half
an hour in (`git clone` from labctl's git daemon); `plan` names it at once instead, with the services
that need it. Downloads from outside GIT_BASE (noVNC's repository, etcd's release) are named too: on a
host whose machines reach only package archives, they fail the same way.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path

from labctl.errors import LabctlError
from labctl.localconf import MetaConfig, parse

# stackrc's list when local.conf sets no ENABLED_SERVICES (DevStack master and stable/2026.1).
DEFAULT_SERVICES = (
    "key", "n-api", "n-cpu", "n-cond", "n-sch", "n-novnc", "n-api-meta", "placement-api", "placement-client",
    "g-api", "c-sch", "c-api", "c-vol", "ovn-controller", "ovn-northd", "ovs-vswitchd", "ovsdb-server",
    "q-svc", "q-ovn-agent", "horizon", "rabbit", "tempest", "mysql", "etcd3", "dstat")

# A service's prefix -> the repository stackrc clones for it from GIT_BASE (<GIT_BASE>/openstack/<name>.git).
_PREFIXES = (("key", "keystone"), ("keystone", "keystone"), ("n-", "nova"), ("nova", "nova"),
             ("placement-api", "placement"), ("g-", "glance"), ("glance", "glance"), ("q-", "neutron"),
             ("neutron", "neutron"), ("c-", "cinder"), ("cinder", "cinder"), ("horizon", "horizon"),
             ("s-", "swift"), ("swift", "swift"), ("tempest", "tempest"))
# Services whose code comes from elsewhere than GIT_BASE.
OUTSIDE = {"n-novnc": "noVNC from https://github.com/novnc/novnc.git (NOVNC_REPO)",
           "n-spice": "spice-html5 from anongit.freedesktop.org (SPICE_REPO)",
           "etcd3": "etcd's release from https://github.com/etcd-io/etcd/releases (ETCD_DOWNLOAD_URL)"}
ALWAYS = ("requirements",)  # stack.sh clones it whatever the services
# Services that keep their machine's name or address in what they make as they stack: Nova's services and
# its compute's resource provider (by host name), Neutron's agents, OVN's chassis (name and tunnel
# address), Cinder's volume service. A copy of such a DevStack under another name or address is another
# host to them (labctl.stacking.clone: such a class keeps the template's name and address per seat).
_HOST_BOUND = ("n-", "nova", "q-", "neutron", "ovn-", "ovs-", "c-", "cinder")


def enabled_services(conf: MetaConfig) -> list[str]:
    """The services stack.sh will run with this local.conf, in order."""
    raw = conf.variables.get("ENABLED_SERVICES")
    services = _words(raw) if raw is not None else list(DEFAULT_SERVICES)
    for kind, text in conf.lines:
        if kind != "cmd":
            continue
        words = _split(text)
        if not words:
            continue
        if words[0] == "enable_service":
            services += [w for w in words[1:] if w not in services]
        elif words[0] == "disable_service":
            services = [s for s in services if s not in words[1:]]
        elif words[0] == "disable_all_services":
            services = []
    return services


def host_bound(services: Iterable[str]) -> list[str]:
    """Those of `services` that remember their machine's name or address."""
    return [s for s in services if s.startswith(_HOST_BOUND)]


def _words(value: str) -> list[str]:
    text = " ".join(_split(value))
    return [s for s in text.replace(",", " ").split() if s]


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def repositories_needed(services: Iterable[str]) -> dict[str, list[str]]:
    """`openstack/<name>.git` -> the services that need it (requirements: stack.sh itself)."""
    needed: dict[str, list[str]] = {f"openstack/{name}.git": ["stack.sh"] for name in ALWAYS}
    for service in services:
        repo = next((name for prefix, name in _PREFIXES
                     if service == prefix or (prefix.endswith("-") and service.startswith(prefix))), None)
        if repo and service not in OUTSIDE:
            needed.setdefault(f"openstack/{repo}.git", []).append(service)
    return needed


def outside_needs(services: Iterable[str]) -> dict[str, str]:
    return {s: OUTSIDE[s] for s in services if s in OUTSIDE}


def check_coverage(local_confs: Mapping[str, str], available: Iterable[str], folder: Path) -> list[str]:
    """Refuse a lab whose machines need a repository the mirrors folder lacks (each named with the
    services that need it); the downloads from outside GIT_BASE come back as warnings."""
    have = set(available)
    missing: dict[str, dict[str, list[str]]] = {}
    outside: dict[str, set[str]] = {}
    for machine, text in local_confs.items():
        services = enabled_services(parse(text, f"{machine}'s local.conf"))
        for repo, wanting in repositories_needed(services).items():
            if repo not in have:
                missing.setdefault(repo, {})[machine] = wanting
        for service, what in outside_needs(services).items():
            outside.setdefault(f"{service}: {what}", set()).add(machine)
    if missing:
        def who(by_machine: dict[str, list[str]]) -> str:
            services = sorted({s for wanting in by_machine.values() for s in wanting if s != "stack.sh"})
            return f"{', '.join(services) or 'stack.sh itself'} on {', '.join(sorted(by_machine))}"

        everything = sorted({s for by in missing.values() for wanting in by.values() for s in wanting
                             if s != "stack.sh"})
        first = next(iter(missing)).split("/", 1)[1].removesuffix(".git")
        raise LabctlError(
            f"devstack.git_base: {folder} lacks what stack.sh will clone: "
            + "; ".join(f"{repo} (for {who(by)})" for repo, by in missing.items()),
            hint=f"add each (git clone --mirror https://opendev.org/openstack/{first} {folder}/openstack/{first}.git)"
                 + (f", or leave the services out: devstack.disable_services: [{', '.join(everything)}]"
                    if everything else ""))
    return [f"{need} is fetched from outside the git mirrors, on {', '.join(sorted(machines))}: if the"
            f" machines cannot reach it, leave the service out (devstack.disable_services)"
            for need, machines in outside.items()]
