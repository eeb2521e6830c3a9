"""`labctl sync`: the developer's checkout brought into the machines' DevStack (labctl.devloop).

Registered on cli.py's group (imported at its end); parse, call one use-case, render its result.
"""

from __future__ import annotations

from pathlib import Path

import click

from labctl.commands.shared import (
    chosen_lab_dir,
    command_context,
    complete_machine,
    lab_options,
    make_reporter,
    print_json,
)
from labctl.errors import printable


@click.command(short_help="Bring a checkout of devstack.projects, as it is now, into the machines' DevStack.")
@lab_options
@click.option("--timeout", type=click.IntRange(10, 3600), default=180, show_default=True,
              help="Seconds each service has to come back after its restart.")
@click.option("--json", "as_json", is_flag=True, help="Print each machine's steps as JSON.")
@click.argument("project")
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def sync(lab_file: Path | None, lab_name: str | None, timeout: int, as_json: bool, project: str,
         machines: tuple[str, ...]) -> int:
    """Bring PROJECT's checkout (devstack.projects in lab.yaml), as its files are now, uncommitted
    changes included, into DevStack's /opt/stack/PROJECT on every stacked machine (or MACHINE...):
    reinstalled only when its requirements or entry points changed, its services restarted, then the
    cloud's health. A service that does not come back is named, and the previous code runs again.
    Exits 1 if a machine failed."""
    from labctl.catalog import default_catalog
    from labctl.cloud.health import check_health, health_machines
    from labctl.devloop.sync import sync_project
    from labctl.hosts.services import relayer
    from labctl.lab import resolve_lab
    from labctl.machine_status import lab_status
    from labctl.selection import LabRequest

    ctx = command_context()
    lab_dir = chosen_lab_dir(lab_file, lab_name)
    lab, _ = resolve_lab(LabRequest(lab=lab_dir.name), ctx.home, default_catalog(), Path.cwd())
    reporter = make_reporter(as_json)
    with ctx.home.writer(lab.name, "sync"):
        statuses = lab_status(lab_dir, ctx.hypervisor(), ctx)
        found = sync_project(ctx.ssh(), lab, lab_dir, statuses, project, machines, reporter, ctx.cache,
                             relayer(ctx, lab_dir), lambda m, line: reporter.step(f"{m}: {line}"), timeout)
        api = [n for n in health_machines(lab_dir, statuses) if n in found]
        health = check_health(ctx.ssh(), lab_dir, statuses, api)
    failed = {m: [o for o in steps if o.failed] for m, steps in found.items()}
    sick = {m: [o for o in checks if o.failed] for m, checks in health.items()}
    if as_json:
        print_json({"lab": lab.name, "project": project, "machines": {
            m: {"steps": [{"name": o.name, "state": o.state, "detail": o.detail} for o in steps],
                "health": {o.name: {"state": o.state, "detail": o.detail} for o in health.get(m, [])}}
            for m, steps in found.items()}})
    else:
        for machine, steps in found.items():
            words = "; ".join(f"{o.name}: {o.detail or o.state}" for o in steps if not o.failed)
            click.echo(printable(f"{machine}: {words}"))
            for o in failed[machine] + sick.get(machine, []):
                click.echo(printable(f"  {o.line()}"))
    return 1 if any(failed.values()) or any(sick.values()) else 0
