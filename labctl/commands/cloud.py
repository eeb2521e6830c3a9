"""`labctl cloud`: lab.yaml's day-one resources (labctl.cloud), made again where they are missing.

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


@click.command(short_help="Make lab.yaml's day-one resources (images, flavors, keypair, rules) that are missing.")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print each resource's outcome as JSON.")
@click.argument("machines", nargs=-1, shell_complete=complete_machine)
def cloud(lab_file: Path | None, lab_name: str | None, as_json: bool, machines: tuple[str, ...]) -> int:
    """Make lab.yaml's day-one resources (cloud: images, flavors, keypair, security_group_rules) in the
    stacked machines that serve the APIs, or in MACHINE...: only what is missing; an image left
    half-made is made anew. `up` and `stack` do it after DevStack; this is for a retry or an edited
    lab.yaml. Exits 1 if a resource could not be made."""
    from labctl.catalog import default_catalog
    from labctl.cloud.dayone import make_cloud
    from labctl.lab import resolve_lab
    from labctl.machine_status import lab_status
    from labctl.selection import LabRequest

    ctx = command_context()
    lab_dir = chosen_lab_dir(lab_file, lab_name)
    lab, _ = resolve_lab(LabRequest(lab=lab_dir.name), ctx.home, default_catalog(), Path.cwd())
    reporter = make_reporter(as_json)
    with ctx.home.writer(lab.name, "cloud"):
        found = make_cloud(ctx.ssh(), lab, lab_dir, lab_status(lab_dir, ctx.hypervisor(), ctx), machines,
                           lambda machine, line: reporter.step(f"{machine}: {line}"))
    failed = {m: [o for o in outcomes if o.failed] for m, outcomes in found.items()}
    if as_json:
        print_json({"lab": lab.name, "machines": {
            m: [{"kind": o.kind, "name": o.name, "state": o.state, "detail": o.detail} for o in outcomes]
            for m, outcomes in found.items()}})
    else:
        for machine, outcomes in found.items():
            made = sum(o.state in ("created", "replaced") for o in outcomes)
            there = sum(o.state == "present" for o in outcomes)
            click.echo(f"{machine}: {made} made, {there} there already, {len(failed[machine])} failed")
            for o in failed[machine]:
                click.echo(printable(f"  {o.line()}"))
    return 1 if any(failed.values()) else 0
