"""The process that lets trainees in: TCP ports on the host, each forwarded to one seat's port.

    python -m labctl.classroom.forward ROUTES.json

ROUTES.json: {"routes": [[listen_address, listen_port, seat_address, seat_port, via], ...],
              "tunnels": {HOST: [ssh, ..., HOST_ADDRESS]},
              "refuse_from": ["192.168.121.0/24", ...], "limits": {...}}  (all but routes optional).
The process binds every port first and prints one line, `ready` or `error: ...`, then serves until
SIGTERM. It runs in its own session so that it outlives the labctl command that started it (a class
lasts hours); `labctl access close`, `halt` and `destroy` stop it.

A seat on another hypervisor host (`via`: that host's name) is reached through one SSH connection to
that host (`tunnels`: the ssh command labctl reaches the host with), which forwards a Unix socket
of the forwarder's private folder to each such seat's port (`ssh -N -L SOCKET:SEAT:PORT`): the hosts
need nothing but the sshd and key libvirt already uses, trainees type the one address of the sheet,
and the seat's port is never opened on any network. The forwarder starts these connections before it
says `ready`, and starts one again when it ends (a host rebooted, a network cut), waiting longer
each time up to half a minute; a trainee who connects meanwhile is refused, as for a seat that is down.

A byte pump and nothing else: it never reads what passes (SSH and HTTP end to end, between the
trainee and the seat), and each port leads to one seat's address and port only.

It is exposed to a room of people, so it holds under a flood (issue 19):
- connections from the labs' own networks (a seat dialling the host) are closed at once: a seat's
  way to another seat is never through the host;
- one address holds at most `per_client` connections on a port, a port at most `per_port`, and all
  ports together at most what the process's descriptors allow (two per connection, a reserve kept
  for listening and accepting): accept never runs out of descriptors;
- when a port or the whole budget is full, the newcomer takes the oldest connection of the address
  that holds the most (when that address holds more than the newcomer would): a flood from a few
  addresses can never lock a trainee out of their seat;
- a client that sends nothing within `first_byte` seconds of connecting (an SSH or HTTP client
  speaks at once) is dropped, and so is a connection idle both ways for `idle` seconds;
- what it refuses is counted and written to its log at most once every `log_every` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from labctl.classroom.tunnels import Route, Tunnel, open_tunnels, tunnels_for


@dataclass(frozen=True)
class Limits:
    per_port: int = 64
    per_client: int = 16  # a browser opens about 6 connections to one host and port
    first_byte: float = 30.0
    idle: float = 4 * 3600.0  # an SSH shell left open over a long lunch stays
    connect: float = 10.0
    log_every: float = 10.0

    @classmethod
    def from_json(cls, raw: object) -> Limits:
        """The routes file's `limits` (labctl writes it; tests shorten the times)."""
        given = raw if isinstance(raw, dict) else {}
        base = cls()
        ints = {n: int(given.get(n, getattr(base, n))) for n in ("per_port", "per_client")}
        floats = {n: float(given.get(n, getattr(base, n))) for n in ("first_byte", "idle", "connect", "log_every")}
        return cls(ints["per_port"], ints["per_client"], floats["first_byte"], floats["idle"], floats["connect"],
                   floats["log_every"])


RESERVED_FDS = 48  # stdio, the event loop's own, the log, a socket being accepted and refused


