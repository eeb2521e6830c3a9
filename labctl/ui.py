"""What people see: rich tables and messages. Commands hand results here; nothing here decides."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported by callers that print; keep `labctl status --json` lean.
    from rich.console import Console

    from labctl.catalog import Catalog
    from labctl.lab import Plan


def make_console(stderr: bool = False) -> Console:
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # A pipe or a file gets whole lines (rich would cut tables at 80 columns); a terminal, its width.
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def warn(console: Console, text: str) -> None:
    console.print(f"[yellow]warning:[/] {text}", markup=True, highlight=False)


def print_boxes(console: Console, catalog: Catalog, master: str) -> None:
    from rich.table import Table

    table = Table(title="Box catalogue (* = the family's default)", title_justify="left")
    table.add_column("distro", no_wrap=True)
    table.add_column("release")
    table.add_column("box", no_wrap=True)
    table.add_column("pkgs")
    table.add_column("min RAM/disk")
    table.add_column(f"DevStack {master}")
    for family in catalog.families:
        for r in family.releases:
            ref = r.ref + ("*" if r.version == family.default else "")
            support = {"supported": "[green]yes[/]", "unsupported": "[red]no[/] (force to try)",
                       "unknown": "?"}[r.devstack_support(master)]
            if r.local_build:
                support += "; box built offline"
            table.add_row(ref, f"{r.family_name} {r.version} {r.codename}", r.box, r.package_family,
                          f"{r.min_memory_mb // 1024} GiB/{r.min_disk_gb} GB", support)
    console.print(table)
    console.print("Name a release as family or family:version: --distro debian, --distro ubuntu:24.04.")


def print_plan(console: Console, plan: Plan) -> None:
    from rich.table import Table

    lab = plan.lab
    console.print(f"Lab [bold]{lab.name}[/] in {plan.dir}")
    console.print(f"DevStack {lab.devstack.branch} from {lab.devstack.repo}")
    console.print(f"Accelerator: {plan.accelerator.name} ({plan.accelerator.reason})")
    table = Table(title_justify="left")
    for col in ("machine", "role", "distro", "address", "memory", "CPUs", "disk"):
        table.add_column(col, no_wrap=True)
    for mp in plan.machines:
        m = mp.machine
        table.add_row(m.name, m.role, m.release.ref, m.ip, f"{m.memory_mb} MiB", str(m.cpus),
                      f"{m.disk_gb} GB")
    t = plan.totals
    table.add_section()
    table.add_row(f"{t['machines']} machine(s)", "", "", lab.cidr, f"{t['memory_mb']} MiB",
                  str(t["cpus"]), f"{t['disk_gb']} GB", style="bold")
    console.print(table)
    for text in plan.warnings:
        warn(console, text)
    console.print(f"Wrote {plan.vagrantfile} and {len(plan.machines)} local.conf file(s) under"
                  f" {plan.dir / 'machines'}.")
