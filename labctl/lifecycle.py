"""Use-cases of a lab's machines: up, halt, resume, destroy, list (ssh and exec: machine_access.py;
boxes: boxes.py).

Each takes its drivers' settings (Context) and a Reporter for progress; none prints or exits.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl import records
from labctl.boxes import cache_driver, ensure_boxes
from labctl.context import Context
from labctl.errors import LabctlError, NotEnoughResources
from labctl.fencing import fence_machines, open_doors
from labctl.hosts.placement import sum_text
from labctl.machine_status import MachineStatus, lab_status
from labctl.names import domain_name, network_name
from labctl.raw import RawMap
from labctl.state import LabDir

if TYPE_CHECKING:  # `labctl status` and friends import this module: keep YAML and Jinja2 out of it.
    from labctl.classroom.seats import ClassFit
    from labctl.host import HostFacts
    from labctl.hosts.spread import Spread
    from labctl.images.store import Image, ImageStore
    from labctl.lab import Plan
    from labctl.model import Lab, Machine
    from labctl.protocols import Capacity, HypervisorPort, Reporter, SshPort, VagrantPort


# ---------------------------------------------------------------------------------------------
# Capacity


def check_capacity(machines: Sequence[Machine], cap: Capacity, image_gb: int = 0) -> None:
    """Refuse, with the arithmetic, a lab whose new machines do not fit the host's free resources;
    `image_gb`: the stacked image its up may keep besides (a flattened copy of the stacked disk)."""
    if not machines:
        return
    memory = [m.memory_mb for m in machines]
    if sum(memory) > cap.memory_available_mb:
        raise NotEnoughResources(
            f"not enough memory: the machines to start need {sum_text(memory, 'MiB')}, this host has"
            f" {cap.memory_available_mb} MiB available (of {cap.memory_total_mb} MiB)",
            hint="use fewer or smaller machines (memory: in lab.yaml), or stop other VMs")
    disk = [m.disk_filled_gb for m in machines]
    if cap.disk_free_gb is not None and sum(disk) + image_gb > cap.disk_free_gb:
        uses = (f"the machine to start and the stacked image kept of it will use up to"
                f" {sum_text([*disk, image_gb], 'GB')}" if image_gb else
                f"the machines to start will use up to {sum_text(disk, 'GB')}")
        raise NotEnoughResources(
            f"not enough disk: {uses}, {cap.disk_path} has {cap.disk_free_gb} GB free",
            hint="free disk space there (labctl images prune removes stacked images), or use fewer machines")
    too_wide = [m.name for m in machines if m.cpus > cap.cpus]
    if too_wide:
        raise NotEnoughResources(f"{', '.join(too_wide)}: more vCPUs than the host's {cap.cpus} CPUs",
                                 hint="lower cpus: in lab.yaml")


# ---------------------------------------------------------------------------------------------
# up / halt / resume / destroy


def up_lab(lab: Lab, generated: RawMap | None, ctx: Context, host: HostFacts, reporter: Reporter,
           mirror: str, before_create: Callable[[Lab], None] | None = None, images: ImageStore | None = None,
           straight: set[str] | None = None) -> tuple[Plan, list[MachineStatus]]:
    """`before_create`: once checked, with the lab as placed (the caches); `images`: see stacking.images."""
    from labctl.hosts.spread import spread_existing
    from labctl.lab import render_lab, write_lab

    reporter.step("checking the host")
    lab_dir = ctx.home.lab(lab.name)
    _refuse_an_orphan_up(lab.name, lab_dir)
    # Until the lab's folder is written, vagrant runs from the cache folder (boxes, validation).
    driver = cache_driver(ctx)
    driver.check_plugin()
    spread = spread_existing(lab, ctx)  # where each machine lives already (never moved), and where new ones go
    infos = spread.domains
    rendered = render_lab(spread.lab, ctx.home, host, generated, routes=spread.routes)
    _validate(rendered.vagrantfile, driver)
    hv = ctx.hypervisor()
    if rendered.accelerator.slow:
        reporter.warn(f"software emulation: {rendered.accelerator.reason}")
    to_start = [m for m in rendered.lab.machines if (i := infos[m.name]) is None or i.state != "running"]
    _check_room(rendered.lab, to_start, spread, hv, reporter)
    for w in rendered.warnings:
        reporter.warn(w)
    if before_create is not None:
        before_create(rendered.lab)

    reporter.step("getting boxes")
    swaps = ensure_boxes(rendered.lab, ctx, driver, reporter, mirror, rendered.local_confs)
    if swaps:
        rendered = render_lab(spread.lab, ctx.home, host, generated, boxes=swaps, routes=spread.routes)
    boxed = rendered.vagrantfile  # every machine from its box: what Vagrant is given once they exist
    made_from: dict[str, Image] = {}
    if images is not None:
        from labctl.stacking.images import finish_on_images, onto_images

        rendered, made_from = onto_images(rendered, lambda straight: render_lab(
            spread.lab, ctx.home, host, generated, boxes=swaps or None, routes=spread.routes, straight=straight),
            lambda text: _validate(text, driver), [m.name for m in to_start if infos[m.name] is None], images,
            driver, hv, reporter)
    plan = write_lab(rendered)
    driver = ctx.vagrant(lab_dir.path, lab_dir.vagrant_log)
    (straight if straight is not None else set()).update(made_from)
    if to_start:
        _boot(lab.name, to_start, ctx, driver, reporter)
    if made_from:
        finish_on_images(lab_dir, ctx.ssh(), boxed, made_from)
    return plan, _booted(rendered.lab, lab_dir, ctx, hv, {n for n, info in infos.items() if info is None},
                         set(made_from), reporter)


def _booted(lab: Lab, lab_dir: LabDir, ctx: Context, hv: HypervisorPort, new: set[str], on_images: set[str],
            reporter: Reporter) -> list[MachineStatus]:
    """The machines once up booted them: fenced, their predecessors' host keys forgotten, a class's ports
    opened. A machine created on an image has no lease yet (Vagrant waited for none): fenced once it has
    one, before it is made its own machine (labctl.stacking.images)."""
    statuses = lab_status(lab_dir, hv, ctx)
    fence_machines(lab.name, lab.classroom, ctx, [s for s in statuses if s.name not in on_images])
    _forget_predecessors(ctx.ssh(), lab_dir, new, statuses)
    if lab.classroom:
        try:
            open_doors(lab_dir, ctx, reporter)
        except LabctlError as exc:  # the seats stack all the same; the ports can be opened later
            reporter.warn(f"{exc.message} ({exc.hint}); the seats go on without their ports for now")
    return statuses


def _refuse_an_orphan_up(name: str, lab_dir: LabDir) -> None:
    """A `vagrant up` left running by a labctl that was killed: never a second one beside it."""
    orphan = orphan_up(lab_dir)
    if orphan:
        from labctl.state import LabBusy

        raise LabBusy(f"a `vagrant up` of lab {name!r} (pid {orphan}) is still running, left by a labctl"
                      " that was killed", hint=f"wait for it to finish ({lab_dir.vagrant_log} shows it), or stop"
                      f" it: kill -INT {orphan}; then labctl up again (labctl destroy stops it by itself)")


def orphan_up(lab_dir: LabDir) -> int | None:
    """The pid of a `vagrant up` of this lab left running by a labctl that was killed, if any: the
    process recorded (same start time), a vagrant, working in this lab's folder; any other process is
    never named, let alone signalled (and a record that names none is dropped)."""
    from labctl import supervisor

    pid = supervisor.recorded(lab_dir.vagrant_up, ["vagrant"], cwd=lab_dir.path)
    if pid is None:
        lab_dir.vagrant_up.unlink(missing_ok=True)
    return pid


def _boot(name: str, to_start: Sequence[Machine], ctx: Context, driver: VagrantPort, reporter: Reporter) -> None:
    # The management network exists before Vagrant boots anything (made as vagrant-libvirt makes it);
    # destroy_lab makes it again when vagrant-libvirt removed it.
    for on in sorted({m.host for m in to_start}, key=lambda h: h or ""):
        ctx.hypervisor_on(on).management_address()
    with reporter.machines([m.name for m in to_start], "booting") as progress:
        driver.up([m.name for m in to_start], progress.update)
    _mark_started(ctx, name, [(m.name, m.host) for m in to_start])


def _check_room(lab: Lab, to_start: Sequence[Machine], spread: Spread, hv: HypervisorPort,
                reporter: Reporter) -> None:
    """Across hosts, where each machine goes (placement checked it); on this machine alone, whether
    what is to start fits, before anything is made."""
    if spread.placement is not None:
        for line in spread.placement.lines():
            reporter.step(f"host {line}")
        return
    cap = hv.capacity()
    try:
        check_capacity(to_start, cap, image_disk_gb(lab, to_start))
    except NotEnoughResources as exc:
        if lab.classroom and to_start:
            fit = class_fit(lab, cap, len(to_start))
            exc.hint = (f"{fit.fitting} of the {fit.seats} seats to start would fit: lower classroom.seats or"
                        " the seat's memory, or stop other VMs")
        raise


def _forget_predecessors(ssh: SshPort, lab_dir: LabDir, created: set[str], statuses: Sequence[MachineStatus]) -> None:
    """Machines that had no domain before this up are new: what was recorded of the machines that
    had their names and addresses (stack records, host keys) goes."""
    if not created:
        return
    records.forget(lab_dir, sorted(created))
    for s in statuses:
        if s.name in created:
            ssh.forget(lab_dir.known_hosts_of(s.host), [*s.addresses, s.lab_ip])


def _mark_started(ctx: Context, lab: str, machines: Sequence[tuple[str, str | None]]) -> None:
    """Date the runs just started, on the host each machine lives on."""
    by_host: dict[str | None, list[str]] = {}
    for name, host in machines:
        by_host.setdefault(host, []).append(domain_name(lab, name))
    for host, domains in by_host.items():
        ctx.hypervisor_on(host).mark_started(domains)


def class_fit(lab: Lab, cap: Capacity, seats: int | None = None) -> ClassFit:
    """The class's arithmetic against the host's free memory and disk."""
    from labctl.classroom.seats import ClassFit

    seat = lab.machines[0]
    count = len(lab.machines) if seats is None else seats
    return ClassFit(count, seat.memory_mb, seat.disk_filled_gb,
                    cap.memory_available_mb, cap.disk_free_gb)


def plan_fit(lab: Lab, hv: HypervisorPort) -> tuple[ClassFit | None, NotEnoughResources | None]:
    """`plan`'s verdict, as `up` would give it on this host, for the machines not running yet: a
    classroom's arithmetic, and the refusal (None when they fit)."""
    cap = hv.capacity()
    to_start = [m for m in lab.machines
                if (info := hv.domain(domain_name(lab.name, m.name))) is None or info.state != "running"]
    if lab.classroom is not None:
        fit = class_fit(lab, cap, len(to_start))
        refusal = None if fit.fits else NotEnoughResources(
            f"the class does not fit this host: {fit.fitting} of the {fit.seats} seats to start would",
            hint="give the seats less memory (classroom.seat.memory), have fewer seats, or add a host to"
                 " ~/.config/labctl/hosts.yaml")
        return fit, refusal
    try:
        check_capacity(to_start, cap, image_disk_gb(lab, to_start))
    except NotEnoughResources as exc:
        return None, exc
    return None, None


