"""What people see: rich tables and messages. Commands hand results here; nothing here decides."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from labctl.errors import printable
from labctl.mirrors import redact

if TYPE_CHECKING:  # rich is imported by callers that print; keep `labctl status --json` lean.
    from rich.console import Console

    from labctl.catalog import Catalog
    from labctl.cloud.dayone import Outcome
    from labctl.lab import Plan
    from labctl.lifecycle import LabSummary
    from labctl.protocols import MachineProgress
    from labctl.provision import StackResult


def make_console(stderr: bool = False) -> Console:
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # A pipe or a file gets whole lines (rich would cut tables at 80 columns); a terminal, its width.
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def warn(console: Console, text: str) -> None:
    """A warning goes to stderr, beside errors, when the console prints to stdout: what a command
    prints stays its output (a table, a plan) for whoever reads or pipes it."""
    import sys

    if console.file is sys.stdout:
        console = make_console(stderr=True)
    # The text may quote a lab file, libvirt or a guest: [brackets] in it are words, not markup.
    console.print(f"[yellow]warning:[/] {safe(text)}", markup=True, highlight=False)


def print_boxes(console: Console, catalog: Catalog, master: str) -> None:
    from labctl.tables import Column, table

    rows = []
    for family in catalog.families:
        for r in family.releases:
            ref = r.ref + ("*" if r.version == family.default else "")
            support = {"supported": "[green]yes[/]", "unsupported": "[red]no[/] (force to try)",
                       "unknown": "?"}[r.devstack_support(master)]
            if r.local_build:
                support += "; box built offline"
            proven = ", ".join(kind for kind, _ in r.proven) or (
                "[dim]none yet[/]" if r.local_build else "[dim]none (a registry box)[/]")
            rows.append([ref, f"{r.family_name} {r.version} {r.codename}", r.box, r.package_family,
                         f"{r.min_memory_mb // 1024} GiB/{r.min_disk_gb} GB", support, proven])
    columns = [Column("distro"), Column("release", drop=2), Column("box", drop=5), Column("pkgs", drop=1),
               Column("min RAM/disk", drop=3), Column(f"DevStack {master}", fold=True),
               Column("proven here", fold=True, drop=4)]
    console.print(table(console, "Box catalogue (* = the family's default)", columns, rows))
    console.print("Name a release as family or family:version: --distro debian, --distro ubuntu:24.04.")
    console.print("Proven here: what labctl's own tests did with the release on a host without KVM or access"
                  " to Vagrant's box registry (docs/contributing.md).")


def safe(text: object) -> str:
    """A value from outside (a path, a plugin's phase, a guest's line) as rich shows it: [brackets]
    are words, not markup (a `[/x]` would crash the print), and escape sequences never reach the
    terminal raw."""
    from rich.markup import escape

    return escape(printable(str(text)))


def print_plan(console: Console, plan: Plan) -> None:
    from labctl.images.key import kept_image_gb
    from labctl.tables import Column, table

    lab = plan.lab
    console.print(f"Lab [bold]{lab.name}[/] in {safe(plan.dir)}")
    console.print(printable(f"DevStack {lab.devstack.branch} from {redact(plan.devstack_from)}"), markup=False)
    for mirror in plan.mirrors:
        what = (f"Git mirrors: {mirror.folder} ({mirror.repositories} repositories)" if mirror.served_as == "GIT_BASE"
                else f"Your checkout {mirror.folder}, its working tree" if mirror.served_as.endswith("_REPO")
                else f"DevStack's repository {mirror.folder}")
        console.print(printable(f"{what}: served to the machines at {mirror.url} ({mirror.served_as}) while"
                                " DevStack runs"), markup=False)
    console.print(f"Accelerator: {plan.accelerator.name} ({plan.accelerator.reason})")
    columns = [Column("machine"), Column("role", drop=2), Column("distro", drop=3), Column("address"),
               Column("memory"), Column("CPUs", drop=1), Column("disk", drop=4)]
    rows = [[mp.machine.name, mp.machine.role, mp.machine.release.ref, mp.machine.ip, f"{mp.machine.memory_mb} MiB",
             str(mp.machine.cpus), f"{mp.machine.disk_gb} GB"] for mp in plan.machines]
    t = plan.totals
    total = [f"{t['machines']} machine(s)", "", "", lab.cidr, f"{t['memory_mb']} MiB", str(t["cpus"]),
             f"{t['disk_gb']} GB"]
    shown = table(console, None, columns, rows, [total])
    console.print(shown)
    if image_gb := kept_image_gb(lab):
        console.print(printable(f"Stacked image: {plan.machines[0].machine.name}'s disk is kept once stacked (up to"
                                f" {image_gb} GB on the host); an up of the same stack starts from it in"
                                " minutes (labctl images; up --fresh always stacks)"), markup=False)
    for text in plan.warnings:
        warn(console, text)
    console.print(f"Wrote {safe(plan.vagrantfile)} and {len(plan.machines)} local.conf file(s) under"
                  f" {safe(plan.dir / 'machines')}.")


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class ConsoleReporter:
    """Progress of long work: a line per step with the time since start; on a terminal, a live line
    per machine with its current step and elapsed time; elsewhere (logs, CI) one line per change."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()

    def _stamp(self) -> str:
        return f"[dim]{_elapsed(time.monotonic() - self.started):>6}[/]"

    def step(self, text: str) -> None:
        self.console.print(f"{self._stamp()} {safe(text)}", markup=True, highlight=False)

    def warn(self, text: str) -> None:
        warn(self.console, text)

    @contextmanager
    def machines(self, names: Sequence[str], verb: str) -> Iterator[MachineProgress]:
        if self.console.is_terminal:
            with _LiveMachines(self.console, names, verb) as live:
                yield live
        else:
            lines = _LineMachines(self, names, verb)
            with lines.ticking():
                yield lines


