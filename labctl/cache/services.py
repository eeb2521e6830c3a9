"""The host's caches: apt-cacher-ng (Debian and Ubuntu packages) and devpi-server (PyPI).

Why these two: both are maintained, packaged, and keep what they fetched on disk across restarts.
apt-cacher-ng is Debian's own package cache (`Offlinemode` serves what it holds when the outside is
gone). devpi-server was chosen over proxpi for PyPI: it keeps index pages on disk and serves them,
stale, when PyPI cannot be reached (proxpi keeps them in memory, so a restarted cache on a cut
network serves nothing), and it never sends a client to the internet (proxpi redirects a client to
PyPI when a download is slow: a silent fallback).

They listen on the host's address on vagrant-libvirt's management network only (never on every
interface): every lab's machines reach it, and it outlives any lab. Trainees are root in their
seats, so neither trusts a machine: apt-cacher-ng fetches only from the archives it is set to proxy
(ForceManaged: never the host's loopback or the LAN) and its maintenance page wants a password;
devpi's root user has a password, and only root may create users or change an index. Both
passwords are random, in `<cache>/caches/secrets.json` (0600, in a 0700 folder). They run in their own sessions,
outlive the labctl that started them (a class lasts hours; the next lab is served by the same
cache) and are stopped by `labctl cache stop`. Their files live in labctl's cache folder, each in
its own: `<cache>/caches/{apt,pypi}`, with their logs in `<cache>/caches/logs`.

Their statistics are their own: apt-cacher-ng's transfer log (I: bytes from upstream, O: bytes
served) and devpi-server's log (files asked for, files read from PyPI) and its file store.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from labctl import supervisor
from labctl.errors import LabctlError
from labctl.proc import CommandFailed, run
from labctl.state import atomic_write, load_json, locked, private_dir

# Not apt-cacher-ng's usual 3142: Debian's own apt-cacher-ng service, where it runs, holds that port
# on every address.
APT_PORT = 3149
PYPI_PORT = 3148
APT_START_TIMEOUT = 20.0
PYPI_START_TIMEOUT = 90.0  # devpi-server imports a lot; under a loaded 2-core host that takes a while
APT_BACKENDS = {"debian": "http://deb.debian.org/debian/", "ubuntu": "http://archive.ubuntu.com/ubuntu/"}
PYPI_PATH = "/root/pypi/+simple/"
# What the caches are started with; caches running from an older labctl are restarted with it
# (2: passwords, devpi's restricted modification, apt-cacher-ng's ForceManaged).
CONFIG = 2


class CacheError(LabctlError):
    """A cache that cannot start or answer: never a silent fallback to the internet."""


@dataclass(frozen=True)
class Endpoints:
    """Where the machines find the running caches."""

    address: str
    apt_port: int = APT_PORT
    pypi_port: int = PYPI_PORT
    offline: bool = False

    @property
    def apt_proxy(self) -> str:
        return f"http://{self.address}:{self.apt_port}/"

    @property
    def pypi_index(self) -> str:
        return f"http://{self.address}:{self.pypi_port}{PYPI_PATH}"


@dataclass(frozen=True)
class CacheStatus:
    name: str  # "apt" or "pypi"
    program: str
    running: bool
    pid: int | None
    url: str | None
    size_bytes: int
    requests: int  # files asked for by machines
    hits: int  # of those, served from the cache
    fetched_bytes: int  # bytes the cache read from outside the host (files; apt: index files too)

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def _tree_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def apt_log_stats(log: Path) -> tuple[int, int, int]:
    """(files served, of which from the cache, bytes from upstream) from apt-cacher-ng's transfer log:
    `time|I|bytes|client|path` for bytes read from upstream, `time|O|bytes|client|path` for bytes
    served; a served file with no upstream read is a hit."""
    served = fetched_files = fetched = 0
    with contextlib.suppress(FileNotFoundError), log.open("rb") as handle:
        for raw in handle:
            parts = raw.split(b"|", 4)
            if len(parts) < 5 or not parts[2].isdigit():
                continue
            if parts[1] == b"O":
                served += 1
            elif parts[1] == b"I":
                fetched_files += 1
                fetched += int(parts[2])
    return served, max(0, served - fetched_files), fetched


def devpi_log_stats(log: Path) -> tuple[int, int]:
    """(files asked for, of which fetched from PyPI) from devpi-server's log."""
    asked = fetched = 0
    with contextlib.suppress(FileNotFoundError), log.open("rb") as handle:
        for raw in handle:
            if b"] GET /root/pypi/+f/" in raw:
                asked += 1
            elif b"reading remote: URL(" in raw and b"target root/pypi/+f/" in raw:
                fetched += 1
    return asked, fetched