def image_disk_gb(lab: Lab, to_start: Sequence[Machine]) -> int:
    """The disk a stacked image kept by this up may take: the machine's, filled (none when the lab
    keeps no image, or its machine runs already). Counted even where an image of the stack exists
    already (then none is kept): the key is known only once the machine's disk is."""
    from labctl.images.key import kept_image_gb

    return kept_image_gb(lab) if [m.name for m in to_start] == [m.name for m in lab.machines] else 0


def _validate(vagrantfile: str, driver: VagrantPort) -> None:
    """`vagrant validate` on the new Vagrantfile before it replaces the lab's."""
    with tempfile.TemporaryDirectory(prefix="labctl-validate-") as tmp:
        Path(tmp, "Vagrantfile").write_text(vagrantfile)
        driver.validate(Path(tmp))



def halt_lab(lab_dir: LabDir, ctx: Context, names: Sequence[str], reporter: Reporter,
             timeout: float = 180) -> list[str]:
    """Shut machines down cleanly, all at once. Through libvirt, not `vagrant halt`: vagrant halts
    one machine after the other and concurrent vagrant processes lock each other out; vagrant-libvirt
    reads the state back from libvirt, so both agree. Returns the machines that had to be powered off."""

    record = records.read_lab(lab_dir)
    targets = record.pick(names)
    domains = {domain_name(lab_dir.name, n): n for n in targets}
    by_host: dict[str | None, list[str]] = {}
    for name in targets:
        machine = record.machine(name)
        by_host.setdefault(machine.host if machine else None, []).append(domain_name(lab_dir.name, name))
    forced: list[str] = []
    with reporter.machines(targets, "halting") as progress:
        for host, doms in by_host.items():  # each host shuts its machines down all at once
            forced += ctx.hypervisor_on(host).shut_down(doms, timeout,
                                                        lambda d, text: progress.update(domains[d], text))
    from labctl.classroom.access import close_access, forwarder_pid

    if not names:
        if close_access(lab_dir):
            reporter.step("closed the trainees' ports (labctl resume opens them again)")
    elif record.classroom and record.classroom.seat_networks and forwarder_pid(lab_dir) is not None:
        # A halted seat's ports lead to its management lease, which DHCP may give another machine: they go.
        open_doors(lab_dir, ctx, None)
    return [domains[d] for d in forced]


