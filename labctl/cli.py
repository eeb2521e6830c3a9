"""The command line: argv -> one use-case -> its result on screen.

The only place that catches LabctlError: it prints one line and a hint, and picks the exit code.
Anything else that escapes is a bug and surfaces as one (with --debug, its traceback).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from labctl import __version__
from labctl.errors import LabctlError, printable

F = TypeVar("F", bound=Callable[..., Any])


def _home() -> Any:
    from labctl.state import LabHome, labctl_home

    return LabHome(labctl_home())


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def lab_options(func: F) -> F:
    """-f/--file and --lab: the options of every command that acts on a lab."""
    func = click.option("--lab", "lab_name", metavar="NAME", help="Act on the lab with this name.")(func)
    func = click.option("-f", "--file", "lab_file", type=click.Path(path_type=Path, dir_okay=False),
                        help="The lab file (default: ./lab.yaml, else the only lab there is).")(func)
    return func


def distro_options(func: F) -> F:
    """--distro and its overrides: a one-machine lab without a lab file."""
    for decorator in reversed([
        click.option("--distro", metavar="D", help="A one-machine all-in-one lab on this distro"
                     " (debian, debian:12, ubuntu:24.04...; see `labctl boxes`)."),
        click.option("--name", metavar="NAME", help="With --distro: the lab's name (default: from the distro)."),
        click.option("--memory", metavar="SIZE", help="With --distro: memory, e.g. 8G (default 8G)."),
        click.option("--cpus", type=int, metavar="N", help="With --distro: vCPUs (default 4)."),
        click.option("--disk", metavar="SIZE", help="With --distro: disk size, e.g. 40G (default 40G)."),
    ]):
        func = decorator(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="labctl")
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
def cli(debug: bool) -> None:
    """labctl: DevStack labs on libvirt virtual machines.

    One developer VM: `labctl up --distro debian`. More machines (controller and computes, a
    classroom): describe them in a lab.yaml (`labctl init` writes one) and run `labctl plan`.
    """


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON.")
def boxes(as_json: bool) -> None:
    """List the distros and releases labctl can build labs on."""
    from labctl.catalog import MASTER, default_catalog

    catalog = default_catalog()
    if as_json:
        _print_json([{
            "distro": r.ref, "family": r.family, "version": r.version, "codename": r.codename,
            "default": r.version == next(f.default for f in catalog.families if f.name == r.family),
            "box": r.box, "user": r.user, "package_family": r.package_family,
            "min_memory_mb": r.min_memory_mb, "min_disk_gb": r.min_disk_gb,
            "devstack_distro": r.devstack_distro, "devstack_branches": list(r.devstack_branches),
            "local_build": r.local_build, "note": r.note,
        } for r in catalog.releases()])
        return
    from labctl.ui import make_console, print_boxes

    print_boxes(make_console(), catalog, MASTER)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False), default="lab.yaml")
@click.option("--name", default="mylab", show_default=True, help="The lab's name.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: Path, name: str, force: bool) -> None:
    """Write a commented example lab.yaml to PATH (default ./lab.yaml)."""
    from labctl.lab import init_lab_file

    written = init_lab_file(path, name, force)
    click.echo(f"Wrote {written}. Edit it, then run `labctl plan -f {written}`.")


@cli.command()
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

    home = _home()
    req = LabRequest(file=lab_file, lab=lab_name, distro=distro, name=name, memory=memory,
                     cpus=cpus, disk=disk)
    lab, generated = resolve_lab(req, home, default_catalog(), Path.cwd())
    spread = _spread(lab)  # refuses a lab the hosts cannot hold, before any file is written
    placement = spread.placement
    with home.writer(lab.name, "plan"):
        result = plan_lab(spread.lab, home, read_host(), generated, routes=spread.routes)
    fit = _class_fit(result.lab) if placement is None else None
    if as_json:
        data = result.as_json()
        if fit is not None:
            data["classroom"]["fit"] = {"seats": fit.seats, "fitting": fit.fitting, "fits": fit.fits,
                                        "arithmetic": fit.lines()}
        if placement is not None:
            data["placement"] = {"hosts": placement.hosts, "arithmetic": placement.lines()}
        _print_json(data)
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


def _spread(lab: Any) -> Any:
    """The lab's machines on the inventory's hosts (by free memory, pins and existing machines kept);
    without an inventory, all on this machine, and libvirt is not asked (plan creates nothing)."""
    from labctl.hosts.spread import spread_existing, spread_lab

    ctx = _context()
    return spread_existing(lab, ctx) if ctx.has_inventory() else spread_lab(lab, ctx, {}, ())


def _class_fit(lab: Any) -> Any:
    """A classroom's arithmetic against this host's free memory and disk; None without a classroom,
    or when libvirt cannot be asked (plan creates nothing and needs no libvirt)."""
    if lab.classroom is None:
        return None
    from labctl.lifecycle import class_fit

    try:
        return class_fit(lab, _hypervisor().capacity())
    except LabctlError:
        return None


def _hypervisor() -> Any:
    """The libvirt host of this command (LABCTL_LIBVIRT_URI, else qemu:///system), connected."""
    return _context().hypervisor()


def _context() -> Any:
    """The command's context, built once (main() closes it)."""
    obj = click.get_current_context().obj
    if obj is None or "context" not in obj:
        from labctl.context import Context
        from labctl.hosts.inventory import hosts_file
        from labctl.hypervisor import default_uri
        from labctl.state import labctl_cache

        context = Context(_home(), labctl_cache(), default_uri(), hosts_file())
        if obj is None:
            return context
        obj["context"] = context
    return obj["context"]


def _lab_dir(lab_file: Path | None, lab_name: str | None) -> Any:
    from labctl.selection import LabRequest, resolve_lab_dir

    def catalog() -> Any:
        from labctl.catalog import default_catalog

        return default_catalog()

    return resolve_lab_dir(LabRequest(file=lab_file, lab=lab_name), _home(), catalog, Path.cwd())


def _remote_words() -> list[str]:
    """The words after `--` (main() keeps them away from click, which would drop the `--`)."""
    obj = click.get_current_context().obj or {}
    return list(obj.get("remote", []))


def _reporter(to_stderr: bool = False) -> Any:
    from labctl.ui import ConsoleReporter, make_console

    return ConsoleReporter(make_console(stderr=to_stderr))


MIRROR_HELP = "Debian mirror for building boxes (default: $LABCTL_DEBIAN_MIRROR or deb.debian.org)."


def _mirror(value: str | None) -> str:
    from labctl.boxbuild import DEFAULT_MIRROR

    return value or os.environ.get("LABCTL_DEBIAN_MIRROR") or DEFAULT_MIRROR


@cli.command()
@lab_options
@distro_options
@click.option("--mirror", metavar="URL", help=MIRROR_HELP)
@click.option("--no-stack", is_flag=True, help="Only bring the machines up; do not run DevStack.")
@click.option("--json", "as_json", is_flag=True, help="Print the machines (and DevStack results) as JSON at the"
              " end; progress goes to stderr.")
def up(lab_file: Path | None, lab_name: str | None, distro: str | None, name: str | None,
       memory: str | None, cpus: int | None, disk: str | None, mirror: str | None, no_stack: bool,
       as_json: bool) -> int:
    """Create and start the lab's machines, then run DevStack on them.

    Checks the host first (vagrant-libvirt, libvirtd, accelerator, free memory and disk, boxes) and
    creates nothing when something is missing. Running it again only does what is missing: machines
    not running, DevStack not stacked. Exits 1 if DevStack failed on any machine.
    """
    from labctl.catalog import default_catalog
    from labctl.host import read_host
    from labctl.lab import resolve_lab
    from labctl.lifecycle import fencer, host_caches, up_lab
    from labctl.selection import LabRequest

    ctx = _context()
    req = LabRequest(file=lab_file, lab=lab_name, distro=distro, name=name, memory=memory, cpus=cpus, disk=disk)
    lab, generated = resolve_lab(req, ctx.home, default_catalog(), Path.cwd())
    reporter = _reporter(as_json)
    with ctx.home.writer(lab.name, "up"):
        started: list[Any] = []  # the host's caches, once the checks passed and before anything is made
        plan, statuses = up_lab(lab, generated, ctx, read_host(), reporter, _mirror(mirror),
                                before_create=lambda: started.append(host_caches(lab, ctx, reporter)))
        caches = started[0] if started else None
        run = None
        if not no_stack:
            from labctl.classroom.clone import stack_classroom
            from labctl.snapshots import take_stacked

            lab_dir = ctx.home.lab(plan.lab.name)
            run = stack_classroom(plan.lab, lab_dir, statuses, reporter, ctx.hypervisor(), cache=ctx.cache,
                                  snapshot=take_stacked(lab_dir, ctx.uri_of(lab_dir)), caches=caches,
                                  fence=fencer(plan.lab, ctx))
        health = None if no_stack else _ask_health(ctx.home.lab(plan.lab.name), ctx, reporter)
    return _show_up(plan, statuses, run, health, as_json)


def _ask_health(lab_dir: Any, ctx: Any, reporter: Any, statuses: Any = None) -> Any:
    """The cloud of every machine that serves the APIs and has stacked, asked how it is."""
    from labctl.cloud.health import check_health, health_machines
    from labctl.inventory import lab_status

    statuses = statuses if statuses is not None else lab_status(lab_dir, ctx.hypervisor(), ctx)
    names = health_machines(lab_dir, statuses)
    if names:
        reporter.step(f"asking the cloud in {', '.join(names)} how it is")
    return check_health(lab_dir, statuses, names)


def _health_failed(health: Any) -> bool:
    return bool(health) and any(o.failed for outcomes in health.values() for o in outcomes)


def _health_json(health: Any) -> Any:
    return {m: {o.name: {"state": o.state, "detail": o.detail} for o in outcomes} for m, outcomes in health.items()}


def _show_up(plan: Any, statuses: Any, run: Any, health: Any, as_json: bool) -> int:

    results = run.results if run else {}
    if as_json:
        _print_json({"lab": plan.lab.name, "dir": str(plan.dir), "machines": [s.as_json() for s in statuses],
                     "devstack": _results_json(results, run), "health": _health_json(health or {})})
    else:
        from labctl.ui import make_console, print_health, print_ready, print_stack_summary

        console = make_console()
        print_ready(console, plan.lab.name, statuses)
        if run:
            print_stack_summary(console, plan.lab.name, results, run.discovery)
        if health:
            print_health(console, plan.lab.name, health)
    return 1 if (run and (run.failed or run.problems)) or _health_failed(health) else 0


def _results_json(results: Any, run: Any) -> dict[str, Any]:
    return {"machines": {n: {"status": r.status, "seconds": round(r.seconds), "phase": r.phase,
                             "message": r.message, "dashboard": r.dashboard, "keystone": r.keystone,
                             "phases": [{"phase": p, "seconds": s} for p, s in r.phases],
                             "problems": r.problems}
                         for n, r in results.items()},
            "discover_hosts": run.discovery if run else None}


@cli.command()
@lab_options
@click.option("--all", "everything", is_flag=True, help="Stack every machine, even those that stacked fine.")
@click.option("--clean", is_flag=True, help="Run DevStack's unstack.sh and clean.sh first.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (progress goes to stderr).")
@click.argument("machines", nargs=-1)
def stack(lab_file: Path | None, lab_name: str | None, everything: bool, clean: bool, as_json: bool,
          machines: tuple[str, ...]) -> int:
    """Run DevStack on a running lab: the machines whose last run failed or never ran
    (MACHINE... or --all for others). Exits 1 if any machine failed."""
    from labctl.catalog import default_catalog
    from labctl.classroom.clone import stack_classroom
    from labctl.host import read_host
    from labctl.inventory import lab_status
    from labctl.lab import plan_lab, resolve_lab
    from labctl.lifecycle import fencer, host_caches
    from labctl.selection import LabRequest
    from labctl.snapshots import take_stacked

    ctx = _context()
    lab_dir = _lab_dir(lab_file, lab_name)
    lab, _ = resolve_lab(LabRequest(lab=lab_dir.name), ctx.home, default_catalog(), Path.cwd())
    reporter = _reporter(as_json)
    with ctx.home.writer(lab.name, "stack"):
        # local.conf follows the lab's current lab.yaml and fragments: edit them, then retry.
        spread = _spread(lab)  # machines stay on the hosts they live on
        plan = plan_lab(spread.lab, ctx.home, read_host(), routes=spread.routes)
        run = stack_classroom(plan.lab, lab_dir, lab_status(lab_dir, ctx.hypervisor(), ctx), reporter,
                              ctx.hypervisor(), names=machines, everything=everything, clean=clean, cache=ctx.cache,
                              snapshot=take_stacked(lab_dir, ctx.uri_of(lab_dir)),
                              caches=host_caches(plan.lab, ctx, reporter), fence=fencer(plan.lab, ctx))
    if run is None:
        reporter.step("every machine has stacked already (labctl stack --all runs them again)")
        return 0
    results = run.results
    if as_json:
        _print_json(_results_json(results, run))
    else:
        from labctl.ui import make_console, print_stack_summary

        print_stack_summary(make_console(), lab_dir.name, results, run.discovery)
    return 1 if run.failed or run.problems else 0


@cli.command()
@lab_options
@click.option("--follow", "-F", is_flag=True, help="Keep printing what is added, until Ctrl-C.")
@click.argument("machine")
def logs(lab_file: Path | None, lab_name: str | None, follow: bool, machine: str) -> None:
    """Show MACHINE's DevStack log (stack.sh's whole output, passwords masked)."""
    import time

    lab_dir = _lab_dir(lab_file, lab_name)
    from labctl.records import read_lab

    names = read_lab(lab_dir).machine_names
    if machine not in names:
        raise LabctlError(f"no machine named {machine!r} in lab {lab_dir.name!r} (machines: {', '.join(names)})",
                          hint="labctl status lists the machines")
    path = lab_dir.stack_log(machine)
    if not path.exists() and not follow:
        raise LabctlError(f"{machine} has no DevStack log yet", hint=f"labctl stack --lab {lab_dir.name}")
    offset = 0
    try:
        while True:
            if path.exists():
                if path.stat().st_size < offset:
                    offset = 0  # a new run rotated the log
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
                offset += len(data)
                sys.stdout.write(data.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            if not follow:
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


@cli.command()
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print the credentials as JSON (the password included).")
@click.argument("machine", required=False)
def creds(lab_file: Path | None, lab_name: str | None, as_json: bool, machine: str | None) -> None:
    """Print the lab's admin credentials and an openrc (for MACHINE, or the first API machine).

    The only command that prints the lab's password."""
    from labctl.stacking import credentials, openrc

    lab_dir = _lab_dir(lab_file, lab_name)
    data = credentials(lab_dir)
    if as_json:
        _print_json(data)
        return
    apis = list(data["machines"])
    target = machine or (apis[0] if apis else "")
    if target not in data["machines"]:
        raise LabctlError(f"no machine running Keystone named {target!r} (machines: {', '.join(apis)})",
                          hint="name the controller or an all-in-one machine")
    password = data["machines"][target]["password"]
    click.echo(f"User: {data['username']}   Password: {password}   Project: {data['project']}"
               + (f"   (the password of {target})" if password != data["password"] else ""))
    for name, m in data["machines"].items():
        note = "" if m["stacked"] else "   (not stacked yet)"
        dashboard = f"dashboard {m['dashboard']}   " if m["dashboard"] else ""
        click.echo(f"{name}: {dashboard}keystone {m['auth_url']}{note}")
    click.echo(f"\n# openrc for {target} (labctl creds {target} --lab {lab_dir.name} | grep ^export > openrc)")
    click.echo(openrc(data, target), nl=False)


@cli.command()
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print the machines as JSON.")
@click.option("--health", is_flag=True, help="Also ask the cloud in each stacked machine how it is: Keystone,"
              " and Nova's services, Neutron's agents and Glance where DevStack runs them.")
def status(lab_file: Path | None, lab_name: str | None, as_json: bool, health: bool) -> int:
    """Show each machine's state, addresses, memory, vCPUs and uptime (read from libvirt), and its
    DevStack as labctl last saw it (stacked, failed, stacking, interrupted). With --health, also ask
    the cloud in each stacked machine how it is (exits 1 if a check failed)."""
    from labctl.inventory import lab_status

    lab_dir = _lab_dir(lab_file, lab_name)
    ctx = _context()
    statuses = lab_status(lab_dir, ctx.hypervisor(), ctx)
    checks = _ask_health(lab_dir, ctx, _reporter(to_stderr=True), statuses) if health else None
    if as_json:
        _print_json({"lab": lab_dir.name, "machines": [s.as_json() for s in statuses],
                     **({"health": _health_json(checks)} if checks is not None else {})})
    else:
        from labctl.ui import make_console, print_health, print_status

        console = make_console()
        print_status(console, lab_dir.name, statuses)
        if checks:
            print_health(console, lab_dir.name, checks)
        elif checks is not None:
            console.print("No machine has stacked yet: no cloud to ask.", markup=False)
    return 1 if _health_failed(checks) else 0


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the labs as JSON.")
def list_(as_json: bool) -> None:
    """List all labs and the states of their machines."""
    from labctl.lifecycle import list_labs

    labs = list(list_labs(_context()))
    if as_json:
        _print_json([{"lab": lab.name, "machines": lab.machines, "states": lab.states, "dir": str(lab.dir)}
                     for lab in labs])
        return
    from labctl.ui import make_console, print_labs

    if labs:
        print_labs(make_console(), labs)
    else:
        click.echo("No labs yet: labctl up --distro debian creates one.")


@cli.command()
@lab_options
@click.argument("machines", nargs=-1)
def halt(lab_file: Path | None, lab_name: str | None, machines: tuple[str, ...]) -> None:
    """Shut machines down cleanly (all of the lab's when none is named)."""
    from labctl.lifecycle import halt_lab

    reporter = _reporter()
    lab_dir = _lab_dir(lab_file, lab_name)
    with _home().writer(lab_dir.name, "halt"):
        forced = halt_lab(lab_dir, _context(), machines, reporter)
    if forced:
        reporter.warn(f"powered off without a clean shutdown: {', '.join(forced)}")


@cli.command()
@lab_options
@click.argument("machines", nargs=-1)
def resume(lab_file: Path | None, lab_name: str | None, machines: tuple[str, ...]) -> None:
    """Start halted machines again (all of the lab's when none is named)."""
    from labctl.lifecycle import resume_lab

    lab_dir = _lab_dir(lab_file, lab_name)
    with _home().writer(lab_dir.name, "resume"):
        resume_lab(lab_dir, _context(), machines, _reporter())


@cli.command()
@lab_options
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def destroy(lab_file: Path | None, lab_name: str | None, yes: bool) -> None:
    """Delete the lab: its machines, disks, network and folder (passwords and logs included)."""
    from labctl.errors import LabNotFound
    from labctl.lifecycle import destroy_lab

    try:
        lab_dir = _lab_dir(lab_file, lab_name)
    except LabNotFound:
        # Its folder is gone but machines of it may remain: libvirt still knows where they came from.

        lab_dir = _home().lab(lab_name) if lab_name else None
        if lab_dir is None or not _hypervisor().domains_of(lab_dir.path):
            raise
    if not yes:
        if not sys.stdin.isatty():
            raise LabctlError(f"refusing to destroy lab {lab_dir.name!r} without confirmation",
                              hint=f"labctl destroy -y --lab {lab_dir.name}")
        click.confirm(f"Destroy lab {lab_dir.name!r} and everything in {lab_dir.path}?", abort=True)
    reporter = _reporter()
    with _home().writer(lab_dir.name, "destroy"):
        removed = destroy_lab(lab_dir, _context(), reporter)
    reporter.step(f"lab {lab_dir.name} destroyed ({len(removed)} libvirt object(s) removed after vagrant)")


def _statuses(lab_dir: Any) -> Any:
    from labctl.inventory import lab_status

    return lab_status(lab_dir, _hypervisor(), _context())


@cli.command()
@lab_options
@click.argument("machine")
def ssh(lab_file: Path | None, lab_name: str | None, machine: str) -> None:
    """Open a shell on MACHINE, or run a command: labctl ssh MACHINE -- CMD."""
    from labctl.inventory import pick_machines
    from labctl.lifecycle import ssh_argv

    lab_dir = _lab_dir(lab_file, lab_name)
    (status,) = pick_machines(_statuses(lab_dir), [machine], False)
    argv = ssh_argv(lab_dir, status, _remote_words())
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # noqa: S606 - an argv list; ssh takes over the terminal


@cli.command(name="ssh-config")
@lab_options
def ssh_config(lab_file: Path | None, lab_name: str | None) -> None:
    """Print an OpenSSH config block for every machine (for ssh -F, scp, rsync, editors)."""
    from labctl.lifecycle import ssh_config as render

    lab_dir = _lab_dir(lab_file, lab_name)
    click.echo(render(lab_dir, _statuses(lab_dir)), nl=False)


@cli.command(name="exec")
@lab_options
@click.option("--all", "everything", is_flag=True, help="Run on every machine of the lab.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Give up on a machine after this long.")
@click.option("--json", "as_json", is_flag=True, help="Print each machine's exit code and output as JSON.")
@click.argument("machines", nargs=-1)
def exec_(lab_file: Path | None, lab_name: str | None, everything: bool, timeout: float | None, as_json: bool,
          machines: tuple[str, ...]) -> int:
    """Run a command on several machines at once: labctl exec (MACHINE... | --all) -- CMD.

    Exits non-zero if the command failed (or could not run) on any machine.
    """
    from labctl.inventory import pick_machines
    from labctl.lifecycle import exec_on

    command = _remote_words()
    if not command:
        raise LabctlError("no command given", hint="labctl exec --all -- hostname")
    lab_dir = _lab_dir(lab_file, lab_name)
    targets = pick_machines(_statuses(lab_dir), machines, everything)
    results = exec_on(lab_dir, targets, command, timeout)
    if as_json:
        _print_json({name: {"exit_code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "error": r.error}
                     for name, r in results.items()})
    else:
        for name, r in results.items():
            code = f"exit {r.exit_code}" if r.exit_code is not None else "did not run"
            click.echo(f"--- {name}: {code}" + (f" ({r.error})" if r.error else ""))
            if r.stdout:
                click.echo(r.stdout, nl=not r.stdout.endswith("\n"))
            if r.stderr:
                click.echo(r.stderr, err=True, nl=not r.stderr.endswith("\n"))
    failed = [name for name, r in results.items() if not r.ok]
    if failed and not as_json:
        click.echo(f"failed on: {', '.join(failed)}", err=True)
    return 1 if failed else 0


@cli.group()
def box() -> None:
    """Build and list Vagrant boxes."""


@box.command(name="build")
@click.argument("distro")
@click.option("--mirror", metavar="URL", help=MIRROR_HELP)
def box_build(distro: str, mirror: str | None) -> None:
    """Build a box of DISTRO from its packages (offline from box registries) and add it to Vagrant."""
    from labctl.catalog import default_catalog
    from labctl.lifecycle import build_box_command, cache_driver

    ctx = _context()
    reporter = _reporter()
    name, path = build_box_command(distro, ctx, cache_driver(ctx), reporter, _mirror(mirror), default_catalog())
    reporter.step(f"box {name} is ready (file: {path})")


@box.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the boxes as JSON.")
def box_list(as_json: bool) -> None:
    """List the boxes Vagrant has on this host."""
    from labctl.lifecycle import cache_driver

    boxes = cache_driver(_context()).box_list()
    if as_json:
        _print_json([{"name": n, "provider": p, "version": v} for n, p, v in boxes])
        return
    for n, p, v in boxes:
        click.echo(f"{n:40} {p:10} {v}")
    if not boxes:
        click.echo("No boxes yet: labctl box build debian makes one.")


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every `finally` and cleanup runs, as for Ctrl-C."""


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("LABCTL_DEBUG"))
    remote: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, remote = args[:cut], args[cut + 1:]
    obj: dict[str, Any] = {"remote": remote}
    try:
        result = cli.main(args=args, prog_name="labctl", standalone_mode=False, obj=obj)
    except LabctlError as exc:
        click.echo(f"labctl: error: {printable(exc.message)}", err=True)
        if exc.hint:
            click.echo(f"  hint: {printable(exc.hint)}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("labctl: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("labctl: interrupted; what finished is kept, run the command again to go on", err=True)
        return 130
    except _Terminated:
        click.echo("labctl: terminated; what finished is kept, run the command again to go on", err=True)
        return 143
    except Exception as exc:
        if type(exc).__module__ == "libvirt" and not debug:
            # The Hypervisor adapter turns libvirt's errors into labctl's; one that escaped it still
            # means libvirtd went away (or failed) mid-command: say so, with how to start it.
            from labctl.hypervisor import start_hint

            click.echo(f"labctl: error: libvirt failed during the command: {exc}", err=True)
            click.echo(f"  hint: is libvirtd still running? {start_hint()}; then run the command again", err=True)
            return 1
        if debug:
            raise
        import traceback

        from labctl.state import labctl_home

        try:
            log = labctl_home() / "crash.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc())
            where = f" (traceback in {log})"
        except (OSError, LabctlError):
            where = ""
        click.echo(f"labctl: internal error: {sys.exc_info()[1]!r}{where}", err=True)
        click.echo("  hint: this is a bug in labctl; rerun with --debug and report it", err=True)
        return 1
    finally:
        if "context" in obj:
            obj["context"].close()
    return result if isinstance(result, int) else 0


from labctl import cli_cache, cli_classroom, cli_cloud, cli_hosts  # noqa: E402,F401 - register their commands on the group
