"""SSH to lab machines through Fabric: the only importer of fabric (and of paramiko, beneath it).

Host keys: each lab keeps its own known_hosts. A machine's key is recorded at first contact (trust
on first use, in the lab's file only) and a changed key is refused. The user's ~/.ssh is never read
or written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection

from labctl.errors import LabctlError

CONNECT_TIMEOUT = 15


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    user: str
    key_file: Path
    known_hosts: Path
    port: int = 22


@dataclass(frozen=True)
class HostResult:
    name: str
    exit_code: int | None  # None: the command never ran (see error)
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class HostKeyChanged(LabctlError):
    exit_code = 1


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Record an unknown host's key in the lab's known_hosts (one writer at a time)."""

    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with self._lock:
            keys = paramiko.HostKeys()
            if self.path.exists():
                keys.load(str(self.path))
            keys.add(hostname, key.get_name(), key)
            tmp = self.path.with_name(self.path.name + ".tmp")
            keys.save(str(tmp))
            tmp.replace(self.path)
        client.get_host_keys().add(hostname, key.get_name(), key)


def connect(host: Host) -> Connection:
    # Fabric would read ~/.ssh/config and the user's keys: a lab uses only its own.
    config = Config(overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})
    conn = Connection(host.address, user=host.user, port=host.port, config=config,
                      connect_timeout=CONNECT_TIMEOUT,
                      connect_kwargs={"key_filename": str(host.key_file), "look_for_keys": False,
                                      "allow_agent": False, "banner_timeout": CONNECT_TIMEOUT,
                                      "auth_timeout": CONNECT_TIMEOUT})
    conn.client.set_missing_host_key_policy(_TrustOnFirstUse(host.known_hosts))
    if host.known_hosts.exists():
        conn.client.load_host_keys(str(host.known_hosts))
    return conn


def run_command(host: Host, command: str, timeout: float | None = None) -> HostResult:
    started = time.monotonic()
    try:
        with connect(host) as conn:
            result = conn.run(command, timeout=timeout, in_stream=False)
    except paramiko.BadHostKeyException:
        return HostResult(host.name, None, error=f"the host key of {host.address} changed since labctl first"
                          f" saw it: refusing to connect (if the machine was recreated, remove its line from"
                          f" {host.known_hosts})", seconds=time.monotonic() - started)
    except Exception as exc:  # any SSH failure is this host's result, not a crash
        return HostResult(host.name, None, error=f"{type(exc).__name__}: {exc}".rstrip(": "),
                          seconds=time.monotonic() - started)
    return HostResult(host.name, result.exited, result.stdout, result.stderr, seconds=time.monotonic() - started)


def run_parallel(hosts: Sequence[Host], command: str, timeout: float | None = None,
                 on_done: Callable[[HostResult], None] | None = None) -> dict[str, HostResult]:
    """Run `command` on every host at once; every host gets a result (output or error)."""
    results: dict[str, HostResult] = {}
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