def descriptor_budget(listeners: int) -> int:
    """Connections the process can hold: the soft limit raised to the hard one (capped), two
    descriptors per connection (the trainee's and the seat's), a reserve kept aside."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    wanted = min(wanted, 65536)
    if wanted > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return max(4, (soft - listeners - RESERVED_FDS) // 2)


class _Conn:
    __slots__ = ("client", "closed", "opened", "port", "seat", "sock", "spoke", "touched", "trainee")

    def __init__(self, port: int, client: str, sock: socket.socket) -> None:
        self.port, self.client, self.sock = port, client, sock
        self.trainee: asyncio.StreamWriter | None = None
        self.seat: asyncio.StreamWriter | None = None
        self.opened = self.touched = time.monotonic()
        self.spoke = self.closed = False

    def close(self) -> None:
        """Both ends, at once. A socket not yet in a transport is only shut down: its descriptor
        may be in the event loop's hands already, and a number closed under it would be reused by
        the next connection; the relay closes it for good (below)."""
        self.closed = True
        if self.trainee is None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        for writer in (self.trainee, self.seat):
            if writer is not None:
                writer.transport.abort()


class Forwarder:
    def __init__(self, routes: list[Route], refuse_from: list[str], limits: Limits, budget: int) -> None:
        self.routes = routes
        self.refuse_from = [ipaddress.ip_network(n, strict=False) for n in refuse_from]
        self.limits = limits
        self.budget = budget
        self.conns: list[_Conn] = []  # oldest first
        self.refused: Counter[str] = Counter()
        self.evicted = 0
        self.logged_at = time.monotonic()
        self.tasks: set[asyncio.Task[None]] = set()
        self.tunnels: dict[str, Tunnel] = {}

    # -- who gets in

    def _from_lab(self, client: str) -> bool:
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(client)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            return any(address in net for net in self.refuse_from)
        return False

    def _evict_for(self, client: str, port: int | None) -> bool:
        """Room for `client` (on `port`, or anywhere): the oldest connection of the address holding
        the most, when it holds more than the newcomer would."""
        scope = [c for c in self.conns if port is None or c.port == port]
        held = Counter(c.client for c in scope)
        heaviest, most = held.most_common(1)[0] if held else ("", 0)
        if most <= held[client] + 1:
            return False
        victim = next(c for c in scope if c.client == heaviest)
        victim.close()
        self.conns.remove(victim)
        self.evicted += 1
        return True

    def admit(self, client: str, port: int) -> str | None:
        """None when the client may connect, else the reason it may not."""
        if self._from_lab(client):
            return "from a lab network"
        on_port = [c for c in self.conns if c.port == port]
        if sum(c.client == client for c in on_port) >= self.limits.per_client:
            return "per-address limit"
        if len(on_port) >= self.limits.per_port and not self._evict_for(client, port):
            return "port full"
        if len(self.conns) >= self.budget and not self._evict_for(client, None):
            return "descriptor budget"
        return None

    # -- the pump

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn,
                    from_trainee: bool) -> None:
        try:
            while data := await reader.read(65536):
                conn.touched = time.monotonic()
                conn.spoke = conn.spoke or from_trainee
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()

    async def accept(self, listener: socket.socket, port: int, target: tuple[str, int] | Path) -> None:
        """One connection at a time, judged before anything is spent on it (asyncio's own server
        accepts a whole backlog before its handlers run: a flood would take every descriptor)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listener)
            except OSError:  # out of descriptors after all: counted, a breath, then on
                self.refused["accept failed"] += 1
                await asyncio.sleep(0.05)
                continue
            client = str(peer[0])
            reason = self.admit(client, port)
            if reason is not None:
                self.refused[reason] += 1
                sock.close()
                continue
            conn = _Conn(port, client, sock)
            self.conns.append(conn)
            task = asyncio.create_task(self._relay(conn, target))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _relay(self, conn: _Conn, target: tuple[str, int] | Path) -> None:
        try:
            reader, trainee = await asyncio.open_connection(sock=conn.sock)
            conn.trainee = trainee
            if conn.closed:
                return
            connecting = (asyncio.open_unix_connection(target) if isinstance(target, Path)
                          else asyncio.open_connection(*target))
            up_reader, seat = await asyncio.wait_for(connecting, self.limits.connect)
            conn.seat = seat
            if conn.closed:  # evicted while connecting: its descriptors are already given to another
                return
            await asyncio.gather(self._pump(reader, seat, conn, True), self._pump(up_reader, trainee, conn, False))
        except (TimeoutError, OSError):
            pass  # evicted meanwhile, or the seat is down: the trainee's client says "connection closed"
        finally:
            with contextlib.suppress(ValueError):
                self.conns.remove(conn)
            conn.close()
            if conn.trainee is None:  # never became a transport: the descriptor is ours to close
                conn.sock.close()

    # -- housekeeping

    async def sweep(self) -> None:
        """Once a second: drop the silent and the idle; now and then, one line of what was refused."""
        while True:
            await asyncio.sleep(1)
            now = time.monotonic()
            for conn in list(self.conns):
                silent = not conn.spoke and now - conn.opened > self.limits.first_byte
                if silent or now - conn.touched > self.limits.idle:
                    self.refused["silent" if silent else "idle"] += 1
                    conn.close()
                    with contextlib.suppress(ValueError):
                        self.conns.remove(conn)
            if now - self.logged_at >= self.limits.log_every:
                self.log(now)

    def log(self, now: float) -> None:
        self.logged_at = now
        if self.refused or self.evicted:
            what = ", ".join(f"{n} {reason}" for reason, n in sorted(self.refused.items()))
            print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} dropped {sum(self.refused.values())} ({what}),"
                  f" {self.evicted} evicted; {len(self.conns)} open of {self.budget}", file=sys.stderr, flush=True)
            self.refused.clear()
            self.evicted = 0


