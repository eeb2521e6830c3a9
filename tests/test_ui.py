"""Progress as people see it: a live line per machine on a terminal, one line per change elsewhere."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from conftest import Result
from labctl.ui import ConsoleReporter


def test_terminal_shows_a_live_line_per_machine() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, force_terminal=True, width=100))
    with reporter.machines(["ctl", "cmp-1"], "booting") as progress:
        progress.update("ctl", "Waiting for domain to get an IP address...")
        progress.update("cmp-1", "-- Name: labctl-x-cmp-1")  # vagrant's settings listing: not a step
        progress.update("cmp-1", "Machine booted and ready!")
        progress.update("stranger", "ignored")
    text = out.getvalue()
    assert "ctl" in text and "Waiting for domain to get an IP address..." in text
    assert "Machine booted and ready!" in text and "labctl-x-cmp-1" not in text and "stranger" not in text
    assert "0:00:0" in text  # each machine's elapsed time


def test_logs_get_one_line_per_change() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, width=100))
    reporter.step("checking the host")
    with reporter.machines(["a"], "booting") as progress:
        progress.update("a", "Starting domain.")
        progress.update("a", "Starting domain.")
        progress.update("a", "-- Memory: 1024M")
    lines = out.getvalue().splitlines()
    assert [line.split(None, 1)[1] for line in lines] == ["checking the host", "a: booting", "a: Starting domain."]
    assert all(line.lstrip().startswith("0:00") for line in lines)


def test_status_shows_each_machines_devstack() -> None:
    from labctl.machine_status import MachineStatus
    from labctl.ui_status import print_status

    def machine(name: str, state: str, devstack: str) -> MachineStatus:
        return MachineStatus(name, "allinone", "10.0.0.2", f"labctl-x-{name}", state, (), None, None, None, "vagrant",
                             devstack)

    out = io.StringIO()
    print_status(Console(file=out, width=160), "x", [
        machine("alpha", "running", "stacked"), machine("bravo", "running", "failed at Starting [Neutron]"),
        machine("charlie", "shutoff", "interrupted"), machine("delta", "not created", "")])
    rows = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in out.getvalue().splitlines()
            if line.startswith("│")}
    assert rows == {"alpha": "stacked", "bravo": "failed at Starting [Neutron]", "charlie": "interrupted",
                    "delta": "not run"}  # text from stack.sh is shown as it is, never read as markup


def test_logs_show_devstacks_inner_steps_at_most_once_a_minute() -> None:
    from labctl.ui import _LineMachines

    out = io.StringIO()
    now = [0.0]
    lines = _LineMachines(ConsoleReporter(Console(file=out, width=120)), ["ks"], "queued", clock=lambda: now[0])
    for second, text in [(1, "Starting Keystone"), (2, "Starting Keystone · start_keystone"),
                         (3, "Starting Keystone · create_keystone_accounts"),
                         (62, "Starting Keystone · create_keystone_accounts (functions-common:oscwrap)"),
                         (63, "Starting Keystone · create_keystone_accounts (functions-common:get_or_create_role)"),
                         (64, "done")]:
        now[0] = second
        lines.update("ks", text)
    shown = [line.split(None, 1)[1] for line in out.getvalue().splitlines()]
    assert shown == ["ks: queued", "ks: Starting Keystone",
                     "ks: Starting Keystone · create_keystone_accounts (functions-common:oscwrap)", "ks: done"]


def test_a_step_held_back_is_printed_when_its_minute_is_up() -> None:
    """Seen in a real stack's log: `starting · install_python` from 9:06 to 17:54 while stack.sh was
    installing ksmtuned, because no change came after the one held back."""
    from labctl.ui import _LineMachines

    out = io.StringIO()
    now = [0.0]
    lines = _LineMachines(ConsoleReporter(Console(file=out, width=120)), ["ks"], "queued", clock=lambda: now[0])
    for second, text in [(546, "starting · install_python"), (550, "starting · install_package ksmtuned")]:
        now[0] = second
        lines.update("ks", text)
    for second in (560, 600, 605, 700):
        now[0] = second
        lines.tick()
    shown = [line.split(None, 1)[1] for line in out.getvalue().splitlines()]
    assert shown == ["ks: queued", "ks: starting · install_python", "ks: starting · install_package ksmtuned"]
    now[0] = 701
    lines.update("ks", "starting · install_package ksmtuned")  # the same again: nothing new to print
    lines.tick()
    assert out.getvalue().count("ksmtuned") == 1


def test_the_ticker_prints_what_was_held_back_in_a_log() -> None:
    """The real thread, fast: a held-back step shows up with no further update."""
    from labctl.ui import _LineMachines

    out = io.StringIO()
    now = [0.0]
    lines = _LineMachines(ConsoleReporter(Console(file=out, width=120)), ["ks"], "queued", clock=lambda: now[0])
    lines.TICK_EVERY = 0.01
    with lines.ticking():
        lines.update("ks", "starting · a")
        lines.update("ks", "starting · b")
        now[0] = 61
        deadline = time.monotonic() + 10
        while "starting · b" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "ks: starting · b" in out.getvalue()


def test_stack_summary_names_the_slowest_phases_and_only_urls_devstack_gave() -> None:
    from labctl.provision import StackResult
    from labctl.ui import print_stack_summary

    out = io.StringIO()
    phases = [("starting", 200.0), ("Installing package prerequisites", 540.0),
              ("Installing OpenStack project source", 480.0), ("Configuring and starting MySQL", 20.0),
              ("Starting Keystone", 600.0)]
    print_stack_summary(Console(file=out, width=200), "x", {
        "ks": StackResult("ks", "ok", 1840, "Starting Keystone", keystone="http://10.0.0.2/identity/", phases=phases)},
        None)
    text = out.getvalue()
    assert ("ks, slowest phases: Starting Keystone 10m00s, Installing package prerequisites 9m00s,"
            " Installing OpenStack project source 8m00s") in text
    assert "http://10.0.0.2/identity/" in text and "dashboard" in text and "/dashboard" not in text


def test_warnings_print_brackets_as_words() -> None:
    out = io.StringIO()
    ConsoleReporter(Console(file=out, width=200)).warn("cannot listen on [::]:2201 ([bold]taken[/bold]) [/]")
    assert "cannot listen on [::]:2201 ([bold]taken[/bold]) [/]" in out.getvalue()


def test_status_of_a_classroom_shows_trainees_as_written() -> None:
    from labctl.machine_status import MachineStatus
    from labctl.ui_status import print_status

    out = io.StringIO()
    seats = [MachineStatus(f"seat-0{n}", "allinone", f"10.0.0.{n}", f"d{n}", "running", (), 1024, 1, 5.0, "vagrant",
                           trainee=t) for n, t in ((1, "[red]Ada[/red]"), (2, ""))]
    print_status(Console(file=out, width=200), "class", seats)
    text = out.getvalue()
    assert "trainee" in text and "[red]Ada[/red]" in text and "role" not in text
    assert seats[0].as_json()["trainee"] == "[red]Ada[/red]" and seats[1].as_json()["trainee"] is None


HOSTILE = "[/x] Starting [bold]Keystone\x1b[2J\x1b]0;owned\x07"


def test_words_from_outside_are_shown_as_words() -> None:
    """A plugin's `echo_summary "[/x]"`, a path with brackets, stack.sh's last lines with escape
    sequences: printed as text, never parsed as markup (MarkupError) nor passed raw to the terminal."""
    from labctl.provision import StackResult
    from labctl.ui import print_stack_summary

    for terminal in (False, True):
        out = io.StringIO()
        reporter = ConsoleReporter(Console(file=out, force_terminal=terminal, width=200))
        reporter.step(HOSTILE)
        reporter.warn(HOSTILE)
        with reporter.machines(["seat-01"], "booting") as progress:
            progress.update("seat-01", HOSTILE)
        print_stack_summary(reporter.console, "lab", {"seat-01": StackResult(
            "seat-01", "failed", 3.0, HOSTILE, HOSTILE, [HOSTILE], None, HOSTILE, [(HOSTILE, 2.0)])}, None)
        text = out.getvalue()
        assert "[/x] Starting [bold]Keystone" in text
        assert "\x1b[2J" not in text and "\x1b]0;" not in text and "\x07" not in text


def test_a_home_with_brackets_plans(run: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "a[/x]b [bold]c"))
    result = run("plan", "--distro", "debian")
    assert result.code == 0, result.err
    assert "a[/x]b [bold]c" in result.out.replace("\n", "")
    assert run("list").code == 0


def test_a_14_seat_class_reads_whole_at_80_columns(run: Callable[..., Result], isolated_home: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`status` of a classroom, `plan`, `list` and `boxes` in an 80-column terminal: every seat's
    name and every address whole (no `sea…`, no `192.168.11…`), whatever columns had to go, and no
    line wider than the terminal (issue 24 item 1)."""
    from labctl.machine_status import MachineStatus
    from labctl.ui_status import print_status

    names = ["Ada Lovelace-Byron", "Grace Brewster Murray Hopper", "Edsger Wybe Dijkstra", "Barbara Liskov"]
    seats = [MachineStatus(f"seat-{n:02d}", "allinone", f"192.168.110.{9 + n}", f"labctl-c-seat-{n:02d}",
                           "running", (f"192.168.121.{100 + n}", f"192.168.110.{9 + n}"), 8192, 2, 3700.0 + n,
                           "vagrant", devstack="stacked" if n % 2 else "failed at Starting Keystone",
                           trainee=names[n % len(names)] if n < 12 else "") for n in range(1, 15)]
    out = io.StringIO()
    print_status(Console(file=out, width=80), "class", seats)
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for s in seats:
        assert s.name in text and str(s.ssh_address) in text, (s.name, text)
    assert "…" not in text
    # The commands, at 80 columns: rich's console width (COLUMNS) for a pipe, as on a terminal.
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("labctl.ui.make_console", lambda stderr=False: Console(width=80, stderr=stderr))
    assert run("init", "--classroom", "14", "--name", "wide").code == 0
    plan = run("plan")
    lines = plan.out.splitlines()
    table = [line for line in lines if line.startswith(("│", "┃", "┏", "└"))]
    assert table and max(len(line) for line in table) <= 80, plan.out
    for n in range(1, 15):
        assert f"seat-{n:02d}" in plan.out
    assert "…" not in "".join(table)
    for argv in (["list"], ["boxes"], ["status", "--lab", "wide"]):
        shown = run(*argv)
        assert shown.code == 0, shown.err
        assert max(len(line) for line in shown.out.splitlines()) <= 80, shown.out
        assert "…" not in shown.out, shown.out
    assert all(f"seat-{n:02d}" in run("status", "--lab", "wide").out for n in range(1, 15))