def resume_lab(lab_dir: LabDir, ctx: Context, names: Sequence[str], reporter: Reporter) -> None:
    record = records.read_lab(lab_dir)
    targets = record.pick(names)
    # The caches (and their relays to other hosts) first: this machine may have restarted since.
    from labctl.hosts.services import caches_for

    caches_for(record.caches, {m.host for n in targets if (m := record.machine(n)) and m.host}, ctx, reporter)
    driver = ctx.vagrant(lab_dir.path, lab_dir.vagrant_log)
    with reporter.machines(targets, "starting") as progress:
        driver.up(targets, progress.update)
    record = records.read_lab(lab_dir)
    _mark_started(ctx, lab_dir.name, [(n, m.host if (m := record.machine(n)) else None) for n in targets])
    fence_machines(lab_dir.name, record.classroom, ctx,
                   [s for s in lab_status(lab_dir, ctx.hypervisor(), ctx) if s.name in targets])
    if record.classroom:
        open_doors(lab_dir, ctx, reporter)


def forget_lab(lab_dir: LabDir, hv: HypervisorPort) -> None:
    """Remove the folder of a lab that has no machines (a `plan --distro` tried once, a lab whose
    lab.yaml is gone); a lab with machines is refused: `destroy` removes them first."""
    record = records.read_lab(lab_dir)
    elsewhere = sorted({m.host for m in record.machines if m.host})
    if elsewhere:  # this host's libvirt cannot say whether they exist there
        raise LabctlError(f"lab {lab_dir.name!r} has machines placed on {', '.join(elsewhere)}: forget would lose"
                          " track of them", hint=f"labctl destroy --lab {lab_dir.name} removes them and the lab")
    names = {domain_name(lab_dir.name, m) for m in record.machine_names}
    alive = sorted({n for n in names if hv.domain(n) is not None} | set(hv.domains_of(lab_dir.path)))
    if alive:
        raise LabctlError(f"lab {lab_dir.name!r} has machines ({', '.join(alive)}): forget would lose track of"
                          " them", hint=f"labctl destroy --lab {lab_dir.name} removes them and the lab")
    shutil.rmtree(lab_dir.path)


