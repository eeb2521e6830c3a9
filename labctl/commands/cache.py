"""`labctl cache`: the host's package caches, shared by every lab (labctl.cache).

Registered on cli.py's group (imported at its end); the same rules as every command: parse, call
one use-case, render its result.
"""

from __future__ import annotations

import click

from labctl.commands.shared import YES_HELP, Group, command_context, confirmed, print_json


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


@click.group(cls=Group, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the caches' state and counts as JSON.")
@click.pass_context
def cache(click_ctx: click.Context, as_json: bool) -> None:
    """The host's package caches: one download of each Debian package and PyPI file for every lab.

    apt-cacher-ng (Debian and Ubuntu packages) and devpi-server (PyPI) listen on the host's address on
    the labs' management network. A lab uses them with `caches: true` in lab.yaml (a classroom does
    unless it says `caches: false`); `labctl up` starts them, and they serve every later lab, across
    `destroy`, until `labctl cache stop`. Without a subcommand: what runs, its size and its hits.
    """
    if click_ctx.invoked_subcommand is None:
        _show(as_json)


def _show(as_json: bool, **done: object) -> None:
    from labctl.cache.services import HostCaches
    from labctl.hosts.relay import relays_in

    caches = HostCaches(command_context().cache)
    states = caches.status()
    ends = caches.endpoints()
    relays = [(name.split(".", 1)[0], running) for name, running in relays_in(caches.root / "relays")]
    if as_json:
        print_json({**done, "folder": str(caches.root), "offline": bool(ends and ends.offline),
                     "caches": [s.as_json() for s in states],
                     "relays": [{"host": host, "running": running} for host, running in relays]})
        return
    from rich.table import Table

    from labctl.ui import make_console, safe

    table = Table(title=f"Host caches in {safe(caches.root)}" + (" (offline)" if ends and ends.offline else ""),
                  title_justify="left")
    for column in ("cache", "state", "address", "size", "files asked", "from the cache", "fetched from outside"):
        table.add_column(column, justify="right" if column in ("size", "files asked", "from the cache",
                                                                "fetched from outside") else "left")
    for s in states:
        share = f"{s.hits} ({100 * s.hits // s.requests} %)" if s.requests else "0"
        table.add_row(f"{s.name} ({s.program})", "running" if s.running else "stopped", s.url or "-",
                      _size(s.size_bytes), str(s.requests), share, _size(s.fetched_bytes))
    console = make_console()
    console.print(table)
    for host, running in relays:
        state = "[green]relay running[/green]" if running else "[red]relay stopped[/red] (labctl up starts it)"
        console.print(f"host {safe(host)}'s machines reach them through SSH: {state}")
    if not any(s.running for s in states):
        console.print("start them with: labctl cache start (labctl up starts them for a lab with caches: true)")


@cache.command(name="start")
@click.option("--offline", is_flag=True, help="The outside is cut (a conference network down): serve only what"
              " the caches hold, and never try the internet.")
@click.option("--json", "as_json", is_flag=True, help="Print the caches' state afterwards as JSON.")
def cache_start(offline: bool, as_json: bool) -> None:
    """Start the caches (or keep them running); --offline to serve only what they hold."""
    from labctl.cache.services import HostCaches

    ctx = command_context()
    ends = HostCaches(ctx.cache).start(ctx.hypervisor().management_address(), offline=offline)
    if as_json:
        _show(True)
        return
    click.echo(f"apt cache: {ends.apt_proxy}\nPyPI cache: {ends.pypi_index}" + ("\n(offline)" if offline else ""))


@cache.command(name="stop")
@click.option("-y", "--yes", is_flag=True, help=YES_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the caches' state afterwards as JSON.")
def cache_stop(yes: bool, as_json: bool) -> None:
    """Stop the caches every lab on this host shares (asked first; what they hold stays on disk for
    next time)."""
    from labctl.cache.services import HostCaches

    caches = HostCaches(command_context().cache)
    if any(caches.pid(name) is not None for name in ("apt", "pypi")):
        confirmed(yes, "Stop the package caches? Every lab on this host uses them; a machine stacking now fails.",
                  "stop the caches every lab shares", "labctl cache stop -y")
    from labctl.hosts.relay import stop_relays

    stopped = caches.stop()
    stop_relays(caches.root / "relays")  # other hosts' ways to them
    if as_json:
        _show(True, stopped=stopped)
        return
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "the caches were not running")
