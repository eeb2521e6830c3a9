"""The commands of the classroom and of snapshots: access, sheet, inventory, snapshot, reset.

Registered on cli.py's group (imported at its end); the same rules: parse, call one use-case,
render its result. LabctlError is caught by cli.main only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from labctl.commands.shared import (
    JSON_HELP,
    YES_HELP,
    Group,
    chosen_lab_dir,
    command_context,
    complete_machine,
    confirmed,
    lab_options,
    lab_statuses,
    make_reporter,
    print_json,
    print_lab_json,
)
from labctl.errors import LabctlError, printable

if TYPE_CHECKING:
    from labctl.hosts.router import LabDomains
    from labctl.state import LabDir

# ---------------------------------------------------------------------------------------------
# Trainees' access


@click.group(cls=Group)
def access() -> None:
    """The ports through which trainees reach their seats (a classroom lab).

    Seat N: SSH on classroom.ssh_port + N, dashboard and Keystone on classroom.web_port + N, on this
    host. `labctl up` and `resume` open them, `halt` (of the whole lab) and `destroy` close them.
    """


@access.command(name="open")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print the ports, now open, as JSON.")
def access_open(lab_file: Path | None, lab_name: str | None, as_json: bool) -> None:
    """Open (or keep open) the trainees' ports."""
    from labctl.fencing import open_doors

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    ctx = command_context()
    with ctx.home.writer(lab_dir.name, "access open"):
        open_doors(lab_dir, ctx, make_reporter(as_json))
    if as_json:
        print_json(_ports_json(lab_dir))


@access.command(name="close")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print the ports, now closed, as JSON.")
def access_close(lab_file: Path | None, lab_name: str | None, as_json: bool) -> None:
    """Close the trainees' ports (the seats keep running)."""
    from labctl.classroom.access import close_access

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    closed = close_access(lab_dir)
    if as_json:
        print_json({**_ports_json(lab_dir), "closed_now": closed})
        return
    click.echo("closed the trainees' ports" if closed else "the trainees' ports were not open")


def _ports_json(lab_dir: LabDir) -> dict[str, object]:
    from labctl.classroom.access import classroom_of, doors, forwarded, forwarder_pid, host_address

    classroom = classroom_of(lab_dir)
    pid = forwarder_pid(lab_dir)
    seat_doors = doors(lab_dir, classroom, forwarded(lab_dir, classroom))
    return {"lab": lab_dir.name, "open": pid is not None, "pid": pid, "listen": classroom.listen,
            "address": classroom.address or host_address(),
            "seats": [{"seat": d.seat, "ssh_port": d.ssh_port, "web_port": d.web_port, "seat_address": d.seat_address,
                       "host": d.host} for d in seat_doors]}


@access.command(name="status")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print the ports as JSON.")
def access_status(lab_file: Path | None, lab_name: str | None, as_json: bool) -> None:
    """Show whether the ports are open, and which port leads to which seat."""
    from labctl.classroom.access import classroom_of, doors, forwarded, forwarder_pid, host_address

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    classroom = classroom_of(lab_dir)
    pid = forwarder_pid(lab_dir)
    seat_doors = doors(lab_dir, classroom, forwarded(lab_dir, classroom))
    address = classroom.address or host_address()
    if as_json:
        print_json(_ports_json(lab_dir))
        return
    click.echo(f"ports {'open' if pid else 'closed'} on {classroom.listen}" + (f" (pid {pid})" if pid else "")
               + ("" if pid else f"; labctl access open --lab {lab_dir.name} opens them"))
    for d in seat_doors:
        to = d.seat_address or "(no address yet: the seat is not running)"
        click.echo(f"{d.seat}: ssh -p {d.ssh_port} stack@{address}   http://{address}:{d.web_port}/  -> {to}"
                   + (f" on host {d.host} (through SSH to it)" if d.host else ""))


# ---------------------------------------------------------------------------------------------
# The sheet


@click.command()
@lab_options
@click.option("--format", "fmt", type=click.Choice(["html", "csv", "md"]), default="html", show_default=True,
              help="HTML prints one card per half page; CSV and Markdown are for other tools.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write it (default: ./<lab>-sheet.<format>; - for standard output).")
