"""SSH to lab machines through Fabric: the only importer of fabric (and of paramiko, beneath it).

Host keys: each lab keeps its own known_hosts. A machine's key is recorded at first contact (trust
on first use, in the lab's file only) and a changed key is refused. The user's ~/.ssh is never read
or written.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shlex
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import paramiko
from fabric import Config, Connection

from labctl.cancel import CancelToken
from labctl.protocols import CommandResult, HostKeyChanged, RemoteCommandFailed, SshTarget, SshUnreachable

CONNECT_TIMEOUT = 15


def public_key(private_key: Path) -> str:
    """The authorized_keys line of a private key Vagrant made for a machine."""
    key = paramiko.PKey.from_path(private_key)
    return f"{key.get_name()} {key.get_base64()} labctl"


def make_key(private_key: Path) -> None:
    """A new ed25519 key for a machine that Vagrant makes none for (one booted straight from a stacked
    image: no box, no key inserted), where Vagrant keeps a machine's key. One that exists is kept."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if private_key.exists():
        return
    private_key.parent.mkdir(parents=True, exist_ok=True)
    data = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def _known_hosts_lock(path: Path) -> Iterator[None]:
    """One writer of a lab's known_hosts at a time, across threads and processes (`exec` and
    `stack` at once): a thread lock, then an flock on a file beside it (never through a link)."""
    with _TrustOnFirstUse.lock:
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _save_host_keys(keys: paramiko.HostKeys, path: Path) -> None:
    """Write through a temporary file of its own, then rename: a reader sees the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        keys.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Record an unknown host's key in the lab's known_hosts (one writer at a time), keeping every key
    another writer recorded meanwhile (the file is read again under the lock)."""

    lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with _known_hosts_lock(self.path):
            keys = paramiko.HostKeys()
            if self.path.exists():
                keys.load(str(self.path))
            keys.add(hostname, key.get_name(), key)
            _save_host_keys(keys, self.path)
        client.get_host_keys().add(hostname, key.get_name(), key)


_keys: dict[tuple[Path, float], paramiko.PKey] = {}
_keys_lock = threading.Lock()


def load_key(path: Path) -> paramiko.PKey:
    """The private key, loaded once per file. paramiko's own loading validates an RSA key's
    mathematics, about 30 ms of CPU per key: across 20 machines that alone made a parallel run
    several times slower. The lab's keys are its own files (Vagrant made them), so the check is
    skipped, as cryptography allows for trusted keys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    stamp = (path, path.stat().st_mtime)
    with _keys_lock:
        if stamp in _keys:
            return _keys[stamp]
    data = path.read_bytes()
    key: paramiko.PKey | None = None
    if b"-----BEGIN RSA PRIVATE KEY-----" in data or b"-----BEGIN PRIVATE KEY-----" in data:
        loaded = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
        if isinstance(loaded, rsa.RSAPrivateKey):
            key = paramiko.RSAKey(key=loaded)
    if key is None:
        key = paramiko.PKey.from_path(str(path))
    with _keys_lock:
        _keys[stamp] = key
    return key


def forget_hosts(known_hosts: Path, addresses: Sequence[str]) -> None:
    """Drop the recorded keys of addresses that now belong to new machines (a recreated machine, or
    a DHCP address handed to another one): their next contact records the new key."""
    if not known_hosts.exists() or not addresses:
        return
    with _known_hosts_lock(known_hosts):
        keys = paramiko.HostKeys(str(known_hosts))
        for address in addresses:
            for name in (address, f"[{address}]:22"):
                if name in keys:
                    del keys[name]
        _save_host_keys(keys, known_hosts)


def connect(host: SshTarget) -> Connection:
    # Fabric would read ~/.ssh/config, /etc/fabric.yaml and ~/.fabric.yaml (forward_agent, gateway...)
    # and the user's keys: a lab uses only its own settings (lazy: no configuration file is loaded).
    config = Config(lazy=True, overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})
    # A machine on another hypervisor host sits on that host's private network: through the host.
    conn = Connection(host.address, user=host.user, port=host.port, config=config, forward_agent=False,
                      connect_timeout=CONNECT_TIMEOUT, gateway=host.proxy_command,
                      connect_kwargs={"pkey": load_key(host.key_file), "look_for_keys": False,
                                      "allow_agent": False, "banner_timeout": CONNECT_TIMEOUT,
                                      "auth_timeout": CONNECT_TIMEOUT})
    conn.client.set_missing_host_key_policy(_TrustOnFirstUse(host.known_hosts))
    if host.known_hosts.exists():
        conn.client.load_host_keys(str(host.known_hosts))
    return conn


def run_command(host: SshTarget, command: str, timeout: float | None = None) -> CommandResult:
    started = time.monotonic()
    try:
        with connect(host) as conn:
            result = conn.run(command, timeout=timeout, in_stream=False)
    except paramiko.BadHostKeyException:
        changed = HostKeyChanged(host)
        return CommandResult(host.name, None, error=f"{changed.message} ({changed.hint})",
                          seconds=time.monotonic() - started)
    except Exception as exc:  # any SSH failure is this host's result, not a crash
        return CommandResult(host.name, None, error=f"{type(exc).__name__}: {exc}".rstrip(": "),
                          seconds=time.monotonic() - started)
    return CommandResult(host.name, result.exited, result.stdout, result.stderr, seconds=time.monotonic() - started)


class _Lines(io.TextIOBase):
    """A stream for Fabric's out_stream: hands each complete line to a callback."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.partial = ""

    def write(self, data: str) -> int:
        self.partial += data
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self.on_line(line + "\n")
        return len(data)

    def flush(self) -> None:
        """Lines are handed over as they complete; a partial line waits for its end."""

    def close(self) -> None:
        if self.partial:
            self.on_line(self.partial)
            self.partial = ""
        super().close()


