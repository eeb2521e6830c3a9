"""What people see of a lab's machines: the status table, a classroom's seat grid, and `status
--watch` redrawing them (labctl.ui holds the rest of what people see)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported where it prints: `labctl status --json` stays lean
    from rich.console import Console, RenderableType

    from labctl.machine_status import MachineStatus


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return ""
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def print_status(console: Console, lab: str, statuses: Sequence[MachineStatus]) -> None:
    console.print(status_view(console, lab, statuses))


def status_view(console: Console, lab: str, statuses: Sequence[MachineStatus], footer: str = "") -> RenderableType:
    """The status table (and a line for hosts that cannot be reached, and `footer`), as one renderable:
    printed once by `status`, redrawn in place by `status --watch`."""
    from rich.console import Group
    from rich.markup import escape
    from rich.text import Text

    from labctl.tables import Column, table

    seats = any(s.trainee is not None for s in statuses)
    hosts = any(s.host for s in statuses)  # a host column once a machine lives on another host
    # What goes first when the terminal is narrow: vCPUs, memory, uptime, the role, the lab address.
    columns = [Column("machine"), Column("trainee", fold=True) if seats else Column("role", drop=4),
               *([Column("host", drop=6)] if hosts else []), Column("state"), Column("address"),
               Column("lab address", drop=5), Column("memory", drop=2), Column("vCPUs", drop=1),
               Column("uptime", drop=3), Column("DevStack", fold=True)]
    colours = {"running": "green", "shutoff": "yellow", "not created": "dim"}
    rows = []
    for s in statuses:
        colour = colours.get(s.state, "red")
        stack_colour = "green" if s.devstack == "stacked" else "yellow" if s.devstack == "stacking" else "red"
        rows.append([s.name, escape(s.trainee or "") if seats else s.role, *([s.host or "this one"] if hosts else []),
                     f"[{colour}]{s.state}[/]", s.ssh_address or "", s.lab_ip,
                     f"{s.memory_mb} MiB" if s.memory_mb else "", str(s.vcpus or ""), _uptime(s.uptime_s),
                     f"[{stack_colour}]{escape(s.devstack)}[/]" if s.devstack else "[dim]not run[/]"])
    parts: list[RenderableType] = [table(console, f"Lab {lab}", columns, rows)]
    down = sorted({s.host for s in statuses if s.state == "host unreachable" and s.host})
    if down:
        parts.append(f"[red]host {', '.join(down)} cannot be reached[/]: its machines' state is unknown"
                     " (labctl hosts says why); the others are shown as they are")
    if footer:
        parts.append(Text(footer))
    return Group(*parts)


def seat_grid(statuses: Sequence[MachineStatus]) -> RenderableType:
    """A classroom at a glance: one cell per seat (its number, trainee and DevStack), as many cells a
    line as the terminal holds. 30 seats fit one screen where the table needs 34 lines."""
    from rich.columns import Columns
    from rich.markup import escape

    cells = []
    for s in statuses:
        if s.state != "running":
            what, colour = ("no VM", "dim") if s.state == "not created" else (s.state[:8], "yellow")
        elif not s.devstack:
            what, colour = "not run", "dim"
        else:
            what = s.devstack.split(" at ")[0]
            colour = {"stacked": "green", "stacking": "cyan"}.get(what, "red")
        number = s.name.removeprefix("seat-")
        trainee = s.trainee or "-"
        who = escape(trainee if len(trainee) <= 12 else trainee[:11] + "…")
        cells.append(f"[bold]{escape(number)}[/] {who:<12} [{colour}]{escape(what):<8}[/]")
    return Columns(cells, padding=(0, 2), equal=True, column_first=True)


def watch_status(console: Console, read: Callable[[], tuple[str, Sequence[MachineStatus]]], every: float,
                 clock: Callable[[], str], sleep: Callable[[float], None], rounds: int | None = None) -> None:
    """`status --watch`: the table redrawn in place every `every` seconds on a terminal; elsewhere (a
    log), printed again only when it changed. Ctrl-C ends it (the caller's KeyboardInterrupt)."""
    from collections import Counter

    from rich.live import Live

    def view() -> tuple[RenderableType, str]:
        lab, statuses = read()
        counts = Counter(s.devstack.split(" at ")[0] if s.devstack else "not run" for s in statuses)
        order = ["stacked", "stacking", "failed", "interrupted", "skipped", "not run"]
        order += sorted(set(counts) - set(order))
        summary = ", ".join(f"{counts[w]} {w}" for w in order if counts[w])
        footer = f"{summary} · {clock()} · every {every:g} s, Ctrl-C to stop"
        changed = repr([(s.name, s.state, s.ssh_address, s.devstack) for s in statuses])  # not the uptime
        if any(st.trainee is not None for st in statuses) and len(statuses) + 8 > console.height:
            from rich.console import Group
            from rich.text import Text

            # A class taller than the screen: the grid, so that every seat stays in sight.
            return Group(Text(f"Lab {lab}", style="italic"), seat_grid(statuses), Text(footer)), changed
        return status_view(console, lab, statuses, footer), changed

    done = 0
    if console.is_terminal:
        with Live(view()[0], console=console, auto_refresh=False) as live:
            while rounds is None or done < rounds:
                sleep(every)
                live.update(view()[0], refresh=True)
                done += 1
        return
    last = ""
    while rounds is None or done <= rounds:
        shown, key = view()
        if key != last:
            console.print(shown)
            last = key
        done += 1
        if rounds is None or done <= rounds:
            sleep(every)


def print_ready(console: Console, lab: str, statuses: Sequence[MachineStatus]) -> None:
    print_status(console, lab, statuses)
    first = statuses[0].name if statuses else "MACHINE"
    console.print(f"Connect: labctl ssh {first} --lab {lab}    Run everywhere: labctl exec --all --lab {lab} -- CMD")
