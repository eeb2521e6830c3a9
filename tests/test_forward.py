"""The trainees' port forwarder on real sockets: bytes both ways, a taken port named, and a room of
people unable to lock a trainee out (a flood of idle connections on one port, a descriptor flood on
every port from several addresses, silent and idle connections dropped, seats refused), its log
bounded whatever arrives. Loopback only: 127.0.0.0/8 gives each "laptop" an address of its own."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ports import free_port

ROOT = Path(__file__).resolve().parent.parent


class EchoServer:
    """A seat: answers every byte it gets, prefixed."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(client,), daemon=True).start()

    @staticmethod
    def _echo(client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            while data := client.recv(65536):
                client.sendall(b"seat:" + data)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.sock.close()


def start_forwarder(tmp_path: Path, routes: list[list[Any]], *, nofile: int | None = None,
                    **extra: Any) -> tuple[subprocess.Popen[str], Path]:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"routes": routes, **extra}))
    log = tmp_path / "forward.log"

    def limit() -> None:  # a small descriptor limit, so that a test's flood reaches it
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "labctl.classroom.forward", str(path)], stdout=subprocess.PIPE,
                                stderr=err, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                preexec_fn=limit)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, log


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def login(source: str, port: int) -> bool:
    """A trainee's round trip through the forwarder: a line out, the seat's answer back."""
    try:
        with connect_from(source, port) as sock:
            sock.sendall(b"hello")
            return sock.recv(100) == b"seat:hello"
    except OSError:
        return False


def test_forwarder_pumps_bytes_both_ways_and_stops_on_sigterm(tmp_path: Path, echo: EchoServer) -> None:
    port = free_port()
    proc, _log = start_forwarder(tmp_path, [["127.0.0.1", port, "127.0.0.1", echo.port]])
    try:
        big = os.urandom(300_000)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(big)
            conn.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := conn.recv(65536):
                got += chunk
        assert got.startswith(b"seat:") and got.replace(b"seat:", b"") == big.replace(b"seat:", b"")
    finally:
        stop(proc)


