"""The forwarder's SSH connections to other hypervisor hosts, for their seats (see forward.py): one
per host, forwarding a Unix socket of the forwarder's private folder to each seat's port there, started
again when it ends."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

Route = tuple[str, int, str, int, str | None]  # listen address, port, seat address, seat port, via host
TUNNEL_READY_TIMEOUT = 30.0
TUNNEL_RETRY_MAX = 30.0


@dataclass
class Tunnel:
    """One SSH connection to a hypervisor host, forwarding a Unix socket to each of its seats' ports."""

    host: str
    ssh: list[str]  # ssh and its options, the host's address last
    forwards: dict[tuple[str, int], Path] = field(default_factory=dict)  # (seat address, port) -> socket
    last_words: str = ""
    proc: asyncio.subprocess.Process | None = None

    def argv(self) -> list[str]:
        options = ["-N", "-o", "ExitOnForwardFailure=yes", "-o", "StreamLocalBindUnlink=yes",
                   "-o", "StreamLocalBindMask=0177", "-o", "ServerAliveCountMax=3"]
        forwards = [a for (address, port), sock in self.forwards.items() for a in ("-L", f"{sock}:{address}:{port}")]
        # It dies with the forwarder, even one killed outright: no SSH connection is left behind.
        return ["setpriv", "--pdeathsig", "TERM", *self.ssh[:-1], *options, *forwards, self.ssh[-1]]

    def up(self) -> bool:
        return all(sock.exists() for sock in self.forwards.values())

    async def start(self) -> None:
        for sock in self.forwards.values():
            sock.unlink(missing_ok=True)
        self.proc = await asyncio.create_subprocess_exec(*self.argv(), stdin=asyncio.subprocess.DEVNULL,
                                                         stdout=asyncio.subprocess.DEVNULL,
                                                         stderr=asyncio.subprocess.PIPE)

    async def listen(self) -> None:
        """What ssh says, its last line kept (for the error and the log)."""
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            if text := line.decode(errors="replace").strip():
                self.last_words = text[-300:]

    async def ready(self, timeout: float) -> str | None:
        """None once every socket is there; else why not (ssh ended, or the time ran out)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self.up():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                await asyncio.sleep(0.2)  # its last words
                said = self.last_words or (f"ssh ended ({self.proc.returncode})" if self.proc.returncode is not None
                                           else f"no connection within {timeout:.0f} s")
                return f"host {self.host} cannot be reached for its seats: {said}"
            await asyncio.sleep(0.1)
        return None

    async def keep(self) -> None:
        """While the forwarder serves: started again when it ends, after 1, 2, 4... up to 30 seconds."""
        delay = 1.0
        while True:
            assert self.proc is not None
            listening = asyncio.create_task(self.listen())
            await self.proc.wait()
            await listening
            print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} the connection to host {self.host} ended"
                  f" ({self.last_words or self.proc.returncode}); again in {delay:.0f} s", file=sys.stderr, flush=True)
            await asyncio.sleep(delay)
            began = time.monotonic()
            await self.start()
            if await self.ready(TUNNEL_READY_TIMEOUT) is None and time.monotonic() - began < TUNNEL_READY_TIMEOUT:
                delay = 1.0
            else:
                delay = min(delay * 2, TUNNEL_RETRY_MAX)

    def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()


def tunnels_for(routes: list[Route], ssh: dict[str, list[str]], folder: Path) -> dict[str, Tunnel]:
    """A tunnel per host that routes go through, a socket per seat's port, in `folder`."""
    tunnels: dict[str, Tunnel] = {}
    for _listen, _port, address, target_port, via in routes:
        if via is None:
            continue
        if via not in ssh:
            raise ValueError(f"route through host {via!r}, which has no tunnel")
        tunnel = tunnels.setdefault(via, Tunnel(via, ssh[via]))
        tunnel.forwards.setdefault((address, target_port), folder / f"{len(tunnels)}-{len(tunnel.forwards)}.sock")
    return tunnels


async def open_tunnels(tunnels: dict[str, Tunnel]) -> str | None:
    """Every host's connection up; None, or the first host's reason it is not."""
    for tunnel in tunnels.values():
        await tunnel.start()
    listening = [asyncio.create_task(t.listen()) for t in tunnels.values()]
    reasons = await asyncio.gather(*(t.ready(TUNNEL_READY_TIMEOUT) for t in tunnels.values()))
    for task in listening:
        task.cancel()
    return next((r for r in reasons if r is not None), None)