# ---------------------------------------------------------------------------------------------
# status --watch


def _seats(devstack: dict[str, str]) -> list[Any]:
    from labctl.machine_status import MachineStatus

    return [MachineStatus(name=n, role="allinone", lab_ip=f"192.168.150.{10 + i}", domain=f"labctl-class-{n}",
                          state="running", addresses=(), memory_mb=1024, vcpus=1, uptime_s=60.0 * i, user="vagrant",
                          devstack=d) for i, (n, d) in enumerate(devstack.items())]


def test_watch_in_a_log_prints_only_what_changed() -> None:
    from labctl.ui_status import watch_status

    out = io.StringIO()
    rounds = iter([{"seat-01": "stacking", "seat-02": ""}, {"seat-01": "stacking", "seat-02": ""},
                   {"seat-01": "stacked", "seat-02": "failed at Starting Keystone"}])
    slept: list[float] = []
    watch_status(Console(file=out, width=100), lambda: ("class", _seats(next(rounds))), 2.0, lambda: "10:00:00",
                 slept.append, rounds=2)
    text = out.getvalue()
    assert text.count("Lab class") == 2 and slept == [2.0, 2.0]
    assert "1 stacking, 1 not run · 10:00:00 · every 2 s, Ctrl-C to stop" in text
    assert "1 stacked, 1 failed" in text


