"""labctl's one process supervisor (labctl/supervisor.py), on real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from labctl import supervisor


def _proc_stat_ticks(pid: int) -> int:
    """The start time as /proc/PID/stat's 22nd field: what every pid file labctl wrote before holds."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def test_start_time_reads_as_the_pid_files_always_held_it() -> None:
    """A cache or forwarder recorded by an older labctl is still recognised (not started twice)."""
    with subprocess.Popen(["sleep", "30"]) as proc:
        try:
            assert supervisor.start_ticks(proc.pid) == _proc_stat_ticks(proc.pid)
        finally:
            proc.kill()


def test_recorded_names_only_the_process_it_recorded(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    assert supervisor.recorded(pid_file, ["sleep"]) is None  # no file
    pid_file.write_text("garbled")
    assert supervisor.recorded(pid_file, ["sleep"]) is None
    with subprocess.Popen(["sleep", "30"], cwd=tmp_path) as proc:
        try:
            supervisor.record(pid_file, proc.pid)
            assert supervisor.recorded(pid_file, ["sleep"]) == proc.pid
            assert supervisor.recorded(pid_file, ["sleep"], cwd=tmp_path) == proc.pid
            assert supervisor.recorded(pid_file, ["sleep"], cwd=Path("/")) is None  # another folder's
            assert supervisor.recorded(pid_file, ["vagrant"]) is None  # not the program recorded
            pid_file.write_text(f"{proc.pid} {supervisor.start_ticks(proc.pid) - 1}\n")
            assert supervisor.recorded(pid_file, ["sleep"]) is None  # a reused pid: another start time
            assert pid_file.exists()  # a reader never removes the file
        finally:
            proc.kill()
    assert supervisor.recorded(pid_file, ["sleep"]) is None  # dead


def test_stop_kills_what_ignores_sigterm_and_collects_a_child(tmp_path: Path) -> None:
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
                                 "time.sleep(60)"], stdout=subprocess.PIPE)
    assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == b"ready"
    pid_file = tmp_path / "stubborn.pid"
    supervisor.record(pid_file, stubborn.pid)
    assert supervisor.stop_recorded(pid_file, ["SIGTERM"], grace=0.5)
    assert not Path(f"/proc/{stubborn.pid}").exists()  # killed and collected: not even a zombie left
    assert stubborn.poll() is not None
    assert not pid_file.exists()
    assert not supervisor.stop_recorded(pid_file, ["SIGTERM"])  # nothing recorded any more


def test_end_stops_a_started_program(tmp_path: Path) -> None:
    proc = supervisor.spawn(["sleep", "60"], tmp_path / "log")
    supervisor.end(proc, grace=2)
    assert proc.returncode is not None
