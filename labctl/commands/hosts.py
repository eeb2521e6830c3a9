"""`labctl hosts`: the hypervisor hosts labctl may place machines on (labctl.hosts).

Registered on cli.py's group (imported at its end); parse, call one use-case, render its result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from labctl.commands.shared import command_context, print_json
from labctl.errors import printable

if TYPE_CHECKING:
    from labctl.hosts.placement import HostRoom


def _room_json(room: HostRoom) -> dict[str, object]:
    cap = room.capacity
    return {"name": room.name, "uri": room.entry.uri, "reachable": room.error is None, "error": room.error,
            "reserve_mb": room.entry.reserve_mb,
            **({"cpus": cap.cpus, "accelerator": cap.accelerator, "memory_total_mb": cap.memory_total_mb,
                "memory_domains_mb": cap.memory_domains_mb, "domains_running": cap.domains_running,
                "memory_available_mb": cap.memory_available_mb, "memory_free_mb": room.free_mb,
                "disk_free_gb": cap.disk_free_gb, "disk_path": cap.disk_path}
               if cap else {})}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the hosts and their capacity as JSON.")
def hosts(as_json: bool) -> int:
    """The hypervisor hosts labctl places machines on, with their capacity live from libvirt: CPUs,
    memory, and free disk in the storage pool "default" (where the machines' volumes go).

    The inventory is ~/.config/labctl/hosts.yaml ($LABCTL_HOSTS names another file): each host's name,
    libvirt URI (qemu:///system here, qemu+ssh://USER@HOST/system for another), ssh_key, and the
    memory to keep free for the host itself (reserve). Without it, this machine alone. Exits 1 when a
    host cannot be reached.
    """
    from labctl.hosts.survey import survey

    ctx = command_context()
    entries = ctx.hosts()
    rooms = survey(entries, ctx.host_hypervisor)
    source = str(ctx.hosts_file) if ctx.hosts_file and ctx.hosts_file.exists() else None
    if as_json:
        print_json({"inventory": source, "hosts": [_room_json(r) for r in rooms]})
    else:
        _table(rooms, source, str(ctx.hosts_file) if ctx.hosts_file else "hosts.yaml")
    return 1 if any(r.error for r in rooms) else 0


def _table(rooms: list[HostRoom], source: str | None, path: str) -> None:
    from rich.table import Table

    from labctl.ui import make_console, safe

    title = f"Hosts (from {safe(source)})" if source else "Hosts: this machine alone (no host inventory)"
    table = Table(title=title, title_justify="left")
    numbers = ("CPUs", "memory", "running VMs", "reserve", "free", "disk free")
    for column in ("host", "libvirt URI", "state", *numbers[:1], "KVM", *numbers[1:]):
        table.add_column(column, justify="right" if column in numbers else "left")
    for r in rooms:
        cap = r.capacity
        if cap is None:
            table.add_row(r.name, safe(r.entry.uri), "[red]unreachable[/red]", *["-"] * 7)
            continue
        kvm = "yes" if cap.accelerator == "kvm" else f"no ({cap.accelerator})"
        table.add_row(r.name, safe(r.entry.uri), "up", str(cap.cpus), kvm, f"{cap.memory_total_mb} MiB",
                      f"{cap.domains_running}: {cap.memory_domains_mb} MiB", f"{r.entry.reserve_mb} MiB",
                      f"[bold]{r.free_mb} MiB[/bold]",
                      "not known" if cap.disk_free_gb is None else f"{cap.disk_free_gb} GB")
    console = make_console()
    console.print(table)
    for r in rooms:
        if r.error:
            console.print(printable(r.error), style="red", markup=False, highlight=False)  # it names the host
    if source is None:
        console.print(f"add hosts in {safe(path)} (labctl hosts --help shows how)", highlight=False)