def test_watch_on_a_terminal_redraws_the_class_in_place(tmp_path: Path, run: Callable[..., Result],
                                                         isolated_home: Path) -> None:
    """`labctl status --watch 1` in a real terminal (tmux, 80 columns) while a class comes up: the
    table is redrawn in place (one table on the screen), a seat's new state shows within seconds, and
    Ctrl-C ends it with exit 0."""
    import os
    import shutil
    import subprocess

    from labctl import records
    from labctl.state import LabHome

    tmux = shutil.which("tmux")
    assert tmux, "tmux is needed (install.sh --dev installs it)"
    (isolated_home / "lab.yaml").write_text("name: watched\nclassroom: {seats: 6, seat: {memory: 1G, cpus: 1}}\n")
    assert run("plan").code == 0
    session = f"labctl-watch-{os.getpid()}"
    socket = str(tmp_path / "tmux.sock")
    labctl = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "labctl"
    command = f"{labctl} status --watch 1 --lab watched; echo EXIT=$?; sleep 60"
    subprocess.run([tmux, "-S", socket, "new-session", "-d", "-s", session, "-x", "80", "-y", "30", command],
                   check=True, env=os.environ)

    def screen() -> str:
        return subprocess.run([tmux, "-S", socket, "capture-pane", "-p", "-t", session], capture_output=True,
                              text=True, check=True).stdout

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if text in (shown := screen()):
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never showed:\n{screen()}")

    try:
        first = wait_for("6 not run")
        assert all(f"seat-0{n}" in first for n in range(1, 7))
        assert max(len(line) for line in first.splitlines()) <= 80
        lab_dir = LabHome(Path(os.environ["LABCTL_HOME"])).lab("watched")
        records.write(lab_dir, records.LabState({"seat-03": records.StackRecord("ok")}, None))
        later = wait_for("1 stacked, 5 not run")
        assert later.count("Lab watched") == 1  # redrawn in place, not printed again below
        row = next(line for line in later.splitlines() if "seat-03" in line)
        assert "stacked" in row
        subprocess.run([tmux, "-S", socket, "send-keys", "-t", session, "C-c"], check=True)
        assert "EXIT=0" in wait_for("EXIT=")
    finally:
        subprocess.run([tmux, "-S", socket, "kill-server"], check=False, capture_output=True)


