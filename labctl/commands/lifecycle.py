"""A lab's life: plan, up, stack, halt, resume, destroy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from labctl.commands.shared import (
    JSON_HELP,
    MIRROR_HELP,
    YES_HELP,
    ask_health,
    chosen_lab_dir,
    command_context,
    command_hypervisor,
    complete_machine,
    confirmed,
    debian_mirror,
    distro_options,
    health_failed,
    health_json,
    lab_options,
    labs_home,
    make_reporter,
    print_json,
    print_lab_json,
)
from labctl.errors import LabctlError

if TYPE_CHECKING:  # each imported where used: `labctl plan` loads no stacking, `destroy` no model
    from labctl.cache.services import Endpoints
    from labctl.classroom.seats import ClassFit
    from labctl.cloud.dayone import Outcome
    from labctl.hosts.spread import Spread
    from labctl.lab import Plan
    from labctl.machine_status import MachineStatus
    from labctl.model import Lab
    from labctl.provision import StackResult
    from labctl.stacking import StackRun


@click.command()
@lab_options
@distro_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(lab_file: Path | None, lab_name: str | None, distro: str | None, name: str | None,
         memory: str | None, cpus: int | None, disk: str | None, as_json: bool) -> None:
    """Check a lab, write its Vagrantfile and local.conf files, and show what it will build.

    Creates nothing but files in the lab's folder under $LABCTL_HOME.
    """
    from labctl.catalog import default_catalog
    from labctl.host import read_host
    from labctl.lab import plan_lab, resolve_lab
    from labctl.selection import LabRequest

    home = labs_home()
    req = LabRequest(file=lab_file, lab=lab_name, distro=distro, name=name, memory=memory,
                     cpus=cpus, disk=disk)
    lab, generated = resolve_lab(req, home, default_catalog(), Path.cwd())
    spread = _spread(lab)  # refuses a lab the hosts cannot hold, before any file is written
    placement = spread.placement
    with home.writer(lab.name, "plan"):
        result = plan_lab(spread.lab, home, read_host(), generated, routes=spread.routes)
    fit, refusal = _fit(result.lab) if placement is None else (None, None)
    if as_json:
        data = result.as_json()
        if fit is not None and isinstance(classroom := data["classroom"], dict):
            classroom["fit"] = {"seats": fit.seats, "fitting": fit.fitting, "fits": fit.fits,
                                "arithmetic": fit.lines()}
        if placement is not None:
            data["placement"] = {"hosts": placement.hosts, "arithmetic": placement.lines()}
        data["fits"] = refusal is None
        print_json(data)
        if refusal is not None:
            raise refusal
        return
    from labctl.ui import make_console, print_plan

    console = make_console()
    print_plan(console, result)
    if placement is not None:
        for i, line in enumerate(placement.lines()):
            console.print(("Hosts: " if i == 0 else "       ") + line, markup=False, highlight=False)
    if fit is not None:
        for line in fit.lines():
            console.print(("Class: " if line.startswith("memory") else "       ") + line,
                          style=None if fit.fits else "yellow", markup=False, highlight=False)
    if refusal is not None:  # the files are written (plan's job); `up` would refuse: so does plan's exit code
        raise refusal


def _spread(lab: Lab) -> Spread:
    """The lab's machines on the inventory's hosts (by free memory, pins and existing machines kept);
    without an inventory, all on this machine, and libvirt is not asked (plan creates nothing)."""
    from labctl.hosts.spread import spread_existing, spread_lab

    ctx = command_context()
    return spread_existing(lab, ctx) if ctx.has_inventory() else spread_lab(lab, ctx, {}, ())


def _fit(lab: Lab) -> tuple[ClassFit | None, LabctlError | None]:
    """Whether the lab fits this host, as `up` will judge it (a classroom: with its arithmetic);
    (None, None) when libvirt cannot be asked (plan creates nothing and needs no libvirt)."""
    from labctl.lifecycle import plan_fit

    try:
        return plan_fit(lab, command_hypervisor())
    except LabctlError:
        return None, None


@click.command()
@lab_options
@distro_options
@click.option("--mirror", metavar="URL", help=MIRROR_HELP)
@click.option("--no-stack", is_flag=True, help="Only bring the machines up; do not run DevStack.")
@click.option("--fresh", is_flag=True, help="Run stack.sh even when a stacked image of the same stack is kept"
              " (labctl images); its disk is kept anew.")
@click.option("--json", "as_json", is_flag=True, help="Print the machines (and DevStack results) as JSON at the"
              " end; progress goes to stderr.")
def up(lab_file: Path | None, lab_name: str | None, distro: str | None, name: str | None,
       memory: str | None, cpus: int | None, disk: str | None, mirror: str | None, no_stack: bool,
       fresh: bool, as_json: bool) -> int:
    """Create and start the lab's machines, then run DevStack on them.

    Checks the host first (vagrant-libvirt, libvirtd, accelerator, free memory and disk, boxes) and
    creates nothing when something is missing. Running it again only does what is missing: machines
    not running, DevStack not stacked. Exits 1 if DevStack failed on any machine.

    A lab of one machine starts from a stacked image of the same stack when the host keeps one (box,
    DevStack, every repository's commit, local.conf less addresses and passwords), in minutes; else
    stack.sh runs and its disk is kept as one (labctl images).
    """
    from labctl.catalog import default_catalog
    from labctl.fencing import fencer
    from labctl.host import read_host
    from labctl.hosts.services import host_caches, relayer
    from labctl.images.store import ImageStore
    from labctl.lab import resolve_lab
    from labctl.lifecycle import up_lab
    from labctl.machine_status import lab_status
    from labctl.selection import LabRequest

    ctx = command_context()
    req = LabRequest(file=lab_file, lab=lab_name, distro=distro, name=name, memory=memory, cpus=cpus, disk=disk)
    lab, generated = resolve_lab(req, ctx.home, default_catalog(), Path.cwd())
    reporter = make_reporter(as_json)
    with ctx.home.writer(lab.name, "up"):
        started: list[Endpoints | None] = []  # the host's caches, once the checks passed and before anything is made
        straight: set[str] = set()  # machines created on a stacked image (no box)
        plan, statuses = up_lab(lab, generated, ctx, read_host(), reporter, debian_mirror(mirror),
                                lambda placed: started.append(host_caches(placed, ctx, reporter)),
                                None if (fresh or no_stack) else ImageStore(ctx.home.images_dir), straight)
        caches = started[0] if started else None
        run = None
        if not no_stack:
            from labctl import stacking
            from labctl.snapshots import take_stacked

            lab_dir = ctx.home.lab(plan.lab.name)
            request = stacking.StackRequest(cache=ctx.cache, caches=caches, fence=fencer(plan.lab, ctx),
                                            snapshot=take_stacked(lab_dir, ctx.connect_for(lab_dir)),
                                            relay=relayer(ctx, lab_dir), hosts=ctx, fresh=fresh,
                                            images=ImageStore(ctx.home.images_dir), straight=frozenset(straight))
            run = stacking.stack(plan.lab, lab_dir, statuses, reporter, ctx.hypervisor(), ctx.ssh(), request)
        # The machines as they are now, not as they booted: stacking shuts some down (a class's seats
        # wait for seat-01) and records each DevStack's result; uptimes have moved on.
        statuses = lab_status(ctx.home.lab(plan.lab.name), ctx.hypervisor(), ctx)
        health = None if no_stack else ask_health(ctx.home.lab(plan.lab.name), ctx, reporter)
    return _show_up(plan, statuses, run, health, as_json)


def _show_up(plan: Plan, statuses: Sequence[MachineStatus], run: StackRun | None,
             health: Mapping[str, Sequence[Outcome]] | None, as_json: bool) -> int:
    results = run.results if run else {}
    if as_json:
        print_json({"lab": plan.lab.name, "dir": str(plan.dir), "machines": [s.as_json() for s in statuses],
                     "devstack": _results_json(results, run), "health": health_json(health or {})})
    else:
        from labctl.ui import make_console, print_health, print_stack_summary
        from labctl.ui_status import print_ready

        console = make_console()
        print_ready(console, plan.lab.name, statuses)
        if run:
            print_stack_summary(console, plan.lab.name, results, run.discovery)
        if health:
            print_health(console, plan.lab.name, health, {s.name: s.host for s in statuses})
    return 1 if (run and (run.failed or run.problems)) or health_failed(health) else 0


def _results_json(results: Mapping[str, StackResult], run: StackRun | None) -> dict[str, object]:
    return {"machines": {n: {"status": r.status, "seconds": round(r.seconds), "phase": r.phase,
                             "message": r.message, "dashboard": r.dashboard, "keystone": r.keystone,
                             "phases": [{"phase": p, "seconds": s} for p, s in r.phases],
                             "problems": r.problems}
                         for n, r in results.items()},
            "discover_hosts": run.discovery if run else None}


@click.command()
@lab_options
@click.option("--all", "everything", is_flag=True, help="Stack every machine, even those that stacked fine.")
@click.option("--clean", is_flag=True, help="Run DevStack's unstack.sh and clean.sh first.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (progress goes to stderr).")
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def stack(lab_file: Path | None, lab_name: str | None, everything: bool, clean: bool, as_json: bool,
          machines: tuple[str, ...]) -> int:
    """Run DevStack on a running lab: the machines whose last run failed or never ran
    (MACHINE... or --all for others). Exits 1 if any machine failed."""
    from labctl import stacking
    from labctl.catalog import default_catalog
    from labctl.fencing import fencer
    from labctl.host import read_host
    from labctl.hosts.services import host_caches, relayer
    from labctl.lab import plan_lab, resolve_lab
    from labctl.machine_status import lab_status
    from labctl.selection import LabRequest
    from labctl.snapshots import take_stacked

    ctx = command_context()
    lab_dir = chosen_lab_dir(lab_file, lab_name)
    lab, _ = resolve_lab(LabRequest(lab=lab_dir.name), ctx.home, default_catalog(), Path.cwd())
    reporter = make_reporter(as_json)
    with ctx.home.writer(lab.name, "stack"):
        # local.conf follows the lab's current lab.yaml and fragments: edit them, then retry.
        spread = _spread(lab)  # machines stay on the hosts they live on
        plan = plan_lab(spread.lab, ctx.home, read_host(), routes=spread.routes)
        request = stacking.StackRequest(names=machines, everything=everything, clean=clean, cache=ctx.cache,
                                        caches=host_caches(plan.lab, ctx, reporter), fence=fencer(plan.lab, ctx),
                                        snapshot=take_stacked(lab_dir, ctx.connect_for(lab_dir)),
                                        relay=relayer(ctx, lab_dir), hosts=ctx)
        run = stacking.stack(plan.lab, lab_dir, lab_status(lab_dir, ctx.hypervisor(), ctx), reporter, ctx.hypervisor(),
                             ctx.ssh(), request)
    if run is None:
        reporter.step("every machine has stacked already (labctl stack --all runs them again)")
        return 0
    results = run.results
    if as_json:
        print_json(_results_json(results, run))
    else:
        from labctl.ui import make_console, print_stack_summary

        print_stack_summary(make_console(), lab_dir.name, results, run.discovery)
    return 1 if run.failed or run.problems else 0


@click.command()
@lab_options
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def halt(lab_file: Path | None, lab_name: str | None, as_json: bool, machines: tuple[str, ...]) -> None:
    """Shut machines down cleanly (all of the lab's when none is named)."""
    from labctl.lifecycle import halt_lab

    reporter = make_reporter(as_json)
    lab_dir = chosen_lab_dir(lab_file, lab_name)
    with labs_home().writer(lab_dir.name, "halt"):
        forced = halt_lab(lab_dir, command_context(), machines, reporter)
    if forced:
        reporter.warn(f"powered off without a clean shutdown: {', '.join(forced)}")
    if as_json:
        print_lab_json(lab_dir, forced=forced)


@click.command()
@lab_options
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def resume(lab_file: Path | None, lab_name: str | None, as_json: bool, machines: tuple[str, ...]) -> None:
    """Start halted machines again (all of the lab's when none is named)."""
    from labctl.lifecycle import resume_lab

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    with labs_home().writer(lab_dir.name, "resume"):
        resume_lab(lab_dir, command_context(), machines, make_reporter(as_json))
    if as_json:
        print_lab_json(lab_dir)


@click.command()
@lab_options
@click.option("-y", "--yes", is_flag=True, help=YES_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
def destroy(lab_file: Path | None, lab_name: str | None, yes: bool, as_json: bool) -> None:
    """Delete the lab: its machines, disks, network and folder (passwords and logs included)."""
    from labctl.errors import LabNotFound
    from labctl.lifecycle import destroy_lab

    try:
        lab_dir = chosen_lab_dir(lab_file, lab_name)
    except LabNotFound:
        # Its folder is gone but machines of it may remain: libvirt still knows where they came from.

        if not lab_name or not command_hypervisor().domains_of(labs_home().lab(lab_name).path):
            raise
        lab_dir = labs_home().lab(lab_name)
    confirmed(yes, f"Destroy lab {lab_dir.name!r} and everything in {lab_dir.path}?",
              f"destroy lab {lab_dir.name!r}", f"labctl destroy -y --lab {lab_dir.name}")
    reporter = make_reporter(as_json)
    with labs_home().writer(lab_dir.name, "destroy"):
        removed = destroy_lab(lab_dir, command_context(), reporter)
    reporter.step(f"lab {lab_dir.name} destroyed ({len(removed)} libvirt object(s) removed after vagrant)")
    if as_json:
        print_json({"lab": lab_dir.name, "destroyed": True, "removed_after_vagrant": list(removed)})


@click.command()
@click.argument("lab")
def forget(lab: str) -> None:
    """Forget LAB, a lab with no machines (tried with `plan` once, or whose lab.yaml is gone): its
    folder under $LABCTL_HOME goes. A lab with machines is refused: `labctl destroy` removes them."""
    from labctl.lifecycle import forget_lab
    from labctl.selection import existing_lab

    lab_dir = existing_lab(labs_home(), lab)
    with labs_home().writer(lab_dir.name, "forget"):
        forget_lab(lab_dir, command_hypervisor())
    click.echo(f"forgot lab {lab_dir.name} (it had no machines)")
