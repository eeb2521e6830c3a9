"""Use-cases: what each command does, given its inputs and drivers. No printing, no sys.exit."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from labctl import __version__, records
from labctl.catalog import Catalog, Release
from labctl.classroom import networks as seat_networks
from labctl.classroom.seats import MAX_SEATS, keep_seats
from labctl.conflicts import check_domains_free, check_network_free, check_ports_free
from labctl.devstack_services import check_coverage, enabled_services
from labctl.errors import LabConflict, LabctlError, LabFileError, LabNotFound
from labctl.files import FRAGMENT_LIMIT, LAB_FILE_LIMIT, read_bounded
from labctl.gitserver import repositories
from labctl.host import Accelerator, HostFacts, check_nested, choose_accelerator
from labctl.images.key import kept_image_gb
from labctl.labfile import check_name, default_lab_dict, lab_from_dict, load_lab, parse_disk, parse_memory
from labctl.mirrors import ServedMirror, devstack_source, git_base_served, git_base_url, redact, served_as
from labctl.model import Lab, Machine
from labctl.names import valid_name
from labctl.passwords import LabSecrets, Passwords, SeatSecrets
from labctl.raw import RawMap
from labctl.records import classroom_json
from labctl.render import (
    BUILTIN_SELECTORS,
    Fragment,
    check_fragments,
    compose_local_conf,
    fragment_selector,
    render_local_conf,
    render_vagrantfile,
    slow_waits_note,
)
from labctl.resources import data_path
from labctl.selection import LAB_FILE, LabRequest, existing_lab, only_lab
from labctl.state import LabDir, LabHome, atomic_write, user_file_mode

if TYPE_CHECKING:
    from labctl.hosts.transport import HostRoute

# DevStack's multinode guide: a compute runs few services and needs less than a full node.
COMPUTE_MIN_MEMORY_MB = 4096


# ---------------------------------------------------------------------------------------------
# Choosing the lab a command acts on


def _distro_lab(req: LabRequest, catalog: Catalog) -> tuple[Lab, RawMap]:
    if req.name is not None:
        check_name(req.name, "--name")
    raw = default_lab_dict(req.distro or "", catalog, req.name)
    machine = raw["machines"][0]
    if req.memory is not None:
        machine["memory"] = parse_memory(req.memory, "--memory")
    if req.cpus is not None:
        machine["cpus"] = req.cpus
    if req.disk is not None:
        machine["disk"] = parse_disk(req.disk, "--disk")
    try:
        return lab_from_dict(raw, catalog), raw
    except LabFileError as exc:  # the user typed an option, not lab.yaml: name the option
        for key in ("cpus", "memory", "disk"):
            exc.message = exc.message.replace(f"machines[0].{key}:", f"--{key}:")
        raise


def resolve_lab(req: LabRequest, home: LabHome, catalog: Catalog, cwd: Path) -> tuple[Lab, RawMap | None]:
    """The lab to act on, and for a `--distro` lab the lab.yaml content that describes it."""
    if req.file and req.lab:
        raise LabctlError("-f and --lab both name a lab; give one", hint="-f for a lab file, --lab for a lab by name")
    if req.distro and (req.file or req.lab):
        raise LabctlError("--distro makes a one-machine lab and cannot be combined with -f or --lab",
                          hint="set the distro inside lab.yaml instead")
    overrides = (req.name, req.memory, req.cpus, req.disk)
    if not req.distro and any(v is not None for v in overrides):
        raise LabctlError("--name, --memory, --cpus and --disk go with --distro",
                          hint="for a lab file, set them in lab.yaml")
    if req.distro:
        return _distro_lab(req, catalog)
    if req.file:
        return load_lab(req.file, catalog), None
    if not req.lab and (cwd / LAB_FILE).is_file():
        return load_lab(cwd / LAB_FILE, catalog), None
    lab_dir = existing_lab(home, req.lab or only_lab(home))
    source = records.lab_source(lab_dir)
    if not source.is_file():
        raise LabNotFound(f"lab {lab_dir.name!r} was defined by {source}, which no longer exists",
                          hint=f"run labctl plan -f PATH/lab.yaml to point {lab_dir.name!r} at its lab file again")
    return load_lab(source, catalog), None


# ---------------------------------------------------------------------------------------------
# plan


@dataclass(frozen=True)
class MachinePlan:
    machine: Machine
    local_conf: Path


@dataclass(frozen=True)
class Plan:
    lab: Lab
    dir: Path
    vagrantfile: Path
    machines: tuple[MachinePlan, ...]
    accelerator: Accelerator
    warnings: tuple[str, ...]
    devstack_from: str = ""  # where the machines get DevStack: a URL, or the checkout pushed
    mirrors: tuple[ServedMirror, ...] = ()

    @property
    def totals(self) -> dict[str, int]:
        ms = self.lab.machines
        return {"machines": len(ms), "memory_mb": sum(m.memory_mb for m in ms),
                "cpus": sum(m.cpus for m in ms), "disk_gb": sum(m.disk_gb for m in ms)}

    def as_json(self) -> dict[str, object]:
        return {
            "lab": self.lab.name,
            "dir": str(self.dir),
            "vagrantfile": str(self.vagrantfile),
            "network": self.lab.cidr,
            "accelerator": {"name": self.accelerator.name, "reason": self.accelerator.reason},
            "devstack": {"repo": redact(self.lab.devstack.repo), "branch": self.lab.devstack.branch,
                         "force": self.lab.devstack.force, "from": redact(self.devstack_from),
                         "git_base": redact(git_base) if (git_base := git_base_url(self.lab)) else None,
                         "served": [{"folder": str(m.folder), "url": m.url, "repositories": m.repositories,
                                     "as": m.served_as} for m in self.mirrors]},
            "machines": [_machine_json(mp) for mp in self.machines],
            "totals": self.totals,
            "warnings": list(self.warnings),
            "classroom": classroom_json(self.lab.classroom) if self.lab.classroom else None,
            "image": {"kept": True, "up_to_gb": gb} if (gb := kept_image_gb(self.lab)) else None,
        }


def _machine_json(mp: MachinePlan) -> dict[str, object]:
    m = mp.machine
    return {"name": m.name, "distro": m.release.ref, "box": m.box, "role": m.role,
            "memory_mb": m.memory_mb, "cpus": m.cpus, "disk_gb": m.disk_gb, "ip": m.ip,
            "local_conf": str(mp.local_conf)}


def _machine_record(m: Machine) -> records.MachineRecord:
    return records.MachineRecord(m.name, m.role, m.ip, m.release.ref, m.box, m.release.user, m.memory_mb, m.cpus,
                                 m.disk_gb, m.host)


def fit_to_host(lab: Lab, host: HostFacts) -> tuple[Lab, list[str]]:
    """Lower vCPUs to what the host has (saying so) and warn where DevStack will not fit or run."""
    warnings: list[str] = []
    machines = []
    lowered = [m for m in lab.machines if m.cpus > host.cpus]
    if lowered:  # one line for the lab: a class of 14 seats must not say it 14 times
        asked = "/".join(str(n) for n in sorted({m.cpus for m in lowered}))
        who = lowered[0].name if len(lowered) == 1 else f"{len(lowered)} machines ({lowered[0].name}...)"
        warnings.append(f"{who}: {asked} CPUs asked, this host has {host.cpus}: using {host.cpus}"
                        + (" (set cpus: in lab.yaml to choose)" if len(lowered) > 1 else ""))
    for m in lab.machines:
        if m.cpus > host.cpus:
            m = replace(m, cpus=host.cpus)
        needed = min(m.release.min_memory_mb, COMPUTE_MIN_MEMORY_MB) if m.role == "compute" \
            else m.release.min_memory_mb
        if m.memory_mb < needed:
            warnings.append(f"{m.name}: {m.memory_mb} MiB of memory is below the {needed} MiB a DevStack"
                            f" {m.role} needs on {m.release.ref}; stack.sh will likely fail")
        if m.disk_gb < m.release.min_disk_gb:
            warnings.append(f"{m.name}: {m.disk_gb} GB of disk is below the {m.release.min_disk_gb}"
                            f" GB DevStack needs on {m.release.ref}")
        machines.append(m)
    return replace(lab, machines=tuple(machines)), warnings + devstack_support_warnings(lab)


def devstack_support_warnings(lab: Lab) -> list[str]:
    spec = lab.devstack
    warnings = []
    seen: set[Release] = set()
    for release in (m.release for m in lab.machines):
        if release in seen:
            continue
        seen.add(release)
        support = release.devstack_support(spec.branch)
        if support == "unsupported" and spec.force:
            warnings.append(f"DevStack {spec.branch} does not support {release.ref}: running it anyway"
                            " with FORCE=yes (devstack.force), expect failures")
        elif support == "unsupported":
            note = f" ({release.note})" if release.note else ""
            force = ("set devstack.force: true in lab.yaml" if lab.source else
                     "write a lab.yaml (labctl init) with devstack.force: true")
            warnings.append(f"DevStack {spec.branch} does not support {release.ref}: its stack.sh stops"
                            f" at once{note}. Pick another distro (labctl boxes), or {force} to try anyway")
        elif support == "unknown":
            known = ", ".join(release.devstack_branches) or "none"
            warnings.append(f"labctl does not know whether DevStack {spec.branch} supports"
                            f" {release.ref} (known to work: {known})")
    return warnings


def read_fragments(lab: Lab) -> list[Fragment]:
    builtin = data_path("local.conf.d")
    fragments = [Fragment(f"local.conf.d/{name}.conf", name, (builtin / f"{name}.conf").read_text(), True)
                 for name in BUILTIN_SELECTORS]
    if lab.fragments_dir:
        folder = lab.fragments_dir.parent.resolve()
        for path in sorted(lab.fragments_dir.glob("*.conf")):
            # A link out of the lab's folder would copy a file of this host (a key...) into the machines.
            if not path.resolve().is_relative_to(folder):
                raise LabFileError(f"{path}: links to {path.resolve()}, outside the lab's folder {folder}",
                                   hint="copy the fragment into local.conf.d/ instead of linking to it")
            text = read_bounded(path, FRAGMENT_LIMIT, "local.conf fragment")
            fragments.append(Fragment(str(path), fragment_selector(path.name), text, False))
    check_fragments(fragments, lab)
    return fragments


@dataclass(frozen=True)
class Rendered:
    """Everything a lab's folder will hold, rendered in memory and not yet written."""

    lab: Lab
    lab_dir: LabDir
    source: Path
    accelerator: Accelerator
    warnings: tuple[str, ...]
    secrets: LabSecrets
    new_secrets: bool  # made now (the file is written), or new seats among them
    lab_text: str
    vagrantfile: str
    local_confs: dict[str, str]
    boxes: dict[str, str]
    devstack_from: str
    mirrors: tuple[ServedMirror, ...]


