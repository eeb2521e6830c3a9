"""lab.yaml and command-line flags -> a validated, frozen Lab.

Every error names the field path (`machines[1].memory: ...`), 0-based like JSON paths. The disk is
read for the lab file, its CA certificates (which must hold one) and to see that the files it names
exist (a DevStack checkout, image files); host facts (CPU count) come in as arguments.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.catalog import BOX_RE, Catalog, Release
from labctl.classroom.seats import Classroom, parse_classroom, seat_machines
from labctl.cloud.spec import CloudSpec, parse_cloud
from labctl.errors import CatalogError, LabFileError, show
from labctl.files import CERTIFICATE_LIMIT, LAB_FILE_LIMIT, certificate_blocks, read_bounded
from labctl.labyaml import listed as _list
from labctl.labyaml import mapping as _mapping
from labctl.labyaml import parse_yaml
from labctl.localconf import REFERENCE_RE
from labctl.names import MANAGEMENT_CIDR, NAME_RULE, valid_name

ROLES = ("allinone", "controller", "compute")
ACCELERATORS = ("auto", "kvm", "qemu")
DEFAULT_DEVSTACK_REPO = "https://opendev.org/openstack/devstack"
DEFAULT_DEVSTACK_BRANCH = "master"
DEFAULT_MEMORY_MB = 8192
DEFAULT_CPUS = 4
DEFAULT_DISK_GB = 40
FIRST_HOST_OFFSET = 10
# Variables labctl sets itself: a lab.yaml value would silently break the lab.
MANAGED_LOCALRC = {
    "HOST_IP": "labctl sets it to each machine's address; set machines[].ip instead",
    "SERVICE_HOST": "labctl points computes at the controller's address",
    "ADMIN_PASSWORD": "labctl generates the lab's passwords; edit secrets.yaml in the lab folder",
    "DATABASE_PASSWORD": "labctl generates the lab's passwords; edit secrets.yaml in the lab folder",
    "RABBIT_PASSWORD": "labctl generates the lab's passwords; edit secrets.yaml in the lab folder",
    "SERVICE_PASSWORD": "labctl generates the lab's passwords; edit secrets.yaml in the lab folder",
}
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
_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SERVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_BRANCH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*\Z")
# A post-config file: a DevStack variable ($NOVA_CONF, ${NOVA_CONF}) or an absolute path.
_CONF_FILE_RE = re.compile(r"(\$[A-Z_][A-Z0-9_]*|\$\{[A-Z_][A-Z0-9_]*\}|/[A-Za-z0-9._/-]+)\Z")
_INI_SECTION_RE = re.compile(r"[A-Za-z0-9_.:-]+\Z")
_INI_KEY_RE = re.compile(r"[A-Za-z0-9_.:-]+\Z")
# A git URL: its characters are those of URLs that mean nothing to a shell (no ; $ ` ' " ( ) & | < >
# space or glob), since DevStack sources the lines they end up in (enable_plugin, GIT_BASE).
_URL_RE = re.compile(r"([a-z][a-z0-9+.-]*://|git@)[A-Za-z0-9._~:/@%+=,-]+\Z")
# DevStack evals post-config values inside double quotes (`iniset file sec key "value"` piped to
# `while read a; do eval "$a"`): these characters would break out of that or be eaten by read.
_INI_VALUE_FORBIDDEN = set('"`\\\n\r\0')


@dataclass(frozen=True)
class Plugin:
    name: str
    url: str
    branch: str | None = None


@dataclass(frozen=True)
class PostConfig:
    file: str
    section: str
    key: str
    value: str


@dataclass(frozen=True)
class DevstackSpec:
    # A git URL, or an absolute folder on the host (a DevStack checkout, or a bare repository).
    repo: str = DEFAULT_DEVSTACK_REPO
    branch: str = DEFAULT_DEVSTACK_BRANCH
    force: bool = False
    localrc: tuple[tuple[str, str], ...] = ()
    post_config: tuple[PostConfig, ...] = ()
    enable_services: tuple[str, ...] = ()
    disable_services: tuple[str, ...] = ()
    plugins: tuple[Plugin, ...] = ()
    # DevStack's GIT_BASE: a URL, or an absolute folder of mirrors (<folder>/openstack/<name>.git)
    # that labctl serves to the machines. None: DevStack's own default (opendev.org).
    git_base: str | None = None

    @property
    def git_base_folder(self) -> Path | None:
        return Path(self.git_base) if self.git_base and Path(self.git_base).is_absolute() else None


@dataclass(frozen=True)
class Machine:
    name: str
    release: Release
    role: str
    memory_mb: int
    cpus: int
    disk_gb: int
    ip: str
    # The Vagrant box: the catalogue's unless lab.yaml names one, or `up` picks a locally built one.
    box: str = ""
    host: str | None = None  # the inventory host lab.yaml pins it to (labctl.hosts)

    def __post_init__(self) -> None:
        if not self.box:
            object.__setattr__(self, "box", self.release.box)


@dataclass(frozen=True)
class Proxy:
    """Proxy settings pushed into every machine before anything is downloaded."""

    http: str | None = None
    https: str | None = None
    no_proxy: str = ""

    @property
    def has_credentials(self) -> bool:
        """A user (and password) in a proxy URL: the files that hold it must not be world-readable."""
        return any(url and "@" in url.split("://", 1)[-1].split("/", 1)[0] for url in (self.http, self.https))


@dataclass(frozen=True)
class Lab:
    name: str
    machines: tuple[Machine, ...]
    cidr: str
    devstack: DevstackSpec = field(default_factory=DevstackSpec)
    accelerator: str = "auto"
    # The lab.yaml it came from (None for `--distro` labs) and its local.conf.d/ folder, if any.
    source: Path | None = None
    fragments_dir: Path | None = None
    # Extra CA certificates (files on the host) and proxies for the machines: corporate networks.
    ca_certificates: tuple[Path, ...] = ()
    proxy: Proxy | None = None
    # A classroom lab: one all-in-one machine per seat (machines named after the seats).
    classroom: Classroom | None = None
    # The host's package caches (labctl.cache): asked for in lab.yaml; a classroom uses them unless
    # it says `caches: false` (N seats would download everything N times).
    caches: bool = False
    # What the stacked cloud holds on day one (images, flavors, keypair, rules): labctl.cloud.
    cloud: CloudSpec = field(default_factory=CloudSpec)

    @property
    def controller(self) -> Machine | None:
        return next((m for m in self.machines if m.role == "controller"), None)

    def machine(self, name: str) -> Machine | None:
        return next((m for m in self.machines if m.name == name), None)


# ---------------------------------------------------------------------------------------------
# Scalars


def check_name(value: object, path: str) -> str:
    if not valid_name(value):
        raise LabFileError(f"{path}: invalid name {show(value)}", hint=NAME_RULE)
    assert isinstance(value, str)
    return value


_MEMORY_UNITS = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024}
_DISK_UNITS = {"": 1, "g": 1, "gb": 1, "gib": 1, "t": 1024, "tb": 1024, "tib": 1024}
_SIZE_RE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*\Z", re.ASCII)


def _size(value: object, path: str, units: dict[str, int], unit: str, lo: int, hi: int, examples: str) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)) and m[2].lower() in units:
        number = int(m[1]) * units[m[2].lower()]
    if number is None:
        raise LabFileError(f"{path}: expected {unit} like {examples}, got {show(value)}",
                           hint=f"a bare number means {unit}; suffixes: {', '.join(sorted(u for u in units if u))}")
    if not lo <= number <= hi:
        raise LabFileError(f"{path}: {number} {unit} is out of range ({lo}-{hi} {unit})")
    return number


def parse_memory(value: object, path: str) -> int:
    """'8G', '8192M', '8192' or 8192 -> MiB."""
    return _size(value, path, _MEMORY_UNITS, "MiB", 512, 1024 * 1024, "8G, 8192M or 8192")


def parse_disk(value: object, path: str) -> int:
    """'40G', '1T' or 40 -> GB."""
    return _size(value, path, _DISK_UNITS, "GB", 5, 64 * 1024, "40G or 40")


def _int(value: object, path: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise LabFileError(f"{path}: expected a whole number from {lo} to {hi}, got {show(value)}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise LabFileError(f"{path}: expected true or false, got {show(value)}")
    return value


def _text(value: object, path: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise LabFileError(f"{path}: expected {what}, got {show(value)}")
    return value


def _scalar(value: object, path: str) -> str:
    """A localrc/INI value: one line of text. Numbers and booleans are written as DevStack expects."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise LabFileError(f"{path}: expected a single value, got {type(value).__name__}")
    if any(c in value for c in "\n\r\0"):
        raise LabFileError(f"{path}: value must be a single line (a newline could inject a"
                           " local.conf section)")
    return value