class _LineMachines:
    """One line per change; what DevStack does inside a phase changes every second, so a change of
    that alone is printed at most once a minute (never a silent minute, never a flood). A change held
    back is printed when its minute is up (`tick`), even if nothing changes after it: a log never
    shows a step that is long over."""

    DETAIL_EVERY = 60.0
    TICK_EVERY = 5.0

    def __init__(self, reporter: ConsoleReporter, names: Sequence[str], verb: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import threading

        self.reporter = reporter
        self.clock = clock
        self.lock = threading.Lock()
        self.last: dict[str, tuple[str, float]] = {}
        self.held: dict[str, str] = {}
        for name in names:
            reporter.step(f"{name}: {verb}")

    def update(self, name: str, text: str) -> None:
        from labctl.stacklog import DETAIL_SEP  # here: `labctl status` parses no log

        if text.startswith("-- "):
            return  # vagrant's listing of domain settings
        head = text.split(DETAIL_SEP, 1)[0]
        with self.lock:
            last, at = self.last.get(name, ("", 0.0))
            now = self.clock()
            if last == text:
                self.held.pop(name, None)
                return
            if DETAIL_SEP in text and last.split(DETAIL_SEP, 1)[0] == head and now - at < self.DETAIL_EVERY:
                self.held[name] = text
                return
            self._show(name, text, now)

    def tick(self) -> None:
        """Print every change held back whose minute is up."""
        with self.lock:
            now = self.clock()
            for name, text in list(self.held.items()):
                if now - self.last.get(name, ("", 0.0))[1] >= self.DETAIL_EVERY:
                    self._show(name, text, now)

    def _show(self, name: str, text: str, now: float) -> None:
        self.held.pop(name, None)
        self.last[name] = (text, now)
        self.reporter.step(f"{name}: {text}")

    @contextmanager
    def ticking(self) -> Iterator[None]:
        """`tick` every few seconds while the machines work."""
        import threading

        stop = threading.Event()

        def run() -> None:
            while not stop.wait(self.TICK_EVERY):
                self.tick()

        ticker = threading.Thread(target=run, name="labctl-progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()


class _LiveMachines:
    def __init__(self, console: Console, names: Sequence[str], verb: str) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[machine]:<16}"),
                                 TimeElapsedColumn(), TextColumn("{task.description}"), console=console)
        self.tasks = {n: self.progress.add_task(verb, machine=n, total=None) for n in names}

    def __enter__(self) -> _LiveMachines:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks.values():
            self.progress.update(task, total=1, completed=1)
        self.progress.__exit__(None, None, None)

    def update(self, name: str, text: str) -> None:
        if name in self.tasks and not text.startswith("-- "):
            self.progress.update(self.tasks[name], description=safe(text))