def _same_lab(lab_dir: LabDir, lab_source: Path) -> list[str]:
    """Refuse a second lab file for a lab whose own still exists; follow one that was moved or renamed
    (the file that names the lab now defines it)."""
    recorded = records.lab_source(lab_dir) if lab_dir.exists() else None
    if recorded is None or recorded.resolve() == lab_source.resolve():
        return []
    if recorded.is_file():
        raise LabConflict(f"a lab named {lab_dir.name!r} already exists, defined by {recorded}",
                          hint="give this lab another name, or destroy the other one first (labctl forget"
                               " it if it has no machines)")
    return [f"lab {lab_dir.name!r} was defined by {recorded}, which no longer exists: {lab_source} defines it"
            " from now on"]


def render_lab(lab: Lab, home: LabHome, host: HostFacts, generated: RawMap | None = None,
               boxes: dict[str, str] | None = None, routes: Mapping[str, HostRoute] | None = None,
               straight: Mapping[str, str] | None = None) -> Rendered:
    """Validate and render everything; raises before anything is written. `boxes` maps catalogue boxes
    to the local boxes `up` chose instead; by default the lab keeps the choice it recorded, so that
    re-planning a lab never points it at a box it cannot get. `straight`: machines made from a stacked
    image without a box -> their disk volume's name (labctl.stacking.images)."""
    lab, warnings = fit_to_host(lab, host)
    accel = choose_accelerator(lab.accelerator, host)
    if lab.nested:
        check_nested(accel, host)
    lab_dir = home.lab(lab.name)
    lab_source = lab.source or lab_dir.lab_file
    warnings += _same_lab(lab_dir, lab_source)
    check_domains_free(lab, home)
    check_network_free(lab, home)
    check_ports_free(lab, home)
    before = records.read_lab(lab_dir) if lab_dir.exists() else None
    if lab.classroom and before is not None:  # trainees keep the seats (and the printed cards) they had
        classroom, handed = keep_seats(lab.classroom, before.classroom)
        lab = replace(lab, classroom=classroom)
        warnings += [f"{h}; to give a newcomer a seat of their own, raise classroom.seats" for h in handed]
    boxes = {**(before.boxes if before is not None else {}), **(boxes or {})}
    if boxes:
        lab = replace(lab, machines=tuple(replace(m, box=boxes.get(m.box, m.box)) for m in lab.machines))
    known = lab_dir.read_secrets()
    lab_secrets = known or LabSecrets(Passwords.generate(), {})
    new_seats = [s.name for s in lab.classroom.seats if s.name not in lab_secrets.seats] if lab.classroom else []
    lab_secrets = LabSecrets(lab_secrets.passwords,
                             {**lab_secrets.seats, **{n: SeatSecrets.generate() for n in new_seats}})
    fragments = read_fragments(lab)
    if lab.classroom is not None:  # seats on networks of their own? (from the seat's services)
        seat = lab.machines[0]
        conf = compose_local_conf(lab, seat, lab_secrets.for_machine(seat.name).as_dict(), fragments, accel.slow)
        lab, note = seat_networks.decide(lab, enabled_services(conf), before.classroom if before else None,
                                         (lab_dir.path / ".vagrant").is_dir())
        warnings += [note] if note else []
    mirrors = tuple(ServedMirror(s.source, s.url(lab.cidr), len(repositories(s)), role) for s, role in served_as(lab))
    source = devstack_source(lab)
    devstack_from = source.url or f"{source.folder} (pushed as it is)"
    vagrantfile = render_vagrantfile(data_path("Vagrantfile.j2").read_text(), lab, accel, routes, straight)
    confs = {m.name: render_local_conf(lab, m, lab_secrets.for_machine(m.name).as_dict(), fragments, slow=accel.slow)
             for m in lab.machines}
    warnings += [note] if (note := slow_waits_note(lab, accel.slow)) else []
    if (mirror_folder := git_base_served(lab)) is not None:  # what stack.sh will clone, all there?
        warnings += check_coverage(confs, repositories(mirror_folder), mirror_folder.source)
    lab_text = (yaml.safe_dump(generated, sort_keys=False) if generated is not None
                else read_bounded(lab.source, LAB_FILE_LIMIT, "lab file") if lab.source else "")
    return Rendered(lab, lab_dir, lab_source, accel, tuple(warnings), lab_secrets, known is None or bool(new_seats),
                    lab_text, vagrantfile, confs, boxes, devstack_from, mirrors)


