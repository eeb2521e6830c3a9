"""The process that lets trainees in: TCP ports on the host, each forwarded to one seat's port.

    python -m labctl.classroom.forward ROUTES.json

ROUTES.json: {"routes": [[listen_address, listen_port, seat_address, seat_port], ...]}. The process
binds every port first and prints one line, `ready` or `error: ...`, then serves until SIGTERM.
It runs in its own session so that it outlives the labctl command that started it (a class
lasts hours); `labctl access close`, `halt` and `destroy` stop it.

A byte pump and nothing else: it never reads what passes (SSH and HTTP end to end, between the
trainee and the seat), and each port leads to one seat's address and port only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

MAX_CONNECTIONS_PER_PORT = 64
CONNECT_TIMEOUT = 10.0


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


def _handler(target: tuple[str, int], slots: asyncio.Semaphore):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if slots.locked():  # a flood of connections does not take every file descriptor
            writer.close()
            return
        async with slots:
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
            except (TimeoutError, OSError):
                writer.close()  # the seat is down: the trainee's client says "connection closed"
                return
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
            for w in (writer, up_writer):
                w.close()
    return handle


async def serve(routes: list[tuple[str, int, str, int]]) -> bool:
    servers = []
    try:
        for listen, port, address, target_port in routes:
            handle = _handler((address, target_port), asyncio.Semaphore(MAX_CONNECTIONS_PER_PORT))
            servers.append(await asyncio.start_server(handle, listen, port, reuse_address=True))
    except OSError as exc:
        print(f"error: cannot listen on {listen}:{port} ({exc.strerror or exc})", flush=True)
        return False
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the parent stops reading after the first line
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()
    return True


def read_routes(path: Path) -> list[tuple[str, int, str, int]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [(str(a), int(p), str(b), int(q)) for a, p, b, q in data["routes"]]


def main() -> int:
    return 0 if asyncio.run(serve(read_routes(Path(sys.argv[1])))) else 1


if __name__ == "__main__":
    sys.exit(main())