def test_forwarder_says_which_port_is_taken(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        routes = tmp_path / "routes.json"
        routes.write_text(json.dumps({"routes": [["127.0.0.1", port, "127.0.0.1", 9]]}))
        out = subprocess.run([sys.executable, "-m", "labctl.classroom.forward", str(routes)], capture_output=True,
                             text=True, timeout=20, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 1 and out.stdout.startswith(f"error: cannot listen on 127.0.0.1:{port}")


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """The flood needs about a thousand sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_flood_never_locks_a_trainee_out(tmp_path: Path, echo: EchoServer, many_descriptors: None) -> None:
    ports = [free_port() for _ in range(16)]  # 8 seats, ssh and web each
    routes = [["127.0.0.1", p, "127.0.0.1", echo.port] for p in ports]
    # 200 descriptors: room for (200 - 16 listening - 48 reserved) / 2 = 68 connections in all.
    proc, log = start_forwarder(tmp_path, routes, nofile=200, limits={"log_every": 1})
    held: list[socket.socket] = []
    try:
        # 1. 64 idle connections on one seat's SSH port, from one laptop.
        for _ in range(64):
            with contextlib.suppress(OSError):
                held.append(connect_from("127.0.0.1", ports[0]))
        assert login("127.0.0.2", ports[0])
        # 2. Then a descriptor flood on every port, from six more laptops: far past what the
        #    forwarder's descriptors can hold.
        for n in range(3, 9):
            for port in ports:
                for _ in range(8):
                    with contextlib.suppress(OSError):
                        held.append(connect_from(f"127.0.0.{n}", port))
        assert len(held) > 700
        # Every seat's trainee still logs in, on every port, while the flood holds on.
        assert [p for p in ports if not login("127.0.0.2", p)] == [], log.read_text()
        assert [p for p in ports if not login("127.0.0.9", p)] == [], log.read_text()
        assert proc.poll() is None
        # The flood again, and again: the log grows by one line a second at most.
        size = log.stat().st_size
        for _ in range(3):
            for port in ports:
                with contextlib.suppress(OSError):
                    connect_from("127.0.0.1", port).close()
            time.sleep(0.5)
        time.sleep(1.5)
        text = log.read_text()
        assert "dropped" in text and "evicted" in text and "Traceback" not in text, text[-2000:]
        assert log.stat().st_size - size < 1000 and len(text) < 4000, text[-2000:]
    finally:
        for sock in held:
            sock.close()
        stop(proc)


def test_silent_and_idle_connections_are_dropped(tmp_path: Path, echo: EchoServer) -> None:
    port = free_port()
    proc, _log = start_forwarder(tmp_path, [["127.0.0.1", port, "127.0.0.1", echo.port]],
                                 limits={"first_byte": 1, "idle": 4})
    try:
        silent = connect_from("127.0.0.1", port)
        talker = connect_from("127.0.0.1", port)
        talker.sendall(b"hi")
        assert talker.recv(100) == b"seat:hi"
        time.sleep(2.5)
        assert closed(silent)  # said nothing within a second: dropped
        talker.sendall(b"still here")
        assert talker.recv(100) == b"seat:still here"  # spoke: kept
        time.sleep(5.5)
        assert closed(talker)  # idle both ways for 4 seconds: dropped
    finally:
        stop(proc)


def closed(sock: socket.socket) -> bool:
    try:
        sock.settimeout(2)
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_seats_cannot_come_through_the_host(tmp_path: Path, echo: EchoServer) -> None:
    """A seat dialling the host's forwarded ports (from the management or its lab network) is
    refused; the classroom's laptops are not."""
    port = free_port()
    proc, _log = start_forwarder(tmp_path, [["0.0.0.0", port, "127.0.0.1", echo.port]],  # noqa: S104
                                 refuse_from=["127.0.0.64/26"])
    try:
        assert not login("127.0.0.70", port)
        assert login("127.0.0.5", port)
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------
# Seats on another hypervisor host: through one SSH connection to that host (a real sshd here)


def host_ssh(tmp_path: Path, sshd: Any) -> list[str]:
    """The ssh command labctl reaches the host with (its own options, known_hosts and key)."""
    from labctl.hosts.inventory import HostEntry
    from labctl.hosts.transport import ssh_argv

    entry = HostEntry("far", f"qemu+ssh://{sshd.user}@127.0.0.1:{sshd.port}/system", ssh_key=sshd.client_key)
    return ssh_argv(entry, tmp_path / "home")


def tunnel_pids(forwarder: subprocess.Popen[str]) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(forwarder.pid).children(recursive=True) if p.name() == "ssh"]


def test_a_seat_on_another_host_is_reached_through_it_and_the_connection_comes_back(
        tmp_path: Path, echo: EchoServer) -> None:
    from sshd import make_sshd

    sshd = make_sshd(tmp_path / "sshd").start()
    port = free_port()
    try:
        proc, log = start_forwarder(tmp_path, [["127.0.0.1", port, "127.0.0.1", echo.port, "far"]],
                                    tunnels={"far": host_ssh(tmp_path, sshd)})
        try:
            assert login("127.0.0.2", port)
            (first,) = tunnel_pids(proc)
            os.kill(first, 9)  # the connection to the host drops (a network cut)
            deadline = time.monotonic() + 20
            while not login("127.0.0.2", port):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
            assert tunnel_pids(proc) != [first] and "the connection to host far ended" in log.read_text()
            again = tunnel_pids(proc)
            import psutil

            argv = psutil.Process(again[0]).cmdline()
            socket_path = Path(argv[argv.index("-L") + 1].split(":")[0])
            assert socket_path.is_socket() and socket_path.parent.stat().st_mode & 0o777 == 0o700
        finally:
            stop(proc)
        time.sleep(0.5)
        assert not any(Path(f"/proc/{pid}").exists() for pid in again)  # no SSH left behind
        assert not socket_path.parent.exists()
    finally:
        sshd.stop()


def test_a_host_that_cannot_be_reached_is_named_and_nothing_listens(tmp_path: Path) -> None:
    from sshd import make_sshd

    sshd = make_sshd(tmp_path / "sshd")  # never started: nothing on its port
    port = free_port()
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"routes": [["127.0.0.1", port, "10.0.0.9", 22, "far"]],
                                "tunnels": {"far": host_ssh(tmp_path, sshd)}}))
    done = subprocess.run([sys.executable, "-m", "labctl.classroom.forward", str(path)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1
    assert done.stdout.startswith("error: host far cannot be reached for its seats: ")
    assert "Connection refused" in done.stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again