def write_lab(r: Rendered) -> Plan:
    lab_dir = r.lab_dir
    lab_dir.create()
    if r.new_secrets:
        lab_dir.write_secrets(r.secrets)
    atomic_write(lab_dir.lab_file, r.lab_text)
    atomic_write(lab_dir.vagrantfile, r.vagrantfile)
    for name, text in r.local_confs.items():
        atomic_write(lab_dir.local_conf(name), text, mode=0o600)
    # Machines no longer in lab.yaml: their rendered local.conf goes (nothing else lives there).
    for stale in sorted((lab_dir.path / "machines").iterdir()):
        if stale.name not in r.local_confs and stale.is_dir():
            (stale / "local.conf").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                stale.rmdir()
    records.write_lab(lab_dir, records.LabRecord(
        r.lab.name, r.source, __version__, r.lab.cidr, tuple(_machine_record(m) for m in r.lab.machines), r.boxes,
        r.lab.classroom, bool(r.lab.caches)))
    machines = tuple(MachinePlan(m, lab_dir.local_conf(m.name)) for m in r.lab.machines)
    return Plan(r.lab, lab_dir.path, lab_dir.vagrantfile, machines, r.accelerator, r.warnings, r.devstack_from,
                r.mirrors)


def plan_lab(lab: Lab, home: LabHome, host: HostFacts, generated: RawMap | None = None,
             routes: Mapping[str, HostRoute] | None = None) -> Plan:
    """Validate, render everything in memory, then write the lab folder. Nothing is written unless
    everything rendered."""
    return write_lab(render_lab(lab, home, host, generated, routes=routes))