def sheet(lab_file: Path | None, lab_name: str | None, fmt: str, output: Path | None) -> None:
    """Write the sheet to hand out: a card per seat (trainee, ssh command, dashboard and Keystone
    URLs, passwords) and the trainer's overview. It holds passwords: it is written readable by you only."""
    import socket

    from labctl.classroom.access import build_sheet
    from labctl.classroom.sheet import render, sheet_summary
    from labctl.state import atomic_write

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    data = build_sheet(lab_dir, lab_statuses(lab_dir), socket.gethostname())
    text = render(data, fmt)
    if str(output) == "-":
        click.echo(text, nl=False)
        return
    path = output or Path(f"{lab_dir.name}-sheet.{fmt}")
    if path.is_symlink() or (path.exists() and not path.is_file()):  # a folder, a FIFO, a device: never replaced
        raise LabctlError(f"{path} is not a regular file (a folder, link, FIFO or device); the sheet is written to"
                          " a new or regular file", hint="give another path with -o (or -o - for standard output)")
    try:
        atomic_write(path, text, mode=0o600)
    except LabctlError:
        raise
    except OSError as exc:
        raise LabctlError(f"cannot write {path}: {exc.strerror}", hint="give another path with -o") from None
    click.echo(f"Wrote {path} ({sheet_summary(data.cards)}; trainees reach this host at {data.address}).")
    if fmt == "html":
        click.echo("Open it in a browser and print it: one card per half page, then the trainer's overview.")


# ---------------------------------------------------------------------------------------------
# Ansible


@click.command()
@lab_options
def inventory(lab_file: Path | None, lab_name: str | None) -> None:
    """Print the lab as an Ansible inventory (YAML): groups per role and per seat, with the SSH
    settings that work. E.g. ansible all -i <(labctl inventory) -m ping"""
    from labctl.ansible_inventory import render

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    click.echo(render(lab_dir, lab_statuses(lab_dir)), nl=False)


# ---------------------------------------------------------------------------------------------
# Snapshots


@click.group(cls=Group, short_help="Snapshots of the lab's machines, memory included (save, list, restore, delete).")
def snapshot() -> None:
    """Snapshots of the lab's machines, through libvirt, memory included: a restored DevStack runs
    at once. labctl takes `stacked` by itself when a machine stacks; `labctl reset` goes back to it."""


def _domains(lab_dir: LabDir) -> LabDomains:
    """The lab's domains, each on the libvirt of its machine's host."""
    from labctl.hosts.router import LabDomains

    return LabDomains(lab_dir, command_context())


@snapshot.command(name="save")
@lab_options
@click.option("--description", "-d", default="", help="A note kept with the snapshot.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.argument("name")
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def snapshot_save(lab_file: Path | None, lab_name: str | None, description: str, as_json: bool, name: str,
                  machines: tuple[str, ...]) -> None:
    """Take snapshot NAME of MACHINES (all of the lab's when none is named), replacing one of that name."""
    from labctl.snapshots import check_snapshot_name, pick, save

    check_snapshot_name(name)
    lab_dir = chosen_lab_dir(lab_file, lab_name)
    reporter = make_reporter(as_json)
    taken = []
    with command_context().home.writer(lab_dir.name, "snapshot save"):
        for machine, _info in save(lab_dir, _domains(lab_dir), pick(lab_dir, machines), name, printable(description)):
            reporter.step(f"{machine}: snapshot {name} taken")
            taken.append(machine)
    if as_json:
        print_lab_json(lab_dir, snapshot=name, taken=taken)


@snapshot.command(name="list")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print the snapshots as JSON.")
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def snapshot_list(lab_file: Path | None, lab_name: str | None, as_json: bool, machines: tuple[str, ...]) -> None:
    """List the snapshots of MACHINES (all of the lab's when none is named)."""
    import time

    from labctl.snapshots import listing, pick

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    found = listing(lab_dir, _domains(lab_dir), pick(lab_dir, machines))
    if as_json:
        print_json({"lab": lab_dir.name, "machines": {
            m: [{"name": s.name, "created": s.created, "state": s.state, "description": s.description} for s in snaps]
            for m, snaps in found.items()}})
        return
    for machine, snaps in found.items():
        if not snaps:
            click.echo(f"{machine}: no snapshots")
        for s in snaps:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created))
            click.echo(f"{machine}: {s.name:20} {when}  {s.state:8} {printable(s.description)}")


