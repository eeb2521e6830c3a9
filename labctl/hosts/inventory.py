"""The host inventory: which libvirt hosts labctl may place machines on.

~/.config/labctl/hosts.yaml ($LABCTL_HOSTS names another file):

    hosts:
      - name: local
        uri: qemu:///system
        reserve: 2G              # memory kept free for the host itself
      - name: rack2
        uri: qemu+ssh://labctl@rack2.example.org/system
        ssh_key: ~/.ssh/labctl_hosts
        reserve: 4G

Without the file, there is one host: this machine (its URI from $LABCTL_LIBVIRT_URI, else
qemu:///system), named "local", with nothing reserved. Pure: no libvirt here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labctl.errors import LabFileError, show
from labctl.files import read_bounded

LOCAL = "local"
MAX_HOSTS = 64
HOSTS_FILE_LIMIT = 256 * 1024
# A libvirt URI labctl can drive: the local or session qemu driver, qemu over SSH or TLS, and libvirt's
# test driver (placement can be tried on it). No query string: labctl adds what it needs (keyfile,
# no_tty), and a `command=` in a URI would run on this machine.
URI_RE = re.compile(
    r"(?P<scheme>qemu|qemu\+ssh|qemu\+tls|test)://"
    r"(?:(?P<user>[A-Za-z_][A-Za-z0-9._-]{0,31})@)?"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])?"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[A-Za-z0-9._/-]{0,200})\Z", re.ASCII)
REMOTE_SCHEMES = ("qemu+ssh", "qemu+tls")


@dataclass(frozen=True)
class HostUri:
    """A libvirt URI labctl accepted (URI_RE), read once into its parts."""

    scheme: str
    user: str | None
    host: str | None
    port: str | None
    path: str

    @classmethod
    def parse(cls, text: str) -> HostUri | None:
        m = URI_RE.match(text)
        return cls(m["scheme"], m["user"], m["host"], m["port"], m["path"]) if m else None

    @property
    def remote(self) -> bool:
        return self.scheme in REMOTE_SCHEMES

    @property
    def over_ssh(self) -> bool:
        """libvirt reached through SSH (qemu+ssh://): its machines are reached through the host too."""
        return self.scheme == "qemu+ssh" and bool(self.host)


@dataclass(frozen=True)
class HostEntry:
    name: str
    uri: str  # as written
    reserve_mb: int = 0
    ssh_key: Path | None = None
    parts: HostUri | None = field(init=False, repr=False, compare=False)  # None: not a URI labctl drives

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", HostUri.parse(self.uri))

    @property
    def remote(self) -> bool:
        return bool(self.parts and self.parts.remote)

    @property
    def address(self) -> str | None:
        """The host's name or address, for SSH through it; None for this machine."""
        return self.parts.host if self.parts and self.parts.remote else None

    @property
    def same_host(self) -> tuple[str, ...]:
        """The libvirt this URI reaches, however it is spelled: a host's name in any case, with or
        without its default port, an address in any notation, any login user."""
        import contextlib
        import ipaddress

        m = self.parts
        if m is None:
            return (self.uri,)
        host = (m.host or "").strip("[]").lower().rstrip(".")
        with contextlib.suppress(ValueError):
            host = str(ipaddress.ip_address(host))
        port = m.port or {"qemu+ssh": "22", "qemu+tls": "16514"}.get(m.scheme, "")
        return ("remote" if m.remote else m.scheme, host, str(int(port)) if port else "", m.path.rstrip("/") or "/")


def hosts_file(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get("LABCTL_HOSTS"):
        return Path(environ["LABCTL_HOSTS"]).expanduser()
    config = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "labctl" / "hosts.yaml"


def local_host(uri: str) -> HostEntry:
    return HostEntry(LOCAL, uri)


def load_hosts(path: Path, default_uri: str) -> list[HostEntry]:
    """The inventory in `path`; this machine alone when there is no such file."""
    if not path.exists() and not path.is_symlink():
        return [local_host(default_uri)]
    text = read_bounded(path, HOSTS_FILE_LIMIT, "hosts file")
    try:
        from labctl.labyaml import parse_yaml  # YAML is loaded only where there is a hosts file to read

        return parse_hosts(parse_yaml(text, str(path)))
    except LabFileError as exc:
        raise LabFileError(f"{path}: {exc.message}", hint=exc.hint) from None


def parse_hosts(raw: object) -> list[HostEntry]:
    from labctl.labyaml import listed, mapping

    data = mapping(raw, "", ("hosts",))
    items = listed(data.get("hosts"), "hosts")
    if not items:
        raise LabFileError("hosts: the inventory names no host", hint="list at least one host, or remove the file"
                                                                       " to use this machine alone")
    if len(items) > MAX_HOSTS:
        raise LabFileError(f"hosts: {len(items)} hosts; at most {MAX_HOSTS}")
    entries: list[HostEntry] = []
    for i, item in enumerate(items):
        entry = _host(item, f"hosts[{i}]")
        for other in entries:
            if other.name == entry.name:
                raise LabFileError(f"hosts[{i}].name: {entry.name!r} is named twice",
                                   hint="give each host its own name")
            if other.same_host == entry.same_host:
                raise LabFileError(f"hosts[{i}].uri: {entry.uri} is the libvirt of {other.name!r} ({other.uri})",
                                   hint="one libvirt host, one entry: two would count its memory twice")
        entries.append(entry)
    return entries


def _host(raw: object, path: str) -> HostEntry:
    from labctl.labfile import check_name, parse_memory
    from labctl.labyaml import mapping

    data = mapping(raw, path, ("name", "uri", "reserve", "ssh_key"))
    for required in ("name", "uri"):
        if required not in data:
            raise LabFileError(f"{path}.{required}: missing", hint="each host has a name and a libvirt uri, e.g."
                                                              " {name: rack2, uri: 'qemu+ssh://labctl@rack2/system'}")
    name = check_name(data["name"], f"{path}.name")
    uri = data["uri"]
    m = HostUri.parse(uri) if isinstance(uri, str) else None
    if m is None or (m.port and not 0 < int(m.port) < 65536):
        raise LabFileError(f"{path}.uri: not a libvirt URI labctl can use: {show(uri)}",
                           hint="qemu:///system for this machine, qemu+ssh://USER@HOST/system for another"
                                " (no ?options: set ssh_key instead)")
    if m.remote and not m.host:
        raise LabFileError(f"{path}.uri: {uri} names no host", hint="qemu+ssh://USER@HOST/system")
    key = data.get("ssh_key")
    ssh_key = None
    if key is not None:
        if not isinstance(key, str) or not key or len(key) > 4096 or any(c in key for c in "\n\r\0"):
            raise LabFileError(f"{path}.ssh_key: expected the path of a private key file, got {show(key)}")
        if m.scheme != "qemu+ssh":
            raise LabFileError(f"{path}.ssh_key: only a qemu+ssh:// host is reached with an SSH key")
        ssh_key = Path(key).expanduser()
        if not ssh_key.is_absolute():
            raise LabFileError(f"{path}.ssh_key: {key} is not an absolute path",
                               hint="write it as ~/.ssh/KEY or /path/KEY")
    raw_reserve = data.get("reserve", 0)
    reserve = 0 if raw_reserve in (0, "0") else parse_memory(raw_reserve, f"{path}.reserve")
    return HostEntry(name=name, uri=uri, reserve_mb=reserve, ssh_key=ssh_key)