def destroy_lab(lab_dir: LabDir, ctx: Context, reporter: Reporter) -> list[str]:
    """Remove the lab's domains, volumes, network and folder. Works on half-made labs."""
    from labctl.classroom.access import close_access
    from labctl.hosts.relay import stop_relays
    from labctl.hosts.router import LabDomains
    from labctl.proc import CommandFailed
    from labctl.protocols import VagrantMissing
    from labctl.snapshots import drop_all

    record = records.read_lab(lab_dir)
    machines = record.machine_names
    hv = ctx.hypervisor()
    # Every host the lab's machines live on, reached before anything is removed: a host that is down
    # stops the destroy with its name, and the lab stays whole to be destroyed once it is back.
    hosts = {m.host: ctx.hypervisor_on(m.host) for m in record.machines if m.host}
    if close_access(lab_dir):
        reporter.step("closed the trainees' ports")
    stop_relays(lab_dir.path / "relays")  # a stack that was killed leaves its git relays
    dropped = drop_all(lab_dir, LabDomains(lab_dir, ctx), machines)
    if dropped:
        reporter.step(f"deleted {dropped} snapshot(s)")
    orphan = orphan_up(lab_dir)
    if orphan:
        reporter.step(f"stopping the `vagrant up` (pid {orphan}) a killed labctl left running")
        from labctl import supervisor

        supervisor.stop(orphan, 30, signal.SIGINT)  # as Ctrl-C: vagrant cleans up what it was creating
    if lab_dir.vagrantfile.is_file() and (lab_dir.path / ".vagrant").is_dir():
        reporter.step("destroying the machines (vagrant destroy)")
        try:
            ctx.vagrant(lab_dir.path, lab_dir.vagrant_log).destroy()
        except (CommandFailed, VagrantMissing) as exc:
            # libvirt removes what vagrant could not; vagrant's words stay in the log.
            reporter.warn(f"{exc.message}; removing what is left through libvirt")
        # vagrant-libvirt records the management network as made by this lab's machines even when
        # labctl made it first, and removes it once no running machine uses it: halted labs need it.
        for on in (hv, *hosts.values()):
            on.management_address()
    reporter.step("removing leftovers (domains, volumes, network)")
    domains = {domain_name(lab_dir.name, m) for m in machines} | set(hv.domains_of(lab_dir.path))
    removed = hv.remove_leftovers(sorted(domains), network_name(lab_dir.name), owner=lab_dir.path)
    for host, other in hosts.items():
        reporter.step(f"removing leftovers on host {host}")
        # Every machine's name, not only those that live there: a classroom's base was sent there
        # under seat-01's name (storage.py).
        removed += other.remove_leftovers(sorted(domains | set(other.domains_of(lab_dir.path))),
                                          network_name(lab_dir.name), owner=lab_dir.path)
    shutil.rmtree(lab_dir.path, ignore_errors=True)
    return removed


@dataclass(frozen=True)
class LabSummary:
    name: str
    machines: int
    states: dict[str, int]
    dir: Path


def list_labs(ctx: Context) -> Iterator[LabSummary]:

    names = ctx.home.names()
    if not names:
        return
    hv = ctx.hypervisor()
    for name in names:
        lab_dir = ctx.home.lab(name)
        statuses = lab_status(lab_dir, hv, ctx)
        yield LabSummary(name, len(statuses), dict(Counter(s.state for s in statuses)), lab_dir.path)
