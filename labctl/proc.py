"""The one way labctl runs a program on the host: an argv list (never a shell), its output kept in
a log file when one is given, its exit code always checked."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from labctl.errors import LabctlError

TAIL_LINES = 30


class CommandFailed(LabctlError):
    """A host command exited non-zero: carries the command, its exit code and its last lines."""

    exit_code = 1

    def __init__(self, argv: Sequence[str], code: int, output: str, hint: str | None = None,
                 what: str | None = None) -> None:
        self.argv = list(argv)
        self.code = code
        self.tail = "\n".join(output.strip().splitlines()[-TAIL_LINES:])
        last = self.tail.splitlines()[-1] if self.tail else "no output"
        super().__init__(f"{what or shlex.join(self.argv[:3])} failed (exit {code}): {last}", hint)


def run(argv: Sequence[str], *, log: Path | None = None, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, timeout: float | None = None, what: str | None = None,
        hint: str | None = None, input_text: str | None = None) -> str:
    """Run `argv`, return its output (stdout and stderr together). Raise CommandFailed on failure."""
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(list(argv), cwd=cwd, env=full_env, input=input_text, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                              check=False)
    except FileNotFoundError:
        raise LabctlError(f"{argv[0]} is not installed", hint="./install.sh installs what labctl needs") from None
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        raise CommandFailed(argv, -1, out + f"\ntimed out after {timeout:.0f} s", hint, what) from None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"$ {shlex.join(argv)}\n{proc.stdout}[exit {proc.returncode}]\n")
    if proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout, hint, what)
    return proc.stdout