def print_labs(console: Console, labs: Sequence[LabSummary]) -> None:
    from labctl.tables import Column, table

    rows = [[lab.name, str(lab.machines), ", ".join(f"{n} {state}" for state, n in sorted(lab.states.items())),
             safe(lab.dir)] for lab in labs]
    console.print(table(console, None, [Column("lab"), Column("machines", drop=2), Column("states", fold=True),
                                         Column("folder", drop=1, fold=True)], rows))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def print_stack_summary(console: Console, lab: str, results: dict[str, StackResult],
                        discovery: str | None) -> None:
    from rich.table import Table

    table = Table(title=f"DevStack on lab {lab}", title_justify="left")
    for col in ("machine", "result", "time", "last phase", "dashboard", "keystone"):
        table.add_column(col, no_wrap=col != "last phase")
    colours = {"ok": "green", "failed": "red", "skipped": "yellow"}
    for name, r in results.items():
        table.add_row(name, f"[{colours[r.status]}]{r.status}[/]", _duration(r.seconds) if r.seconds else "",
                      safe(r.phase), safe(r.dashboard or ""), safe(r.keystone or ""))
    console.print(table)
    from labctl.stacklog import slowest

    for name, r in results.items():
        if r.phases:
            top = ", ".join(f"{phase} {_duration(seconds)}" for phase, seconds in slowest(r.phases))
            console.print(f"[dim]{name}, slowest phases:[/] ", end="")
            console.print(printable(top), markup=False, style="dim")
    if discovery:
        console.print(f"discover_hosts.sh: {discovery}", markup=False)
    for name, r in results.items():
        if r.status == "failed":
            console.print(f"[red]{name} failed[/] at [bold]{safe(r.phase)}[/]: ", end="")
            console.print(printable(r.message), markup=False)
            for line in r.tail:  # stack.sh's last lines: a guest's words, escape sequences included
                console.print(f"  {printable(line)}", markup=False, style="dim")
        elif r.status == "skipped":
            console.print(f"[yellow]{name}[/] ", end="")
            console.print(printable(r.message), markup=False)
    for name, r in results.items():
        for problem in r.problems:  # the machine's own words (OpenStack's errors)
            console.print(f"[red]{name}[/] stacked, but ", end="")
            console.print(printable(problem), markup=False)
    if any(r.problems for r in results.values()):
        console.print(f"Fix lab.yaml's cloud: section, then make what is missing: labctl cloud --lab {lab}",
                      markup=False)
    if any(r.status != "ok" for r in results.values()):
        console.print(f"Full logs: labctl logs MACHINE --lab {lab}. Retry the failed machines: labctl stack"
                      f" --lab {lab}", markup=False)
    else:
        console.print(f"Credentials: labctl creds --lab {lab}", markup=False)


def print_health(console: Console, lab: str, health: Mapping[str, Sequence[Outcome]],
                 hosts: Mapping[str, str | None] | None = None) -> None:
    """One row per machine, one column per check; a service the machine does not run is blank.
    `hosts`: each machine's host, shown when any lives on another host than this machine."""
    from rich.table import Table

    from labctl.cloud.health import CHECKS

    table = Table(title=f"The cloud in lab {lab}", title_justify="left")
    table.add_column("machine", no_wrap=True)
    spread = bool(hosts and any(hosts.values()))
    if spread:
        table.add_column("host", no_wrap=True)
    for check in CHECKS:
        table.add_column(check, overflow="fold")
    for machine, outcomes in health.items():
        by = {o.name: o for o in outcomes}
        cells = [safe((hosts or {}).get(machine) or "this machine")] if spread else []
        for check in CHECKS:
            o = by.get(check)
            cells.append("" if o is None else f"[green]{safe(o.detail or 'ok')}[/]" if o.state == "ok"
                         else f"[red]failed[/]: {safe(o.detail)}")
        table.add_row(machine, *cells)
    console.print(table)
    for machine, outcomes in health.items():
        for o in outcomes:
            if o.failed and o.name not in CHECKS:  # the machine could not be asked at all
                console.print(f"[red]{machine}[/]: ", end="")
                console.print(printable(o.line()), markup=False)