def _release(catalog: Catalog, value: object, path: str) -> Release:
    try:
        return catalog.resolve(value)
    except CatalogError as exc:
        raise LabFileError(f"{path}: {exc.message}", hint=exc.hint) from None


# ---------------------------------------------------------------------------------------------
# Sections


def _url_or_folder(value: object, path: str, base_dir: Path | None) -> str:
    """A git URL as it is, or a folder on the host made absolute (relative to lab.yaml's folder)."""
    if not isinstance(value, str) or not value or any(c.isspace() or c in "'\"\\`\0" for c in value):
        raise LabFileError(f"{path}: expected a git URL or a folder, got {show(value)}")
    if _URL_RE.match(value):
        return value.rstrip("/")
    folder = Path(value).expanduser()
    return str(folder if folder.is_absolute() or base_dir is None else (base_dir / folder).resolve())


def _devstack(raw: object, base_dir: Path | None) -> DevstackSpec:
    keys = ("repo", "branch", "force", "localrc", "post_config", "enable_services",
            "disable_services", "plugins", "git_base")
    data = _mapping(raw, "devstack", keys)
    git_base = _url_or_folder(data["git_base"], "devstack.git_base", base_dir) if "git_base" in data else None
    if git_base and not _URL_RE.match(git_base) and not Path(git_base).is_dir():
        raise LabFileError(f"devstack.git_base: {git_base} is no folder",
                           hint="give a URL like https://opendev.org, or a folder of mirrors laid out as"
                                " FOLDER/openstack/NAME.git")
    # With mirrors, DevStack itself comes from them too, unless repo says otherwise.
    default_repo = f"{git_base}/openstack/devstack.git" if git_base else DEFAULT_DEVSTACK_REPO
    repo = _url_or_folder(data.get("repo", default_repo), "devstack.repo", base_dir)
    branch = _text(data.get("branch", DEFAULT_DEVSTACK_BRANCH), "devstack.branch", _BRANCH_RE,
                   "a branch or tag like master or stable/2025.1")
    if ".." in branch:
        raise LabFileError(f"devstack.branch: invalid branch {show(branch)}")
    localrc: list[tuple[str, str]] = []
    for name, value in _mapping(data.get("localrc"), "devstack.localrc").items():
        path = f"devstack.localrc.{name}"
        _text(name, path, _VAR_RE, "a shell variable name")
        if name in MANAGED_LOCALRC:
            raise LabFileError(f"{path}: labctl sets this variable itself", hint=MANAGED_LOCALRC[name])
        if name == "GIT_BASE" and git_base:
            raise LabFileError(f"{path}: devstack.git_base sets GIT_BASE already", hint="keep only devstack.git_base")
        localrc.append((name, _scalar(value, path)))
    return DevstackSpec(
        repo=repo, branch=branch, force=_bool(data.get("force", False), "devstack.force"),
        localrc=tuple(localrc), post_config=_post_config(data.get("post_config")),
        enable_services=_services(data.get("enable_services"), "devstack.enable_services"),
        disable_services=_services(data.get("disable_services"), "devstack.disable_services"),
        plugins=_plugins(data.get("plugins")), git_base=git_base,
    )