def test_status_grid_shows_a_class_of_30_in_10_lines_at_80_columns(run: Callable[..., Result],
                                                                   isolated_home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated_home / "lab.yaml").write_text(
        "name: big\nclassroom: {trainees: [Ada Lovelace, Grace Brewster Murray Hopper], seats: 30,"
        " seat: {memory: 1G, cpus: 1}}\n")
    assert run("plan").code == 0
    monkeypatch.setattr("labctl.ui.make_console", lambda stderr=False: Console(width=80, color_system=None))
    shown = run("status", "--grid")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0] == "Lab big" and len(lines) == 11 and max(len(line) for line in lines) <= 80
    cells = " ".join(lines[1:])
    for number in range(1, 31):
        assert re.search(rf"\b{number:02d} ", cells), number
    assert "01 Ada Lovelace no VM" in " ".join(cells.split()) and "Grace Brews…" in cells


def test_the_health_of_a_class_across_hosts_names_each_seats_host() -> None:
    """The trainer's last look before trainees arrive: every seat, its host, SSH and its Keystone."""
    from labctl.cloud.dayone import Outcome
    from labctl.ui import print_health

    health = {
        "seat-01": [Outcome("health", "ssh", "ok", "vagrant@192.168.121.5"),
                    Outcome("health", "keystone", "ok", "token issued")],
        "seat-02": [Outcome("health", "ssh", "ok", "vagrant@192.168.121.5 via its host"),
                    Outcome("health", "keystone", "failed", "[red]401")],
        "seat-03": [Outcome("health", "ssh", "failed", "no answer on port 22")],
    }
    out = io.StringIO()
    print_health(Console(file=out, width=200), "class", health,
                 {"seat-01": None, "seat-02": "rack2", "seat-03": "rack2"})
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if "machine" in line)
    assert [c.strip() for c in header.split("┃")[1:5]] == ["machine", "host", "ssh", "keystone"]
    row = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in lines
           if line.startswith("│")}
    assert row["seat-01"][:3] == ["this machine", "vagrant@192.168.121.5", "token issued"]
    assert row["seat-02"][:3] == ["rack2", "vagrant@192.168.121.5 via its host", "failed: [red]401"]
    assert row["seat-03"][:3] == ["rack2", "failed: no answer on port 22", ""]
    alone = io.StringIO()
    print_health(Console(file=alone, width=200), "solo", {"seat-01": health["seat-01"]}, {"seat-01": None})
    assert "host" not in alone.getvalue()  # one host: no column for it
