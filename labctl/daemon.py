"""Long-lived helper processes that outlive the labctl which started them (the classroom's
forwarder, the host's caches): started in their own session, known afterwards by a pid file that
holds the pid *and* the process's start time, and recognised by their command line. A pid that was
reused by another program is never named, let alone signalled.
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

from labctl.proc import start_ticks
from labctl.state import atomic_write


def running(pid_file: Path, markers: Sequence[str]) -> int | None:
    """The recorded process when it still runs (same start time) with every marker in its argv."""
    try:
        pid_text, ticks_text = pid_file.read_text().split()
        pid, ticks = int(pid_text), int(ticks_text)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        same = start_ticks(pid) == ticks and all(
            any(os.fsencode(marker) in arg for arg in cmdline) for marker in markers)
    except (OSError, ValueError, IndexError):
        same = False
    return pid if same else None


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


def record(pid_file: Path, proc: subprocess.Popen[bytes]) -> None:
    atomic_write(pid_file, f"{proc.pid} {start_ticks(proc.pid)}\n")


def kill(proc: subprocess.Popen[bytes]) -> None:
    """A program that did not start well: stopped and collected."""
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


def stop(pid_file: Path, markers: Sequence[str], grace: float = 10.0) -> bool:
    """SIGTERM to the recorded program, SIGKILL after `grace` seconds; False when none was running."""
    pid = running(pid_file, markers)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if start_ticks(pid) is None:
                break
        except (OSError, ValueError, IndexError):
            break
        _reap(pid)
        time.sleep(0.05)
    else:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return True


def _reap(pid: int) -> None:
    """The program is our child when this process started it: collect it, or it stays a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