def _post_config(raw: object) -> tuple[PostConfig, ...]:
    items: list[PostConfig] = []
    for file, sections in _mapping(raw, "devstack.post_config").items():
        fpath = f"devstack.post_config[{show(file)}]"
        _text(file, fpath, _CONF_FILE_RE, "a DevStack variable like $NOVA_CONF or an absolute path")
        for section, keys in _mapping(sections, fpath).items():
            spath = f"{fpath}.{section}"
            _text(section, spath, _INI_SECTION_RE, "an INI section name like DEFAULT")
            for key, value in _mapping(keys, spath).items():
                kpath = f"{spath}.{key}"
                _text(key, kpath, _INI_KEY_RE, "an option name")
                text = _scalar(value, kpath)
                if any(c in _INI_VALUE_FORBIDDEN for c in text) or "$" in REFERENCE_RE.sub("", text):
                    raise LabFileError(f"{kpath}: value may not contain quotes, backquotes, backslashes or"
                                       " a $ other than $VAR or ${VAR} (DevStack evaluates it in a shell)")
                items.append(PostConfig(file, section, key, text))
    return tuple(items)


def _services(raw: object, path: str) -> tuple[str, ...]:
    return tuple(_text(s, f"{path}[{i}]", _SERVICE_RE, "a DevStack service name")
                 for i, s in enumerate(_list(raw, path)))


def _plugins(raw: object) -> tuple[Plugin, ...]:
    plugins = []
    for name, spec in _mapping(raw, "devstack.plugins").items():
        path = f"devstack.plugins.{name}"
        _text(name, path, _SERVICE_RE, "a plugin name")
        if isinstance(spec, str):
            spec = {"url": spec}
        spec = _mapping(spec, path, ("url", "branch"))
        url = _text(spec.get("url"), f"{path}.url", _URL_RE, "a git URL")
        branch = spec.get("branch")
        if branch is not None:
            _text(branch, f"{path}.branch", _BRANCH_RE, "a branch name")
        plugins.append(Plugin(name, url, branch))
    return tuple(plugins)


