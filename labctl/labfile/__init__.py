"""lab.yaml and command-line flags -> a validated, frozen Lab (labctl.model).

Every error names the field path (`machines[1].memory: ...`), 0-based like JSON paths. The disk is
read for the lab file, its CA certificates (which must hold one) and to see that the files it names
exist (a DevStack checkout, image files); host facts (CPU count) come in as arguments.
"""

from __future__ import annotations

import re
from pathlib import Path

from labctl.catalog import Catalog
from labctl.classroom.seats import parse_classroom, seat_machines
from labctl.cloud.spec import parse_cloud
from labctl.errors import LabFileError, show
from labctl.files import CERTIFICATE_LIMIT, LAB_FILE_LIMIT, certificate_blocks, read_bounded
from labctl.labfile.devstack import parse_devstack, seats_read_inside_the_folder
from labctl.labfile.machines import default_cidr, parse_defaults, parse_machines, parse_network
from labctl.labfile.problems import Loc, Problem, loc_of, problems
from labctl.labfile.scalars import (
    certificate_path,
    check_name,
    matching,
    parse_disk,
    parse_memory,
    release_of,
    true_or_false,
)
from labctl.labfile.shape import LabShape, ProxyShape, keys
from labctl.labyaml import Positions, listed, mapping, parse_yaml_positions
from labctl.model import ACCELERATORS, DEFAULT_CPUS, DEFAULT_DISK_GB, DEFAULT_MEMORY_MB, Lab, Proxy
from labctl.raw import RawMap

__all__ = ["check_name", "default_cidr", "default_lab_dict", "lab_from_dict", "load_lab", "parse_disk",
           "parse_memory"]

_PROXY_URL_RE = re.compile(r"https?://[^\s'\"\\`$;&|<>]+\Z")
_NO_PROXY_RE = re.compile(r"[A-Za-z0-9.,:/*_-]*\Z")


def _proxy(raw: object) -> Proxy | None:
    if raw is None:
        return None
    data = mapping(raw, "proxy", keys(ProxyShape))
    http = data.get("http")
    https = data.get("https", http)
    for key, value in (("http", http), ("https", https)):
        if value is not None:
            matching(value, f"proxy.{key}", _PROXY_URL_RE, "a proxy URL like http://proxy.example:3128")
    no_proxy = data.get("no_proxy", "")
    matching(no_proxy, "proxy.no_proxy", _NO_PROXY_RE, "a comma-separated list of hosts or domains")
    if http is None and https is None:
        raise LabFileError("proxy: give http, https or both")
    return Proxy(http, https, no_proxy)


def _certificates(raw: object, base_dir: Path | None) -> tuple[Path, ...]:
    paths = []
    for i, value in enumerate(listed(raw, "ca_certificates")):
        where = f"ca_certificates[{i}]"
        path = Path(certificate_path(value, where)).expanduser()
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


def lab_from_dict(raw: object, catalog: Catalog, source: Path | None = None, shape_checked: bool = False) -> Lab:
    """The lab: lab.yaml's shape first (every error of it at once, unless load_lab has just checked
    it), then what its sections mean."""
    found = [] if shape_checked else problems(raw)
    if len(found) == 1:
        raise LabFileError(f"{found[0].path}: {found[0].message}" if found[0].path else found[0].message,
                           hint=found[0].hint or None)
    if found:
        raise LabFileError(f"{len(found)} problems", details=tuple(f"{p.path}: {p.message}" for p in found),
                           hint="fix each of them, then run the command again")
    data = mapping(raw, "", keys(LabShape))
    name = check_name(data["name"], "name")  # there, and a name: the shape said so
    accelerator = data.get("accelerator", "auto")
    if accelerator not in ACCELERATORS:
        raise LabFileError(f"accelerator: expected one of {', '.join(ACCELERATORS)}, got {show(accelerator)}")
    net = parse_network(data.get("network"), name)
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
    devstack = parse_devstack(data.get("devstack"), base_dir)
    if classroom is not None:
        seats_read_inside_the_folder(devstack, base_dir)
    return Lab(
        name=name,
        machines=parse_machines(machines, parse_defaults(data.get("defaults")), net, catalog,
                           "classroom.seat" if classroom else None),
        cidr=str(net),
        devstack=devstack,
        accelerator=accelerator,
        source=source,
        fragments_dir=fragments if fragments and fragments.is_dir() else None,
        ca_certificates=_certificates(data.get("ca_certificates"), base_dir),
        proxy=_proxy(data.get("proxy")),
        classroom=classroom,
        caches=true_or_false(data["caches"], "caches") if "caches" in data else classroom is not None,
        cloud=parse_cloud(data.get("cloud"), base_dir),
        nested=true_or_false(data.get("nested", False), "nested"),
    )


def load_lab(path: Path, catalog: Catalog) -> Lab:
    try:
        text = read_bounded(path, LAB_FILE_LIMIT, "lab file")
    except LabFileError as exc:
        hint = "labctl init writes one, or use --distro for a one-machine lab" if "no such" in exc.message else None
        raise LabFileError(exc.message, hint=hint) from None
    raw, positions = parse_yaml_positions(text, str(path))
    found = problems(raw)
    if found:
        raise _at_lines(path, found, positions)
    try:
        return lab_from_dict(raw, catalog, source=path.resolve(), shape_checked=True)
    except LabFileError as exc:
        loc = loc_of(exc.message)
        raise LabFileError(f"{_where(path, loc, positions)}: {exc.message}", hint=exc.hint) from None


def _where(path: Path, loc: Loc | None, positions: Positions) -> str:
    """`lab.yaml:12:5`, the place of the field `loc` (or of the nearest field above it), as compilers
    and linters write it: terminals and editors jump there."""
    line, column = _line_of(loc or (), positions)
    return f"{path}:{line}:{column}" if loc and line else str(path)


def _at_lines(path: Path, found: list[Problem], positions: Positions) -> LabFileError:
    placed = sorted(found, key=lambda p: _line_of(p.loc, positions))
    lines = [f"{_where(path, p.loc, positions)}: {p.path + ': ' if p.path else ''}{p.message}" for p in placed]
    if len(lines) == 1:
        return LabFileError(lines[0], hint=placed[0].hint or None)
    details = []
    for line, problem in zip(lines, placed, strict=True):
        details.append(line)
        if problem.hint:
            details.append(f"    hint: {problem.hint}")
    return LabFileError(f"{path}: {len(lines)} problems", details=tuple(details),
                        hint="fix each of them, then run the command again")


def _line_of(loc: Loc, positions: Positions) -> tuple[int, int]:
    """Where the field `loc` starts, or the nearest field above it; (0, 0) for the file itself."""
    while loc and loc not in positions:
        loc = loc[:-1]
    return positions.get(loc, (0, 0)) if loc else (0, 0)


def default_lab_dict(distro: str, catalog: Catalog, name: str | None = None) -> RawMap:
    """The lab.yaml content of `labctl up --distro D`: one all-in-one machine."""
    release = release_of(catalog, distro, "--distro")
    lab_name = name or f"{release.family}-{release.version.replace('.', '-')}"
    return {
        "name": lab_name,
        "machines": [{"name": "devstack", "distro": release.ref, "role": "allinone",
                      "memory": f"{DEFAULT_MEMORY_MB}M", "cpus": DEFAULT_CPUS,
                      "disk": f"{DEFAULT_DISK_GB}G"}],
    }
