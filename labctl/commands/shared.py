"""What every command shares: the options that pick a lab, the command's Context (built once,
closed by main), the reporter, JSON output, and the health checks both `up` and `status` ask."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from labctl.errors import LabctlError

if TYPE_CHECKING:  # each imported where used: a command loads only what it needs
    from labctl.catalog import Catalog
    from labctl.cloud.dayone import Outcome
    from labctl.context import Context
    from labctl.machine_status import MachineStatus
    from labctl.protocols import HypervisorPort, Reporter
    from labctl.state import LabDir, LabHome
    from labctl.ui import ConsoleReporter

F = TypeVar("F", bound=Callable[..., Any])


class Group(click.Group):
    """A click group whose command list shows each command's first sentence whole (wrapped, never
    cut off with `...`)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=300)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def labs_home() -> LabHome:
    from labctl.state import LabHome, labctl_home

    return LabHome(labctl_home())


JSON_FORMAT = 1  # of every command's --json; a change that breaks a reader raises it


def print_json(data: Mapping[str, object]) -> None:
    """A command's --json: one object, its first key the format's version (the same for every
    command), then the command's own keys."""
    import json

    click.echo(json.dumps({"format": JSON_FORMAT, **data}, indent=2))


JSON_HELP = "Print what was done, and the machines as they are now, as JSON."


def print_lab_json(lab_dir: LabDir, **done: object) -> None:
    """--json of a command that changed a lab: what it did, then the lab's machines as they are now
    (as `status --json` gives them)."""
    print_json({"lab": lab_dir.name, **done, "machines": [s.as_json() for s in lab_statuses(lab_dir)]})


def complete_lab(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of --lab: the labs there are."""
    try:
        return [n for n in labs_home().names() if n.startswith(incomplete)]
    except (OSError, LabctlError):
        return []


def complete_machine(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of MACHINE: the machines of the lab the words so far choose (-f, --lab, or
    ./lab.yaml, else the only lab). Never an error: a shell's Tab must not print one."""
    from labctl import records

    try:
        lab_dir = chosen_lab_dir(ctx.params.get("lab_file"), ctx.params.get("lab_name"))
        names = [m.name for m in records.read_lab(lab_dir).machines]
    except (OSError, ValueError, LabctlError):
        return []
    given = set(ctx.params.get("machines") or ())
    return [n for n in names if n.startswith(incomplete) and n not in given]


def lab_options(func: F) -> F:
    """-f/--file and --lab: the options of every command that acts on a lab."""
    func = click.option("--lab", "lab_name", metavar="NAME", help="Act on the lab with this name.",
                        shell_complete=complete_lab)(func)
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


YES_HELP = "Do not ask for confirmation (needed without a terminal)."


def confirmed(yes: bool, question: str, refusal: str, retry: str) -> None:
    """Ask before acting on every machine of a lab, or on what every lab shares. Without a terminal
    (a script, CI) there is no one to ask: refused unless -y was given, with the command that says it."""
    import sys

    if yes:
        return
    if not sys.stdin.isatty():
        raise LabctlError(f"refusing to {refusal} without confirmation", hint=retry)
    click.confirm(question, abort=True)


def command_hypervisor() -> HypervisorPort:
    """The libvirt host of this command (LABCTL_LIBVIRT_URI, else qemu:///system), connected."""
    return command_context().hypervisor()


def command_context() -> Context:
    """The command's context, built once (main() closes it)."""
    from labctl.context import Context

    obj = click.get_current_context().obj
    if obj is None or "context" not in obj:
        from labctl.host import default_uri
        from labctl.hosts.inventory import hosts_file
        from labctl.state import labctl_cache

        context = Context(labs_home(), labctl_cache(), default_uri(), hosts_file())
        if obj is None:
            return context
        obj["context"] = context
    found = obj["context"]
    assert isinstance(found, Context)  # set just above, or by an earlier call of this command
    return found


def chosen_lab_dir(lab_file: Path | None, lab_name: str | None) -> LabDir:
    from labctl.selection import LabRequest, resolve_lab_dir

    def catalog() -> Catalog:
        from labctl.catalog import default_catalog

        return default_catalog()

    return resolve_lab_dir(LabRequest(file=lab_file, lab=lab_name), labs_home(), catalog, Path.cwd())


def remote_words() -> list[str]:
    """The words after `--` (main() keeps them away from click, which would drop the `--`)."""
    obj = click.get_current_context().obj or {}
    return list(obj.get("remote", []))


def make_reporter(to_stderr: bool = False) -> ConsoleReporter:
    from labctl.ui import ConsoleReporter, make_console

    return ConsoleReporter(make_console(stderr=to_stderr))


MIRROR_HELP = "Debian mirror for building boxes (default: $LABCTL_DEBIAN_MIRROR or deb.debian.org)."


def debian_mirror(value: str | None) -> str:
    from labctl.boxbuild import DEFAULT_MIRROR

    return value or os.environ.get("LABCTL_DEBIAN_MIRROR") or DEFAULT_MIRROR


def ask_health(lab_dir: LabDir, ctx: Context, reporter: Reporter,
               statuses: Sequence[MachineStatus] | None = None) -> dict[str, list[Outcome]]:
    """The cloud of every machine that serves the APIs and has stacked, asked how it is."""
    from labctl.cloud.health import check_health, health_machines
    from labctl.machine_status import lab_status

    statuses = statuses if statuses is not None else lab_status(lab_dir, ctx.hypervisor(), ctx)
    names = health_machines(lab_dir, statuses)
    if names:
        reporter.step(f"asking the cloud in {', '.join(names)} how it is")
    return check_health(ctx.ssh(), lab_dir, statuses, names)


def health_failed(health: Mapping[str, Sequence[Outcome]] | None) -> bool:
    return health is not None and any(o.failed for outcomes in health.values() for o in outcomes)


def health_json(health: Mapping[str, Sequence[Outcome]]) -> dict[str, dict[str, dict[str, str]]]:
    return {m: {o.name: {"state": o.state, "detail": o.detail} for o in outcomes} for m, outcomes in health.items()}


def lab_statuses(lab_dir: LabDir) -> list[MachineStatus]:
    from labctl.machine_status import lab_status

    return lab_status(lab_dir, command_hypervisor(), command_context())