class HostCaches:
    """The two caches under one folder: start (idempotent), stop, status."""

    def __init__(self, cache: Path) -> None:
        self.root = cache / "caches"
        self.apt_dir = self.root / "apt"
        self.pypi_dir = self.root / "pypi"
        self.logs = self.root / "logs"
        self.state_file = self.root / "endpoints.json"
        self.secrets_file = self.root / "secrets.json"

    # -- records

    def _pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def _markers(self, name: str) -> list[str]:
        return ["apt-cacher-ng", str(self.apt_dir / "conf")] if name == "apt" else \
            ["devpi-server", str(self.pypi_dir / "server")]

    def pid(self, name: str) -> int | None:
        return supervisor.recorded(self._pid_file(name), self._markers(name))

    def password(self, name: str) -> str:
        """The caches' own passwords ("apt-admin": apt-cacher-ng's maintenance page, "pypi-root":
        devpi's root user), made once."""
        try:
            known = load_json(self.secrets_file.read_text())
        except (OSError, ValueError):
            known = {}
        if not isinstance(known, dict):
            known = {}
        value = known.get(name)
        if not isinstance(value, str) or len(value) < 20:
            value = secrets.token_urlsafe(24)
            atomic_write(self.secrets_file, json.dumps({**known, name: value}, indent=2) + "\n", mode=0o600)
        return value

    def _recorded_config(self) -> int:
        try:
            return int(load_json(self.state_file.read_text()).get("config", 1))
        except (OSError, ValueError, AttributeError, TypeError):
            return 0

    def endpoints(self) -> Endpoints | None:
        """Where the running caches listen; None unless both run."""
        try:
            data = load_json(self.state_file.read_text())
            ends = Endpoints(str(data["address"]), int(data["apt_port"]), int(data["pypi_port"]),
                             bool(data.get("offline", False)))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return ends if self.pid("apt") and self.pid("pypi") else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Two labctl starting the caches at once start them once. The folder holds the caches'
        passwords: its owner's alone."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        private_dir(self.root)
        with locked(self.root / ".lock"):
            yield

    def machine_ports(self) -> list[int]:
        """The ports machines reach the caches on: the running caches' own, else those they would take."""
        ends = self.endpoints()
        if ends is not None:
            return [ends.apt_port, ends.pypi_port]
        return [_env_port("LABCTL_APT_CACHE_PORT", APT_PORT), _env_port("LABCTL_PYPI_CACHE_PORT", PYPI_PORT)]

    # -- start and stop

    def start(self, address: str, *, offline: bool = False, apt_port: int | None = None,
              pypi_port: int | None = None) -> Endpoints:
        """Both caches running on `address` (kept when they already run there, in that mode). Their
        ports: APT_PORT and PYPI_PORT, or $LABCTL_APT_CACHE_PORT and $LABCTL_PYPI_CACHE_PORT (a second
        set of caches beside the user's own, as the tests run)."""
        wanted = Endpoints(address, apt_port or _env_port("LABCTL_APT_CACHE_PORT", APT_PORT),
                           pypi_port or _env_port("LABCTL_PYPI_CACHE_PORT", PYPI_PORT), offline)
        with self._locked():
            if self.endpoints() == wanted and self._recorded_config() == CONFIG:
                return wanted
            self._stop_all()
            self._start_apt(wanted)
            try:
                self._start_pypi(wanted)
            except BaseException:
                supervisor.stop_recorded(self._pid_file("apt"), self._markers("apt"))
                raise
            atomic_write(self.state_file, json.dumps({**asdict(wanted), "config": CONFIG}, indent=2) + "\n")
        return wanted

    def stop(self) -> list[str]:
        with self._locked():
            return self._stop_all()

    def _stop_all(self) -> list[str]:
        stopped = [name for name in ("apt", "pypi")
                   if supervisor.stop_recorded(self._pid_file(name), self._markers(name))]
        self.state_file.unlink(missing_ok=True)
        return stopped

    def _check_port(self, address: str, port: int, what: str) -> None:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as exc:
                raise CacheError(f"the {what} cannot listen on {address}:{port}: {exc.strerror}",
                                 hint=f"another program holds port {port} (ss -ltnp | grep {port}): stop it,"
                                      " then run labctl cache start") from None

    def _wait(self, proc: subprocess.Popen[bytes], ends: Endpoints, port: int, what: str, log: Path,
              timeout: float) -> None:
        def answers() -> bool:
            with contextlib.suppress(OSError), socket.create_connection((ends.address, port), timeout=1):
                return True
            return False

        if not supervisor.wait_until(proc, answers, timeout):
            supervisor.kill(proc)
            last = _last_line(log)
            raise CacheError(f"the {what} did not start on {ends.address}:{port}: {last}",
                             hint=f"its log is {log}; labctl cache start tries again")

    def _start_apt(self, ends: Endpoints) -> None:
        program = shutil.which("apt-cacher-ng") or shutil.which("apt-cacher-ng", path="/usr/sbin:/sbin")
        if program is None:
            raise CacheError("apt-cacher-ng is not installed: labctl's package cache needs it",
                             hint="./install.sh installs it (or: sudo apt-get install apt-cacher-ng)")
        self._check_port(ends.address, ends.apt_port, "apt cache")
        conf = self.apt_dir / "conf"
        for folder in (conf, self.apt_dir / "files", self.apt_dir / "run", self.logs / "apt"):
            folder.mkdir(parents=True, exist_ok=True)
        upstream_proxy = os.environ.get("http_proxy") or os.environ.get("HTTP_PROXY")
        lines = [
            f"CacheDir: {self.apt_dir / 'files'}", f"LogDir: {self.logs / 'apt'}",
            "SupportDir: /usr/lib/apt-cacher-ng", f"Port: {ends.apt_port}", f"BindAddress: {ends.address}",
            f"PidFile: {self.apt_dir / 'run' / 'acng.pid'}", f"SocketPath: {self.apt_dir / 'run' / 'acng.socket'}",
            "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian",
            "Remap-uburep: file:ubuntu_mirrors /ubuntu ; file:backends_ubuntu",
            "Remap-secdeb: security.debian.org security.debian.org/debian-security deb.debian.org/debian-security"
            " /debian-security ; deb.debian.org/debian-security security.debian.org",
            "ReportPage: acng-report.html", "ExThreshold: 4", "NetworkTimeout: 30",
            # Only the archives remapped above: no fetch of any other URL (the host's loopback, the LAN).
            "ForceManaged: 1",
            "UnbufferLogs: 1",  # `labctl cache` counts from the transfer log: each line as it happens
            # Served from the cache only, never fetched, when the outside is cut (labctl cache start --offline).
            f"Offlinemode: {1 if ends.offline else 0}",
        ]
        if upstream_proxy:
            lines.append(f"Proxy: {upstream_proxy}")
        atomic_write(conf / "acng.conf", "\n".join(lines) + "\n", mode=0o600)
        atomic_write(conf / "security.conf", f"AdminAuth: labctl:{self.password('apt-admin')}\n", mode=0o600)
        for name, url in APT_BACKENDS.items():
            atomic_write(conf / f"backends_{name}", url + "\n")
        log = self.logs / "apt-cacher-ng.out"
        proc = supervisor.spawn([program, "-c", str(conf), "ForeGround=1"], log)
        self._wait(proc, ends, ends.apt_port, "apt cache (apt-cacher-ng)", log, APT_START_TIMEOUT)
        supervisor.record(self._pid_file("apt"), proc.pid)

    def _devpi(self, name: str) -> str:
        program = Path(sys.executable).parent / name
        if not program.is_file():
            found = shutil.which(name)
            if found is None:
                raise CacheError(f"{name} is not installed: labctl's PyPI cache needs it",
                                 hint="./install.sh installs it (or: pip install devpi-server, beside labctl)")
            return found
        return str(program)

    def _start_pypi(self, ends: Endpoints) -> None:
        server = self.pypi_dir / "server"
        self._check_port(ends.address, ends.pypi_port, "PyPI cache")
        self.logs.mkdir(parents=True, exist_ok=True)
        if not (server / ".nodeinfo").is_file():
            try:
                run([self._devpi("devpi-init"), "--serverdir", str(server)], log=self.logs / "devpi-init.log",
                    what="devpi-init", timeout=300)
            except CommandFailed as exc:
                raise CacheError(f"the PyPI cache could not be made in {server}: {exc.message}",
                                 hint=f"see {self.logs / 'devpi-init.log'}; remove {server} to start afresh")\
                    from None
        self._root_password(server)
        secret = self.pypi_dir / "secret"
        if not secret.is_file():
            atomic_write(secret, secrets.token_urlsafe(48), mode=0o600)
        argv = [self._devpi("devpi-server"), "--serverdir", str(server), "--host", ends.address,
                "--port", str(ends.pypi_port), "--secretfile", str(secret), "--restrict-modify", "root"]
        if ends.offline:
            argv.append("--offline-mode")
        log = self.logs / "devpi-server.log"
        proc = supervisor.spawn(argv, log)
        self._wait(proc, ends, ends.pypi_port, "PyPI cache (devpi-server)", log, PYPI_START_TIMEOUT)
        supervisor.record(self._pid_file("pypi"), proc.pid)

    def _root_password(self, server: Path) -> None:
        """devpi's root user gets labctl's password (devpi-init leaves it empty), once per server
        folder, while the server is stopped. On stdin, never a command line: devpi-passwd asks with
        getpass, which reads stdin in a session without a terminal."""
        done = server / ".labctl-root-password"
        if done.is_file():
            return
        password = self.password("pypi-root")
        log = self.logs / "devpi-passwd.log"
        with log.open("ab") as err:
            proc = subprocess.run([self._devpi("devpi-passwd"), "--serverdir", str(server), "root"],
                                  input=f"{password}\n{password}\n".encode(), stdout=err, stderr=err,
                                  start_new_session=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise CacheError("the PyPI cache's root password could not be set",
                             hint=f"see {log}; remove {server} to start afresh")
        atomic_write(done, "root's password is labctl's (secrets.json)\n", mode=0o600)

    # -- what they did

    def status(self) -> list[CacheStatus]:
        ends = self.endpoints()
        served, hits, fetched = apt_log_stats(self.logs / "apt" / "apt-cacher.log")
        apt_pid = self.pid("apt")
        apt = CacheStatus("apt", "apt-cacher-ng", apt_pid is not None, apt_pid,
                          ends.apt_proxy if ends else None, _tree_size(self.apt_dir / "files"), served, hits, fetched)
        asked, from_pypi = devpi_log_stats(self.logs / "devpi-server.log")
        pypi_pid = self.pid("pypi")
        files = _tree_size(self.pypi_dir / "server" / "+files")
        pypi = CacheStatus("pypi", "devpi-server", pypi_pid is not None, pypi_pid,
                           ends.pypi_index if ends else None, _tree_size(self.pypi_dir / "server"), asked,
                           max(0, asked - from_pypi), files)
        return [apt, pypi]


def _env_port(variable: str, default: int) -> int:
    value = os.environ.get(variable, "")
    if not value:
        return default
    if not value.isdigit() or not 1024 <= int(value) <= 32767:  # apt-cacher-ng takes no higher port
        raise CacheError(f"{variable}={value[:20]!r} is no port number", hint="give a number from 1024 to 32767")
    return int(value)


def _last_line(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in log.read_text(errors="replace").splitlines()[-50:] if line.strip()]
        if lines:
            return lines[-1][-300:]
    return "no output"
