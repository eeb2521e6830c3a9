"""Looking at and into a lab's machines: status, list, logs, creds, ssh, ssh-config, exec."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from labctl.commands.shared import (
    ask_health,
    chosen_lab_dir,
    command_context,
    complete_machine,
    health_failed,
    health_json,
    lab_options,
    lab_statuses,
    make_reporter,
    print_json,
    remote_words,
)
from labctl.errors import LabctlError


@click.command()
@lab_options
@click.option("--follow", "-F", is_flag=True, help="Keep printing what is added, until Ctrl-C.")
@click.argument("machine", shell_complete=complete_machine)
def logs(lab_file: Path | None, lab_name: str | None, follow: bool, machine: str) -> None:
    """Show MACHINE's DevStack log (stack.sh's whole output, passwords masked)."""
    import time

    lab_dir = chosen_lab_dir(lab_file, lab_name)
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


@click.command()
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print the credentials as JSON (the password included).")
@click.argument("machine", required=False, shell_complete=complete_machine)
def creds(lab_file: Path | None, lab_name: str | None, as_json: bool, machine: str | None) -> None:
    """Print the lab's admin credentials and an openrc (for MACHINE, or the first API machine).

    The only command that prints the lab's password."""
    from labctl.stacking.machines import credentials, openrc

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    data = credentials(lab_dir)
    if as_json:
        print_json(data.as_json())
        return
    apis = list(data.machines)
    target = machine or (apis[0] if apis else "")
    if target not in data.machines:
        raise LabctlError(f"no machine running Keystone named {target!r} (machines: {', '.join(apis)})",
                          hint="name the controller or an all-in-one machine")
    password = data.machines[target].password
    click.echo(f"User: {data.username}   Password: {password}   Project: {data.project}"
               + (f"   (the password of {target})" if password != data.password else ""))
    for name, m in data.machines.items():
        note = "" if m.stacked else "   (not stacked yet)"
        dashboard = f"dashboard {m.dashboard}   " if m.dashboard else ""
        click.echo(f"{name}: {dashboard}keystone {m.auth_url}{note}")
    click.echo(f"\n# openrc for {target} (labctl creds {target} --lab {lab_dir.name} | grep ^export > openrc)")
    click.echo(openrc(data, target), nl=False)


@click.command(short_help="Show each machine's state, addresses, size, uptime and DevStack.")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print the machines as JSON.")
@click.option("--health", is_flag=True, help="Also ask the cloud in each stacked machine how it is: Keystone,"
              " and Nova's services, Neutron's agents and Glance where DevStack runs them.")
@click.option("--watch", type=click.FloatRange(1, 3600), is_flag=False, flag_value=5.0, default=None,
              metavar="[SECONDS]", help="Show the table again every SECONDS (5 if not given) until Ctrl-C: a class"
              " coming up, seat by seat.")
@click.option("--grid", is_flag=True, help="A classroom at a glance: one cell per seat (number, trainee,"
              " DevStack), in columns, instead of the table.")
def status(lab_file: Path | None, lab_name: str | None, as_json: bool, health: bool, watch: float | None,
           grid: bool) -> int:
    """Show each machine's state, addresses, memory, vCPUs and uptime (read from libvirt), and its
    DevStack as labctl last saw it (stacked, failed, stacking, interrupted). With --health, also ask
    the cloud in each stacked machine how it is (exits 1 if a check failed)."""
    from labctl.machine_status import lab_status

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    ctx = command_context()
    if watch is not None:
        if as_json or health:
            raise LabctlError("--watch shows the table to a person; it takes neither --json nor --health",
                              hint="scripts: run `labctl status --json` as often as they need")
        import contextlib
        import time

        from labctl.ui import make_console
        from labctl.ui_status import watch_status

        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
            watch_status(make_console(), lambda: (lab_dir.name, lab_status(lab_dir, ctx.hypervisor(), ctx)), watch,
                         lambda: time.strftime("%H:%M:%S"), time.sleep)
        return 0
    statuses = lab_status(lab_dir, ctx.hypervisor(), ctx)
    checks = ask_health(lab_dir, ctx, make_reporter(to_stderr=True), statuses) if health else None
    if as_json:
        print_json({"lab": lab_dir.name, "machines": [s.as_json() for s in statuses],
                     **({"health": health_json(checks)} if checks is not None else {})})
    else:
        from labctl.ui import make_console, print_health
        from labctl.ui_status import print_status, seat_grid

        console = make_console()
        if grid:
            console.print(f"Lab {lab_dir.name}", style="italic")
            console.print(seat_grid(statuses))
        else:
            print_status(console, lab_dir.name, statuses)
        if checks:
            print_health(console, lab_dir.name, checks, {s.name: s.host for s in statuses})
        elif checks is not None:
            console.print("No machine has stacked yet: no cloud to ask.", markup=False)
    return 1 if health_failed(checks) else 0


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the labs as JSON.")
def list_(as_json: bool) -> None:
    """List all labs and the states of their machines."""
    from labctl.lifecycle import list_labs

    labs = list(list_labs(command_context()))
    if as_json:
        print_json({"labs": [{"lab": lab.name, "machines": lab.machines, "states": lab.states, "dir": str(lab.dir)}
                              for lab in labs]})
        return
    from labctl.ui import make_console, print_labs

    if labs:
        print_labs(make_console(), labs)
    else:
        click.echo("No labs yet: labctl up --distro debian creates one.")


@click.command()
@lab_options
@click.argument("machine", shell_complete=complete_machine)
def ssh(lab_file: Path | None, lab_name: str | None, machine: str) -> None:
    """Open a shell on MACHINE, or run a command: labctl ssh MACHINE -- CMD."""
    from labctl.machine_access import ssh_argv
    from labctl.machine_status import pick_machines

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    (status,) = pick_machines(lab_statuses(lab_dir), [machine], False)
    argv = ssh_argv(lab_dir, status, remote_words())
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # noqa: S606 - an argv list; ssh takes over the terminal


@click.command(name="ssh-config")
@lab_options
def ssh_config(lab_file: Path | None, lab_name: str | None) -> None:
    """Print an OpenSSH config block for every machine (for ssh -F, scp, rsync, editors)."""
    from labctl.machine_access import ssh_config as render

    lab_dir = chosen_lab_dir(lab_file, lab_name)
    click.echo(render(lab_dir, lab_statuses(lab_dir)), nl=False)


@click.command(name="exec", short_help="Run a command on several machines at once (MACHINE... or --all, then -- CMD).")
@lab_options
@click.option("--all", "everything", is_flag=True, help="Run on every machine of the lab.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Give up on a machine after this long.")
@click.option("--json", "as_json", is_flag=True, help="Print each machine's exit code and output as JSON.")
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def exec_(lab_file: Path | None, lab_name: str | None, everything: bool, timeout: float | None, as_json: bool,
          machines: tuple[str, ...]) -> int:
    """Run a command on several machines at once: labctl exec (MACHINE... | --all) -- CMD.

    Exits non-zero if the command failed (or could not run) on any machine.
    """
    from labctl.machine_access import exec_on
    from labctl.machine_status import pick_machines

    command = remote_words()
    if not command:
        raise LabctlError("no command given", hint="labctl exec --all -- hostname")
    lab_dir = chosen_lab_dir(lab_file, lab_name)
    targets = pick_machines(lab_statuses(lab_dir), machines, everything)
    results = exec_on(command_context().ssh(), lab_dir, targets, command, timeout)
    if as_json:
        print_json({"lab": lab_dir.name, "machines": {
            name: {"exit_code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "error": r.error}
            for name, r in results.items()}})
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