def default_cidr(lab_name: str) -> str:
    """A /24 derived from the lab's name, so that two labs rarely share a private network."""
    octet = 100 + zlib.crc32(lab_name.encode()) % 100
    while octet in _TAKEN_SUBNETS:
        octet += 1
    return f"192.168.{octet}.0/24"


def _network(raw: object, lab_name: str) -> ipaddress.IPv4Network:
    data = _mapping(raw, "network", ("cidr",))
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
class _Defaults:
    distro: object
    memory_mb: int
    cpus: int
    disk_gb: int


def _defaults(raw: object) -> _Defaults:
    data = _mapping(raw, "defaults", ("distro", "memory", "cpus", "disk"))
    return _Defaults(
        distro=data.get("distro", "debian"),
        memory_mb=parse_memory(data.get("memory", DEFAULT_MEMORY_MB), "defaults.memory"),
        cpus=_int(data.get("cpus", DEFAULT_CPUS), "defaults.cpus", 1, 256),
        disk_gb=parse_disk(data.get("disk", DEFAULT_DISK_GB), "defaults.disk"),
    )


def _machines(raw: object, defaults: _Defaults, net: ipaddress.IPv4Network, catalog: Catalog,
              where: str | None = None) -> tuple[Machine, ...]:
    """`where`: the field that errors name instead of machines[i] (classroom.seat for seats)."""
    entries = _list(raw, "machines")
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
    for i, entry in enumerate(entries):
        path = where or f"machines[{i}]"
        data = _mapping(entry, path, ("name", "distro", "box", "memory", "cpus", "disk", "role", "count", "ip",
                                      "host"))
        if "name" not in data:
            raise LabFileError(f"{path}.name: every machine needs a name")
        base = check_name(data["name"], f"{path}.name")
        count = _int(data.get("count", 1), f"{path}.count", 1, 200)
        role = data.get("role", "allinone")
        if role not in ROLES:
            raise LabFileError(f"{path}.role: expected one of {', '.join(ROLES)}, got {show(role)}")
        if count > 1 and role == "controller":
            raise LabFileError(f"{path}.count: a lab has at most one controller")
        if count > 1 and "ip" in data:
            raise LabFileError(f"{path}.ip: a fixed address cannot be combined with count",
                               hint="drop ip: and let labctl number the machines")
        release = _release(catalog, data.get("distro", defaults.distro), f"{path}.distro")
        memory = parse_memory(data["memory"], f"{path}.memory") if "memory" in data else defaults.memory_mb
        cpus = _int(data["cpus"], f"{path}.cpus", 1, 256) if "cpus" in data else defaults.cpus
        disk = parse_disk(data["disk"], f"{path}.disk") if "disk" in data else defaults.disk_gb
        box = _text(data["box"], f"{path}.box", BOX_RE, "a Vagrant box name like debian/bookworm64") \
            if "box" in data else ""
        host = check_name(data["host"], f"{path}.host") if data.get("host") is not None else None
        names = [base] if count == 1 else [f"{base}-{n}" for n in range(1, count + 1)]
        for name in names:
            check_name(name, f"{path}.name")
            if _HEX_RE.match(name):
                # `vagrant up a` first looks for a machine whose id starts with "a" among every
                # machine Vagrant knows (any project), and acts on that one if there is one.
                raise LabFileError(f"{path}.name: {show(name)} is made only of hexadecimal digits, which Vagrant"
                                   " takes for the start of another machine's id",
                                   hint=f"use a name with a letter from g to z or a '-', e.g. 'node-{name}'")
            if name in taken:
                raise LabFileError(f"{path}.name: machine name {show(name)} is used twice")
            if "ip" in data:
                ip = _fixed_ip(data["ip"], f"{path}.ip", net, reserved)
            else:
                ip = str(next((a for a in auto if str(a) not in fixed), ""))
                if not ip:
                    raise LabFileError(f"network.cidr: {net} has no free address left for {show(name)}",
                                       hint="use a larger network")
            if ip in taken.values():
                raise LabFileError(f"{path}.ip: address {ip} is already used by another machine")
            taken[name] = ip
            machines.append(Machine(name, release, role, memory, cpus, disk, ip, box, host))
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
# Entry points


_PROXY_URL_RE = re.compile(r"https?://[^\s'\"\\`$;&|<>]+\Z")
_NO_PROXY_RE = re.compile(r"[A-Za-z0-9.,:/*_-]*\Z")


