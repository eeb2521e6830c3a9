"""What DevStack will install with apt, known before it runs: the packages a DevStack-ready box holds
already, so that a machine under software emulation does not spend most of its stack in apt-get
(50 of the compute stack's 161 minutes here; bench/results/devstack-compute.md). Pure but for
`read_debs`, which reads DevStack's `files/debs/` from a git repository on the host.

stack.sh installs `get_packages general,$ENABLED_SERVICES` (tools/install_prereqs.sh, from the files
under files/debs/ with their `# NOPRIME`, `dist:` and `not:` marks), then each service's lib/ script
installs a few more by name (MariaDB, RabbitMQ, uWSGI, libvirt, OVN). Both are ported here for
Debian; a package missed here costs only time, as stack.sh installs it itself, and one too many is a
few megabytes of box. tests/test_devstack_packages.py holds the list to stack.sh's own apt-get lines
of a real run (../shared/devstack-logs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LabctlError

if TYPE_CHECKING:
    from labctl.model import Lab

# The Python stack.sh installs by name on Debian (install_python3: python$V python$V-dev).
PYTHON = {"bookworm": "3.11", "trixie": "3.13"}

# lib/*'s own `install_package` calls on Debian, by the service that makes them.
_LIB_PACKAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mysql", ("mariadb-server",)),  # lib/databases/mysql: MYSQL_SERVICE_NAME=mariadb on Debian
    ("rabbit", ("rabbitmq-server",)),  # lib/rpc_backend
    ("n-cpu", ("qemu-system", "libvirt-clients", "libvirt-daemon-system", "libvirt-dev", "python3-libvirt",
               "systemd-coredump", "ovmf")),  # lib/nova_plugins/functions-libvirt (LIBVIRT_TYPE qemu or kvm)
)
# Every service DevStack runs under uWSGI behind Apache (lib/apache: install_apache_uwsgi).
_UWSGI_SERVICES = ("key", "n-api", "n-api-meta", "placement-api", "g-api", "q-svc", "c-api")
_OVN_SERVICES = ("ovn-controller", "ovn-northd", "ovs-vswitchd", "ovsdb-server", "q-ovn-agent")
# get_packages: the first of its patterns a service matches -> the extra files/debs it reads (beside
# the file of the service's own name).
_PATTERN_FILES = (("n-api", ("nova", "glance", "os-brick")), ("c-*", ("cinder", "os-brick")), ("s-*", ("swift",)),
                  ("n-*", ("nova", "os-brick")), ("g-*", ("glance",)), ("key*", ("keystone",)),
                  ("q-*", ("neutron-common",)), ("neutron-*", ("neutron-common",)), ("ir-*", ("ironic",)))
_MARK_RE = {mark: re.compile(rf"(.*)#.*{mark}:([^ ]*)") for mark in ("dist", "not")}
_PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]*\Z")  # Debian policy's package names


def package_files(services: Iterable[str]) -> list[str]:
    """The files/debs stack.sh reads for these services, in its order (functions-common get_packages)."""
    from fnmatch import fnmatchcase

    files: list[str] = []
    for service in ["general", *services]:
        extra = next((names for pattern, names in _PATTERN_FILES if fnmatchcase(service, pattern)), ())
        files += [f for f in (service, *extra) if f not in files]
    return files


def parse_package_file(text: str, codename: str) -> list[str]:
    """One files/debs file as _parse_package_files reads it for `codename` (DevStack's DISTRO)."""
    out = []
    for line in text.splitlines():
        if "NOPRIME" in line:
            continue
        package, keep = line.split("#", 1)[0], True
        for mark, regex in _MARK_RE.items():
            found = regex.match(line)
            if found:
                package = found.group(1)
                listed = codename.lower() in found.group(2).lower()
                keep = keep and (listed if mark == "dist" else not listed)
        out += [word for word in package.split() if keep]
    return out


# DevStack's trueorfalse: the words it reads as true.
DEVSTACK_TRUE = frozenset({"1", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})


def devstack_packages(debs: Mapping[str, str], services: Iterable[str], codename: str,
                      ksmtuned: bool = False) -> list[str]:
    """Every package stack.sh installs with apt for these services on this Debian release, in its
    order, each once; names that are no Debian package name are dropped (files come from strangers).
    `ksmtuned`: lib/host installs it where ENABLE_KSMTUNED is true (labctl's base.conf says false)."""
    services = list(services)
    python = PYTHON.get(codename)
    found = [f"python{python}", f"python{python}-dev"] if python else []
    if ksmtuned:
        found.append("ksmtuned")
    for name in package_files(services):
        found += parse_package_file(debs.get(name, ""), codename)
    for service, packages in _LIB_PACKAGES:
        if service in services:
            found += packages
    if any(s in services for s in _UWSGI_SERVICES):
        found += ["uwsgi", "uwsgi-plugin-python3"]
    if any(s in services for s in _OVN_SERVICES):  # lib/neutron_plugins/ovn_agent: install_ovn
        for name in ("openvswitch", "ovn"):
            found += parse_package_file(debs.get(name, ""), codename)
    return [p for p in dict.fromkeys(found) if _PACKAGE_RE.match(p)]


def read_debs(git_dir: Path, branch: str) -> dict[str, str]:
    """files/debs/* of DevStack's `branch` in a bare repository on the host (a mirror, perhaps a
    stranger's), read through a shadow repository (labctl.gitshadow: the source's config never used),
    which also reads a copy that lost its empty refs/ folder. Files past 64 KiB are no package list and
    are skipped."""
    from labctl.gitshadow import shadow_of
    from labctl.proc import run

    with shadow_of(git_dir) as shadow:
        git = ["git", "--git-dir", str(shadow)]
        listing = run([*git, "ls-tree", "-l", f"{branch}:files/debs"],
                      what=f"reading DevStack's package lists ({branch})")
        debs = {}
        for line in listing.splitlines():
            meta, _, name = line.partition("\t")
            kind, size = meta.split()[1], meta.split()[3]
            if kind == "blob" and size.isdigit() and int(size) <= 64 * 1024 and _PACKAGE_RE.match(name):
                debs[name] = run([*git, "cat-file", "blob", f"{branch}:files/debs/{name}"])
        return debs


def read_checkout_debs(folder: Path) -> dict[str, str]:
    """files/debs/* of a DevStack checkout on the host (pushed to the machines as it is)."""
    debs = {}
    for path in sorted((folder / "files" / "debs").glob("*")):
        small = path.is_file() and not path.is_symlink() and path.stat().st_size <= 64 * 1024
        if small and _PACKAGE_RE.match(path.name):
            debs[path.name] = path.read_text(errors="replace")
    return debs


def box_packages(lab: Lab, local_confs: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """With devstack.preinstall: for each catalogue box the lab's machines boot, the packages its
    DevStack-ready kind holds (what stack.sh installs on every machine booting it, together)."""
    from labctl.devstack_services import enabled_services
    from labctl.localconf import parse

    if not lab.devstack.preinstall:
        return {}
    debs = _debs_of(lab)
    found: dict[str, list[str]] = {}
    for m in lab.machines:
        if m.name in local_confs:
            conf = parse(local_confs[m.name], f"{m.name}'s local.conf")
            ksmtuned = (conf.variables.get("ENABLE_KSMTUNED") or "True").strip("'\"") in DEVSTACK_TRUE
            found.setdefault(m.box, []).extend(devstack_packages(debs, enabled_services(conf), m.release.codename,
                                                                 ksmtuned))
    return {box: tuple(dict.fromkeys(packages)) for box, packages in found.items()}


def _debs_of(lab: Lab) -> dict[str, str]:
    from labctl.mirrors import devstack_source, is_git_dir

    source = devstack_source(lab)
    if source.folder is not None:
        return read_checkout_debs(source.folder)
    repo = Path(lab.devstack.repo)
    if not repo.is_absolute():  # the lab file's parser refuses this already
        raise LabctlError("devstack.preinstall reads DevStack's package lists on this host, and devstack.repo"
                          " is a URL", hint="set devstack.git_base to a folder of mirrors, or drop devstack.preinstall")
    return read_debs(repo if is_git_dir(repo) else repo / ".git", lab.devstack.branch)
