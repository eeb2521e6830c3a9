"""labctl's one process supervisor: every program labctl starts and must find, wait for or stop
again (the host's caches, the classroom's forwarder, the git daemon, `vagrant up`) goes through here,
on psutil (the only importer of it).

A program that outlives the labctl which started it is known afterwards by a pid file that holds
its pid *and* its start time (clock ticks since boot, as /proc tells it), and is recognised by its
command line (and, where asked, its working folder). A pid that was reused by another program is
never named, let alone signalled.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from labctl.state import atomic_write

_TICKS = os.sysconf("SC_CLK_TCK")


def start_ticks(pid: int) -> int:
    """When a process started, in clock ticks since boot: with its pid, it names one process for good
    (psutil's start time is the kernel's tick count over the boot time; turned back into ticks here,
    the form pid files have always held)."""
    return round((psutil.Process(pid).create_time() - psutil.boot_time()) * _TICKS)


def record(pid_file: Path, pid: int) -> None:
    """The pid file written whole (a reader sees the old one or the new one)."""
    atomic_write(pid_file, f"{pid} {start_ticks(pid)}\n")


def recorded(pid_file: Path, markers: Sequence[str], cwd: Path | None = None) -> int | None:
    """The recorded process when it still runs: the same start time, every marker in one of its
    arguments, and working in `cwd` when one is given. None for anything else (no file, a garbled
    one, a dead or reused pid); the file is left as it is (a reader never removes a writer's file)."""
    try:
        pid_text, ticks_text = pid_file.read_text().split()
        pid, ticks = int(pid_text), int(ticks_text)
        process = psutil.Process(pid)
        argv = process.cmdline()
        same = (start_ticks(pid) == ticks and process.status() != psutil.STATUS_ZOMBIE
                and all(any(marker in arg for arg in argv) for marker in markers)
                and (cwd is None or Path(process.cwd()).resolve() == cwd.resolve()))
    except (OSError, ValueError, psutil.Error):
        same = False
    return pid if same else None


def stop(pid: int, grace: float, first: signal.Signals = signal.SIGTERM) -> None:
    """Ask a program to end (`first`: SIGTERM, or SIGINT as Ctrl-C would), SIGKILL it when it has not
    within `grace` seconds, and wait for it (collected when it is labctl's child)."""
    try:
        process = psutil.Process(pid)
        process.send_signal(first)
        try:
            process.wait(grace)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(10)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


def stop_recorded(pid_file: Path, markers: Sequence[str], grace: float = 10.0) -> bool:
    """SIGTERM to the recorded program, SIGKILL after `grace` seconds; False when none was running."""
    pid = recorded(pid_file, markers)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    stop(pid, grace)
    return True


def spawn(argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None,
          stdout: bool = False) -> subprocess.Popen[bytes]:
    """Start a program in its own session (Ctrl-C in the terminal does not reach it), stderr (and
    stdout unless `stdout`: then it is a pipe to read the ready line from) appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as err:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if stdout else err,
                                stderr=err, start_new_session=True, cwd="/",
                                env={**os.environ, **env} if env else None)


def first_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The first line the program prints, or "" when it prints none in time."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline(200).decode(errors="replace").strip()


def wait_until(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float) -> bool:
    """Poll `ready` while the program lives: True when it became ready in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.1)
    return False


def end(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """A program labctl started and no longer needs: SIGTERM, SIGKILL after `grace`, collected."""
    if proc.poll() is None:
        stop(proc.pid, grace)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """A program that did not start well: stopped at once and collected."""
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