class Session:
    """One SSH connection to a machine, for a sequence of commands and uploads."""

    # A machine that vanishes without a word (powered off, its network gone) sends no FIN: TCP would
    # wait a quarter of an hour. labctl sends a keepalive every KEEPALIVE seconds, and the kernel
    # gives up on data left unacknowledged for DEAD_AFTER seconds (TCP_USER_TIMEOUT): such a loss
    # is noticed within KEEPALIVE + DEAD_AFTER seconds, even while stack.sh says nothing.
    KEEPALIVE = 15
    DEAD_AFTER = 60

    def __init__(self, host: SshTarget, cancel: CancelToken) -> None:
        self.target = host
        self.conn = connect(host)
        try:
            self.conn.open()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if isinstance(exc, paramiko.BadHostKeyException):
                raise HostKeyChanged(host) from None
            raise SshUnreachable(f"{host.name}: cannot open SSH to {host.address}:{host.port} ({exc})",
                                 hint="labctl status shows whether it runs") from None
        self.conn.transport.set_keepalive(self.KEEPALIVE)
        sock = self.conn.transport.sock
        if hasattr(socket, "TCP_USER_TIMEOUT") and isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(self.DEAD_AFTER * 1000))
        self._unregister = cancel.on_cancel(self.conn.close)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self._unregister()
        self.conn.close()

    def run(self, command: str, what: str, *, on_line: Callable[[str], None] | None = None,
            check: bool = True, timeout: float | None = None) -> tuple[int, str]:
        """Run a shell command line; return (exit code, output). Raise RemoteCommandFailed if asked."""
        collected: list[str] = []

        def keep(line: str) -> None:
            collected.append(line)
            if len(collected) > 400:
                del collected[:200]
            if on_line:
                on_line(line)

        stream = _Lines(keep)
        try:
            result = self.conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout,
                                   out_stream=stream, err_stream=stream)
            exited = result.exited
        except (paramiko.SSHException, OSError, EOFError) as exc:
            # The connection broke under the command (the machine went away): no exit status.
            keep(f"labctl: connection lost: {exc}\n")
            exited = -1
        stream.close()
        output = "".join(collected)
        if check and exited != 0:
            raise RemoteCommandFailed(self.target.name, what, exited, output)
        return exited, output

    def upload_private(self, data: bytes) -> str:
        """Upload to a new file only the login user can read (mode 0600 before any byte is written)."""
        path = self._private_file()
        self.conn.put(io.BytesIO(data), remote=path)
        return path

    def upload_file(self, local: Path) -> str:
        """upload_private of a host file, streamed (an image may be gigabytes)."""
        path = self._private_file("/var/tmp")  # noqa: S108 - a new 0600 file of mktemp's; /tmp may be memory
        self.conn.put(str(local), remote=path, preserve_mode=False)  # stays 0600
        return path

    def _private_file(self, folder: str | None = None) -> str:
        _, out = self.run("umask 077 && mktemp" + (f" -p {shlex.quote(folder)}" if folder else ""), "mktemp")
        return out.strip().splitlines()[-1]


def wait_for_ssh(host: SshTarget, timeout: float, cancel: CancelToken, interval: float = 2.0) -> None:
    """Until `true` runs over SSH; a changed host key is refused at once."""
    deadline = time.monotonic() + timeout
    while not cancel.cancelled:
        result = run_command(host, "true", timeout=30)
        if result.ok:
            return
        if result.error and "host key" in result.error:
            raise HostKeyChanged(host)
        if time.monotonic() + interval > deadline:
            raise SshUnreachable(f"{host.name}: SSH at {host.address}:{host.port} did not answer within"
                                 f" {timeout:.0f} s ({result.error or f'exit {result.exit_code}'})",
                                 hint="labctl status shows whether it runs; labctl resume starts it")
        cancel.wait(interval)
    raise SshUnreachable(f"{host.name}: interrupted while waiting for SSH")


def run_parallel(hosts: Sequence[SshTarget], command: str, timeout: float | None = None,
                 on_done: Callable[[CommandResult], None] | None = None) -> dict[str, CommandResult]:
    """Run `command` on every host at once; every host gets a result (output or error)."""
    results: dict[str, CommandResult] = {}
    if not hosts:
        return results
    with ThreadPoolExecutor(max_workers=min(32, len(hosts))) as pool:
        futures = {pool.submit(run_command, h, command, timeout): h for h in hosts}
        for future in as_completed(futures):
            result = future.result()
            results[result.name] = result
            if on_done:
                on_done(result)
    return {h.name: results[h.name] for h in hosts}


class Ssh:
    """The SSH port (labctl.protocols.SshPort) for one run, on Fabric: its sessions close, and its
    waits stop, when the run's cancel token is set."""

    def __init__(self, cancel: CancelToken) -> None:
        self.cancel = cancel

    def session(self, target: SshTarget) -> Session:
        return Session(target, self.cancel)

    def wait(self, target: SshTarget, timeout: float, interval: float = 2.0) -> None:
        wait_for_ssh(target, timeout, self.cancel, interval)

    def run_parallel(self, targets: Sequence[SshTarget], command: str, timeout: float | None = None,
                     on_done: Callable[[CommandResult], None] | None = None) -> dict[str, CommandResult]:
        return run_parallel(targets, command, timeout, on_done)

    def forget(self, known_hosts: Path, addresses: Sequence[str]) -> None:
        forget_hosts(known_hosts, addresses)

    def public_key(self, private_key: Path) -> str:
        return public_key(private_key)

    def make_key(self, private_key: Path) -> None:
        make_key(private_key)