@snapshot.command(name="restore")
@lab_options
@click.option("-y", "--yes", is_flag=True, help=YES_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.argument("name")
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def snapshot_restore(lab_file: Path | None, lab_name: str | None, yes: bool, as_json: bool, name: str,
                     machines: tuple[str, ...]) -> int:
    """Bring MACHINES (all of the lab's when none is named: asked first) back to snapshot NAME,
    running. What changed in them since is lost."""
    from labctl.snapshots import check_snapshot_name

    check_snapshot_name(name)  # before it is shown in a question or a hint
    lab_dir = chosen_lab_dir(lab_file, lab_name)
    if not machines:
        confirmed(yes, f"Bring every machine of lab {lab_dir.name!r} back to {name}? What changed since is lost.",
                  f"restore every machine of lab {lab_dir.name!r}",
                  f"name the machines, or labctl snapshot restore -y --lab {lab_dir.name} {name}")
    return _restore(lab_dir, name, machines, as_json)


def _restore(lab_dir: LabDir, name: str, machines: tuple[str, ...], as_json: bool) -> int:
    from labctl.snapshots import pick, restore

    reporter = make_reporter(as_json)
    targets = pick(lab_dir, machines)
    ctx = command_context()
    with ctx.home.writer(lab_dir.name, "restore"), reporter.machines(targets, "queued") as progress:
        results = restore(lab_dir, _domains(lab_dir), ctx.ssh(), targets, name, lambda: lab_statuses(lab_dir),
                          progress.update)
    for r in results:
        if not r.clock_set:
            reporter.warn(f"{r.machine}: {r.message}")
    reporter.step(f"{', '.join(targets)}: back to {name}")
    if as_json:
        print_lab_json(lab_dir, snapshot=name, restored=[{"machine": r.machine, "clock_set": r.clock_set,
                                                          "message": r.message} for r in results])
    return 0 if all(r.clock_set for r in results) else 1


@snapshot.command(name="delete")
@lab_options
@click.option("-y", "--yes", is_flag=True, help=YES_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.argument("name")
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def snapshot_delete(lab_file: Path | None, lab_name: str | None, yes: bool, as_json: bool, name: str,
                    machines: tuple[str, ...]) -> None:
    """Delete snapshot NAME of MACHINES (all of the lab's when none is named: asked first)."""
    from labctl.snapshots import check_snapshot_name, delete, pick

    check_snapshot_name(name)
    lab_dir = chosen_lab_dir(lab_file, lab_name)
    if not machines:
        confirmed(yes, f"Delete snapshot {name} of every machine of lab {lab_dir.name!r}?",
                  f"delete snapshot {name} of every machine of lab {lab_dir.name!r}",
                  f"name the machines, or labctl snapshot delete -y --lab {lab_dir.name} {name}")
    with command_context().home.writer(lab_dir.name, "snapshot delete"):
        gone = delete(lab_dir, _domains(lab_dir), pick(lab_dir, machines), name)
    if as_json:
        print_lab_json(lab_dir, snapshot=name, deleted=list(gone))
        return
    click.echo(f"deleted {name} of {', '.join(gone)}" if gone else f"no machine had a snapshot {name}")


@click.command(short_help="Bring MACHINES back to their `stacked` snapshot: a clean DevStack again in seconds.")
@lab_options
@click.option("--all", "everything", is_flag=True, help="Reset every machine of the lab (asked first).")
@click.option("-y", "--yes", is_flag=True, help=YES_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def reset(lab_file: Path | None, lab_name: str | None, everything: bool, yes: bool, as_json: bool,
          machines: tuple[str, ...]) -> int:
    """Bring MACHINES (e.g. seat-07) back to their `stacked` snapshot, taken when they last stacked
    successfully: a broken seat runs a clean DevStack again in seconds (about 10 s here under software
    emulation, bench/results/reset.md)."""
    from labctl.snapshots import STACKED

    if not machines and not everything:
        raise LabctlError("name the machines to reset (e.g. labctl reset seat-07), or --all",
                          hint="labctl status lists the machines")
    lab_dir = chosen_lab_dir(lab_file, lab_name)
    if not machines:
        confirmed(yes, f"Reset every machine of lab {lab_dir.name!r}? What every trainee did since stacking is lost.",
                  f"reset every machine of lab {lab_dir.name!r}", f"labctl reset --all -y --lab {lab_dir.name}")
    return _restore(lab_dir, STACKED, machines, as_json)