async def serve(routes: list[Route], refuse_from: list[str] | None = None, limits: Limits | None = None,
                ssh: dict[str, list[str]] | None = None) -> bool:
    folder = Path(tempfile.mkdtemp(prefix="labctl-fwd-"))  # 0700: the sockets to other hosts' seats
    try:
        return await _serve(routes, refuse_from or [], limits or Limits(), ssh or {}, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _serve(routes: list[Route], refuse_from: list[str], limits: Limits, ssh: dict[str, list[str]],
                 folder: Path) -> bool:
    forwarder = Forwarder(routes, refuse_from, limits, descriptor_budget(len(routes)))
    loop = asyncio.get_running_loop()
    # asyncio prints a traceback for a transport that fails: counted instead, so that a flood cannot
    # grow the log.
    loop.set_exception_handler(lambda _loop, _context: forwarder.refused.update(["error"]))
    listeners = []
    try:
        for listen, port, _address, _target_port, _via in routes:
            listener = socket.create_server((listen, port), backlog=128)
            listener.setblocking(False)
            listeners.append(listener)
    except OSError as exc:
        print(f"error: cannot listen on {listen}:{port} ({exc.strerror or exc})", flush=True)
        return False
    forwarder.tunnels = tunnels = tunnels_for(routes, ssh, folder)
    why = await open_tunnels(tunnels)
    if why is not None:
        for tunnel in tunnels.values():
            tunnel.stop()
        print(f"error: {why}", flush=True)
        return False
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the parent stops reading after the first line
    os.close(devnull)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    workers = [asyncio.create_task(forwarder.accept(
        listener, port, tunnels[via].forwards[(address, target_port)] if via is not None else (address, target_port)))
        for listener, (_listen, port, address, target_port, via) in zip(listeners, routes, strict=True)]
    workers.append(asyncio.create_task(forwarder.sweep()))
    workers += [asyncio.create_task(t.keep()) for t in tunnels.values()]
    await stop.wait()
    for task in workers:
        task.cancel()
    for tunnel in tunnels.values():
        tunnel.stop()
    for listener in listeners:
        listener.close()
    for conn in list(forwarder.conns):
        conn.close()
    return True


def read_routes(path: Path) -> tuple[list[Route], list[str], Limits, dict[str, list[str]]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    routes: list[Route] = [(str(r[0]), int(r[1]), str(r[2]), int(r[3]), str(r[4]) if len(r) > 4 and r[4] else None)
                           for r in data["routes"]]
    ssh = {str(host): [str(a) for a in argv] for host, argv in data.get("tunnels", {}).items()}
    return routes, [str(n) for n in data.get("refuse_from", [])], Limits.from_json(data.get("limits")), ssh


def main() -> int:
    routes, refuse_from, limits, ssh = read_routes(Path(sys.argv[1]))
    return 0 if asyncio.run(serve(routes, refuse_from, limits, ssh)) else 1


if __name__ == "__main__":
    sys.exit(main())