# ---------------------------------------------------------------------------------------------
# init


def init_lab_file(path: Path, name: str | None, force: bool, seats: int | None = None) -> tuple[Path, Path]:
    """Write the commented example lab.yaml (a classroom of `seats` when given) and lab.yaml's JSON
    Schema beside it, which its first line points editors at; the lab is named after the file's
    folder unless `name` says otherwise."""
    name = check_name(name, "--name") if name is not None else name_from_folder(path)
    if seats is not None and not 1 <= seats <= MAX_SEATS:
        raise LabFileError(f"--classroom: {seats} seats; a classroom has 1 to {MAX_SEATS}",
                           hint="labctl init --classroom 12")
    if path.exists() and not force:
        raise LabConflict(f"{path} already exists", hint="use --force to overwrite it, or give another path")
    template = (Path(__file__).parent / "templates" / ("classroom.yaml" if seats else LAB_FILE)).read_text(
        encoding="utf-8")
    text = template.replace("{{ name }}", name).replace("{{ seats }}", str(seats))
    from labctl.labfile.shape import SCHEMA_FILE

    schema_file = path.parent / SCHEMA_FILE
    write_schema(schema_file)
    atomic_write(path, f"# yaml-language-server: $schema=./{SCHEMA_FILE}\n{text}", mode=user_file_mode())
    return path, schema_file


def write_schema(path: Path) -> None:
    """lab.yaml's JSON Schema in a file: rewritten whole when it is labctl's (an older one), never when
    it is a file of the user's."""
    import json

    from labctl.labfile.shape import SCHEMA_ID, schema

    if path.exists():
        try:
            ours = SCHEMA_ID in path.read_text(encoding="utf-8", errors="replace")[:4096]
        except OSError:
            ours = False
        if not ours:
            raise LabConflict(f"{path} exists and is not labctl's schema", hint="move it away, or give another path")
    atomic_write(path, json.dumps(schema(), indent=2) + "\n", mode=user_file_mode())


def name_from_folder(path: Path) -> str:
    """A lab name from the folder lab.yaml is in (`~/src/Nova-Bugs` -> nova-bugs), `mylab` if it
    gives none: two projects' labs no longer collide under one default name."""
    import re

    folder = path.expanduser().resolve().parent.name.lower()
    slug = re.sub(r"[^a-z0-9-]+", "-", folder).strip("-")
    slug = re.sub(r"^[^a-z]+", "", slug)[:63].rstrip("-")
    return slug if valid_name(slug) else "mylab"
