"""This machine's services (the package caches, the git mirrors) offered to another host's machines
at the same address and port as here: one SSH connection to the host with remote forwards
(`ssh -N -R ADDRESS:PORT:ADDRESS:PORT`), through the sshd and key libvirt already uses.

Why forwards rather than a cache on every host: the host needs nothing installed, every package is
fetched once from outside for all hosts (one cache), and a machine's configuration is the same
whatever host it lives on (the management network's host address is 192.168.121.1 on every host;
a lab network's host address is the same on every host that has it). The forward listens on the
host's address on that network only, never on every interface; the host's sshd must allow it
(`GatewayPorts clientspecified`): without it, sshd binds its loopback, where no machine reaches, so
labctl checks each forwarded port from the host itself and names the setting when one is missing.
A relay that cannot be opened is an error naming the host and the port, never a silent fetch from
outside: the machines' apt and pip are set to the caches' address and fail without them.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from labctl import supervisor
from labctl.errors import LabctlError
from labctl.state import atomic_write, locked, private_dir

# An address and port on the host, and the address and port here its connections go to.
Forward = tuple[str, int, str, int]


def same(address: str, port: int) -> Forward:
    """A service at the same address and port on the host as here."""
    return (address, port, address, port)


START_TIMEOUT = 30.0

# $1... pairs of address and port: each one the host cannot connect to, on a line.
PROBE = r"""
bad=0
while [ $# -gt 1 ]; do
  timeout 5 bash -c ': < "/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null || { echo "$1:$2"; bad=1; }
  shift 2
done
exit $bad
"""


class RelayError(LabctlError):
    """A host's machines cannot be given this machine's services."""


@dataclass(frozen=True)
class Relay:
    """The forwards of one purpose (`what`: "caches", "git") to one host, kept in `folder`."""

    host: str
    ssh: Sequence[str]  # ssh and labctl's options for the host, its address last
    folder: Path
    what: str
    forwards: tuple[Forward, ...]

    @property
    def _stem(self) -> str:
        return f"{self.host}.{self.what.replace(' ', '-')}"

    @property
    def _pid_file(self) -> Path:
        return self.folder / f"{self._stem}.pid"

    @property
    def _state_file(self) -> Path:
        return self.folder / f"{self._stem}.json"

    @property
    def log(self) -> Path:
        return self.folder / f"{self._stem}.log"

    def _markers(self) -> list[str]:
        """What the recorded ssh's command line holds whatever its forwards (a relay with other ports
        is stopped all the same before a new one starts)."""
        return ["-N", "-R", str(self.ssh[-1])]

    def running(self) -> int | None:
        try:
            recorded = [tuple(f) for f in json.loads(self._state_file.read_text())["forwards"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        pid = supervisor.recorded(self._pid_file, self._markers())
        return pid if recorded == list(self.forwards) else None

    def unreachable(self) -> list[str]:
        """The forwards the host itself cannot connect to ("address:port"); all of them when the host
        cannot be asked."""
        args = [a for address, port, _here, _port in self.forwards for a in (address, str(port))]
        try:
            done = subprocess.run([*self.ssh, shlex.join(["bash", "-c", PROBE, "probe", *args])], capture_output=True,
                                  text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return [f"{f[0]}:{f[1]}" for f in self.forwards]
        if done.returncode == 255:  # ssh's own failure
            return [f"{f[0]}:{f[1]}" for f in self.forwards]
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """The forwards open on the host, checked from the host (kept when they run already). Two
        labctl starting the same relay at once start it once."""
        private_dir(self.folder)
        with locked(self.folder / f".{self.host}.{self.what}.lock"):
            if self.running() is not None and not self.unreachable():
                return
            self.stop()
            self._start(timeout)

    def _start(self, timeout: float) -> None:
        argv = [*self.ssh[:-1], "-N", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveCountMax=3",
                *(a for f in self.forwards for a in ("-R", ":".join(map(str, f)))),
                self.ssh[-1]]
        proc = supervisor.spawn(argv, self.log)
        missing: list[str] = []

        def open_there() -> bool:
            missing[:] = self.unreachable()
            return not missing

        if not supervisor.wait_until(proc, open_there, timeout):
            alive = proc.poll() is None
            supervisor.kill(proc)
            said = _last_line(self.log)
            if alive and "remote port forwarding failed" not in said:
                raise RelayError(
                    f"host {self.host} does not offer the {self.what} to its machines: nothing answers there on"
                    f" {', '.join(missing)}", hint="its sshd binds forwarded ports to its loopback only: add"
                    " 'GatewayPorts clientspecified' to /etc/ssh/sshd_config on the host and reload sshd")
            raise RelayError(f"host {self.host} does not offer the {self.what} to its machines: ssh said: {said}",
                             hint=f"is another program listening there on {', '.join(missing) or 'that port'}?"
                                  f" (ss -ltnp on the host; the log is {self.log})")
        supervisor.record(self._pid_file, proc.pid)
        atomic_write(self._state_file, json.dumps({"forwards": [list(f) for f in self.forwards]}) + "\n")

    def stop(self) -> bool:
        """The recorded relay to this host for this purpose stopped, whatever its forwards."""
        self._state_file.unlink(missing_ok=True)
        return supervisor.stop_recorded(self._pid_file, self._markers())


def relays_in(folder: Path) -> list[tuple[str, bool]]:
    """Each relay recorded in `folder` ("HOST.WHAT") and whether it still runs."""
    out = []
    for pid_file in sorted(folder.glob("*.pid")) if folder.is_dir() else []:
        out.append((pid_file.stem, supervisor.recorded(pid_file, ["-N", "-R"]) is not None))
    return out


def stop_relays(folder: Path) -> list[str]:
    """Every relay recorded in `folder` stopped (the caches' relays with the caches, a lab's with the
    lab): "HOST.WHAT" of each one that ran."""
    stopped = []
    for pid_file in sorted(folder.glob("*.pid")) if folder.is_dir() else []:
        pid_file.with_suffix(".json").unlink(missing_ok=True)
        if supervisor.stop_recorded(pid_file, ["-N", "-R"]):
            stopped.append(pid_file.stem)
    return stopped


@contextlib.contextmanager
def relaying(relays: Sequence[Relay]) -> Iterator[None]:
    """Relays open for the time of a block (the git mirrors, served while DevStack runs)."""
    opened: list[Relay] = []
    try:
        for relay in relays:
            relay.start()
            opened.append(relay)
        yield
    finally:
        for relay in opened:
            relay.stop()


def _last_line(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()[-20:] if line.strip()]
        if lines:
            return lines[-1][-300:]
    return "nothing"