def _proxy(raw: object) -> Proxy | None:
    if raw is None:
        return None
    data = _mapping(raw, "proxy", ("http", "https", "no_proxy"))
    http = data.get("http")
    https = data.get("https", http)
    for key, value in (("http", http), ("https", https)):
        if value is not None:
            _text(value, f"proxy.{key}", _PROXY_URL_RE, "a proxy URL like http://proxy.example:3128")
    no_proxy = data.get("no_proxy", "")
    _text(no_proxy, "proxy.no_proxy", _NO_PROXY_RE, "a comma-separated list of hosts or domains")
    if http is None and https is None:
        raise LabFileError("proxy: give http, https or both")
    return Proxy(http, https, no_proxy)


def _certificates(raw: object, base_dir: Path | None) -> tuple[Path, ...]:
    paths = []
    for i, value in enumerate(_list(raw, "ca_certificates")):
        where = f"ca_certificates[{i}]"
        if not isinstance(value, str) or not value or "\n" in value:
            raise LabFileError(f"{where}: expected the path of a PEM certificate file, got {show(value)}")
        path = Path(value).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            text = read_bounded(path, CERTIFICATE_LIMIT, "PEM certificate file", encoding="ascii")
        except LabFileError as exc:
            raise LabFileError(f"{where}: {exc.message}",
                               hint="give the path of a PEM file, e.g. /usr/local/share/ca-certificates/corp.crt")\
                from None
        if not certificate_blocks(text):
            raise LabFileError(f"{where}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        paths.append(path.resolve())
    return tuple(paths)


def lab_from_dict(raw: object, catalog: Catalog, source: Path | None = None) -> Lab:
    data = _mapping(raw, "", ("name", "defaults", "network", "machines", "devstack", "accelerator",
                              "ca_certificates", "proxy", "classroom", "caches", "cloud"))
    if "name" not in data:
        raise LabFileError("name: a lab needs a name", hint="add `name: mylab` at the top of lab.yaml")
    name = check_name(data["name"], "name")
    accelerator = data.get("accelerator", "auto")
    if accelerator not in ACCELERATORS:
        raise LabFileError(f"accelerator: expected one of {', '.join(ACCELERATORS)}, got {show(accelerator)}")
    net = _network(data.get("network"), name)
    classroom = None
    machines = data.get("machines")
    if "classroom" in data:
        if machines is not None:
            raise LabFileError("machines: a classroom lab describes its seat machine under classroom.seat,"
                               " and labctl makes one per seat", hint="move the machine's settings to classroom.seat")
        classroom, seat = parse_classroom(data["classroom"])
        machines = seat_machines(classroom, seat)
    base_dir = source.parent if source else None
    fragments = base_dir / "local.conf.d" if base_dir else None
    return Lab(
        name=name,
        machines=_machines(machines, _defaults(data.get("defaults")), net, catalog,
                           "classroom.seat" if classroom else None),
        cidr=str(net),
        devstack=_devstack(data.get("devstack"), base_dir),
        accelerator=accelerator,
        source=source,
        fragments_dir=fragments if fragments and fragments.is_dir() else None,
        ca_certificates=_certificates(data.get("ca_certificates"), base_dir),
        proxy=_proxy(data.get("proxy")),
        classroom=classroom,
        caches=_bool(data["caches"], "caches") if "caches" in data else classroom is not None,
        cloud=parse_cloud(data.get("cloud"), base_dir),
    )


def load_lab(path: Path, catalog: Catalog) -> Lab:
    try:
        text = read_bounded(path, LAB_FILE_LIMIT, "lab file")
    except LabFileError as exc:
        hint = "labctl init writes one, or use --distro for a one-machine lab" if "no such" in exc.message else None
        raise LabFileError(exc.message, hint=hint) from None
    raw = parse_yaml(text, str(path))
    try:
        return lab_from_dict(raw, catalog, source=path.resolve())
    except LabFileError as exc:
        raise LabFileError(f"{path}: {exc.message}", hint=exc.hint) from None


def default_lab_dict(distro: str, catalog: Catalog, name: str | None = None) -> dict[str, Any]:
    """The lab.yaml content of `labctl up --distro D`: one all-in-one machine."""
    release = _release(catalog, distro, "--distro")
    lab_name = name or f"{release.family}-{release.version.replace('.', '-')}"
    return {
        "name": lab_name,
        "machines": [{"name": "devstack", "distro": release.ref, "role": "allinone",
                      "memory": f"{DEFAULT_MEMORY_MB}M", "cpus": DEFAULT_CPUS,
                      "disk": f"{DEFAULT_DISK_GB}G"}],
    }
