"""The lab folders under $LABCTL_HOME: where each lab's files, secrets and records live.

Layout: $LABCTL_HOME/labs/<lab>/ (mode 0700) holding lab.yaml (a copy, or the generated file of a
`--distro` lab), lab.json (where the lab came from), secrets.yaml (0600), Vagrantfile and
machines/<machine>/local.conf (0600: it holds the passwords). Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LabctlError, LabNotFound
from labctl.names import NAME_RE, SEAT_RE
from labctl.raw import Raw, RawMap

if TYPE_CHECKING:  # imported where used: `labctl status` reads no secret
    from labctl.passwords import LabSecrets

# What ssh would read as something else in a path labctl hands it (UserKnownHostsFile, IdentityFile,
# a ProxyCommand, ssh-config's lines): % and ${ are expanded, a quote ends the value, a newline
# starts a new option. Such a home would let host keys go unpinned or a ProxyCommand be injected.
# A `vagrant up` running in a lab's folder, recorded there for the next labctl (labctl.supervisor's form).
VAGRANT_UP_PID = ".labctl-vagrant-up.pid"
_SSH_UNSAFE = re.compile(r'[%"\'\\`]|\$\{|[\x00-\x1f\x7f]')


def labctl_home(environ: os._Environ[str] | dict[str, str] = os.environ) -> Path:
    """$LABCTL_HOME, else $XDG_DATA_HOME/labctl: absolute (a relative one would change meaning with
    the folder a helper runs in), and with nothing ssh would take for syntax."""
    if environ.get("LABCTL_HOME"):
        home = Path(environ["LABCTL_HOME"]).expanduser()
        what = "LABCTL_HOME"
    else:
        home = Path(environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")) / "labctl"
        what = "XDG_DATA_HOME" if environ.get("XDG_DATA_HOME") else "your home folder's path"
    home = Path(os.path.abspath(home))
    if _SSH_UNSAFE.search(str(home)):
        raise LabctlError(f"{what} gives labctl the folder {str(home)!r}, with a character ssh reads as syntax"
                          " (% ${ a quote, a backslash or a control character)",
                          hint="set LABCTL_HOME to a folder whose path has none of them")
    return home


def labctl_cache(environ: os._Environ[str] | dict[str, str] = os.environ) -> Path:
    """Where expensive things are kept between labs (built boxes): $LABCTL_CACHE, else the user's cache."""
    if environ.get("LABCTL_CACHE"):
        return Path(environ["LABCTL_CACHE"]).expanduser()
    cache_home = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "labctl"


def private_dir(path: Path) -> None:
    """A folder only its owner may enter (0700, whatever the umask), made if missing."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if path.is_symlink() or not path.is_dir():
            raise LabctlError(f"{path} should be a folder of labctl's", hint="move it away, or set LABCTL_HOME")\
                from None
        return
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)


def user_file_mode() -> int:
    """0666 less the process's umask: for files the user asked for (a lab.yaml from `init`)."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("Umask:"))
        return 0o666 & ~int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write to a temporary file beside `path`, then rename: readers see the old or the new file.
    A full or read-only disk is a clear error, and leaves the old file as it was."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # here: `labctl status` never writes

        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise LabctlError(f"cannot write {path}: {exc.strerror}",
                              hint="free space there (or fix its permissions), or set LABCTL_HOME to another"
                                   " folder; the lab's existing files were left as they were") from None
        raise


@dataclass(frozen=True)
class LabDir:
    name: str
    path: Path

    @property
    def lab_file(self) -> Path:
        return self.path / "lab.yaml"

    @property
    def meta_file(self) -> Path:
        return self.path / "lab.json"

    @property
    def secrets_file(self) -> Path:
        return self.path / "secrets.yaml"

    @property
    def vagrantfile(self) -> Path:
        return self.path / "Vagrantfile"

    def local_conf(self, machine: str) -> Path:
        return self.path / "machines" / machine / "local.conf"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def vagrant_log(self) -> Path:
        return self.logs / "vagrant.log"

    @property
    def vagrant_up(self) -> Path:
        """The pid file of the `vagrant up` running in this lab's folder, if one is."""
        return self.path / VAGRANT_UP_PID

    @property
    def known_hosts(self) -> Path:
        """The lab's own known_hosts: labctl never writes the user's ~/.ssh/known_hosts."""
        return self.path / "known_hosts"

    def known_hosts_of(self, host: str | None) -> Path:
        """The known_hosts for the lab's machines on a host (None: this machine). One per host: each
        host's management network hands out the same addresses, so two machines on two hosts can
        share an address and must not be taken for one machine whose key changed."""
        return self.known_hosts if host is None else self.path / f"known_hosts.{host}"

    def private_key(self, machine: str) -> Path:
        """The key Vagrant generated for the machine at its first boot (vagrant-libvirt's place)."""
        return self.path / ".vagrant" / "machines" / machine / "libvirt" / "private_key"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def stack_log(self, machine: str) -> Path:
        return self.logs / machine / "stack.log"

    def read_state(self) -> RawMap:
        """state.json as it is ({} before anything): records.py reads it into typed records."""
        return self._read_json(self.state_file, "delete it: labctl then treats every machine as not stacked yet")

    def write_state(self, state: RawMap) -> None:
        atomic_write(self.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n")

    def exists(self) -> bool:
        return self.meta_file.is_file()

    def _read_json(self, path: Path, hint: str) -> RawMap:
        """A JSON object labctl wrote; {} when absent; a clear error when damaged or hand-broken."""
        try:
            data = load_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise LabctlError(f"lab {self.name!r}: {path} is damaged ({exc})", hint=hint) from None
        if not isinstance(data, dict):
            raise LabctlError(f"lab {self.name!r}: {path} is damaged (not an object)", hint=hint)
        return data

    def read_meta(self) -> RawMap:
        """lab.json as it is ({} before `plan`): records.read_lab reads it into a typed record."""
        return self._read_json(self.meta_file, "run `labctl plan -f lab.yaml` to write it again")

    def read_secrets(self) -> LabSecrets | None:
        """The lab's passwords and each seat's own (secrets.yaml); None before `plan` wrote them."""
        import yaml

        from labctl.passwords import PASSWORD_NAMES, SEAT_SECRET_NAMES, LabSecrets, Passwords, SeatSecrets

        try:
            data = yaml.safe_load(self.secrets_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, yaml.YAMLError) as exc:
            raise LabctlError(f"lab {self.name!r}: cannot read {self.secrets_file} ({exc})",
                              hint="fix the file, or delete it to generate new passwords") from None
        passwords = Passwords.from_raw(data.get("passwords") if isinstance(data, dict) else None)
        if passwords is None:
            raise LabctlError(
                f"lab {self.name!r}: {self.secrets_file} must hold passwords: {', '.join(PASSWORD_NAMES)}"
                " (letters and digits)",
                hint="fix the file, or delete it to generate new passwords")
        raw = data.get("seats") if isinstance(data, dict) else None
        seats = {k: SeatSecrets.from_raw(v) for k, v in raw.items() if isinstance(k, str) and SEAT_RE.match(k)} \
            if isinstance(raw, dict) else {}
        if raw is not None and (not isinstance(raw, dict) or len(seats) != len(raw) or None in seats.values()):
            raise LabctlError(f"lab {self.name!r}: {self.secrets_file} has damaged seat passwords (each seat needs"
                              f" {', '.join(SEAT_SECRET_NAMES)}: letters and digits)",
                              hint="fix the file, or delete its seats: section to generate new ones")
        return LabSecrets(passwords, {k: v for k, v in seats.items() if isinstance(v, SeatSecrets)})

    def secrets(self) -> LabSecrets:
        """The lab's secrets, which `plan` writes: a clear error before it has."""
        found = self.read_secrets()
        if found is None:
            raise LabctlError(f"lab {self.name!r} has no passwords yet", hint=f"labctl plan --lab {self.name}")
        return found

    def create(self) -> None:
        # $LABCTL_HOME, labs/ and the lab's folder are the user's alone, whatever the umask.
        for folder in (self.path.parent.parent, self.path.parent, self.path):
            private_dir(folder)

    def write_secrets(self, lab_secrets: LabSecrets) -> None:
        import yaml

        data: RawMap = {"passwords": lab_secrets.passwords.as_dict()}
        if lab_secrets.seats:
            data["seats"] = {name: own.as_dict() for name, own in lab_secrets.seats.items()}
        text = ("# Passwords of this lab (seats: each classroom seat's own). Keep this file private.\n"
                + yaml.safe_dump(data, sort_keys=False))
        atomic_write(self.secrets_file, text, mode=0o600)

    def write_meta(self, meta: RawMap) -> None:
        atomic_write(self.meta_file, json.dumps(meta, indent=2, sort_keys=True) + "\n")


class LabBusy(LabctlError):
    """Another labctl command is changing the lab."""

    exit_code = 1


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is no number labctl writes")


def load_json(text: str) -> Raw:
    """JSON as labctl writes it: NaN and Infinity (which Python's json takes, and which crash every
    int() after it) are a damaged file."""
    return json.loads(text, parse_constant=_no_constant)


def open_lock_file(path: Path) -> int:
    """A lock file's descriptor, never through a link planted there (which would truncate, or lock,
    the file it points to): a link is one line naming it."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise LabctlError(f"{path} is a symbolic link, not labctl's lock file: refusing to open it",
                          hint=f"remove it (rm {path}) and look at who put it there") from None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Wait for, then hold, an flock on `path` (released when the block ends or the holder dies)."""
    fd = open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class LabHome:
    root: Path

    @property
    def labs_dir(self) -> Path:
        return self.root / "labs"

    @property
    def images_dir(self) -> Path:
        """The host's stacked images as labctl knows them (labctl.images.store)."""
        return self.root / "images"

    @contextlib.contextmanager
    def writer(self, name: str, command: str) -> Iterator[None]:
        """Be the lab's only writer while the block runs; refuse at once if another command is.

        An flock on $LABCTL_HOME/locks/<lab>.lock: the kernel releases it when its holder dies, so
        a lock left by a killed command is simply taken over. It lives outside the lab's folder so
        that `destroy` can remove that folder while holding it."""
        locks = self.root / "locks"
        private_dir(self.root)
        private_dir(locks)
        path = locks / f"{name}.lock"
        fd = open_lock_file(path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(path)
                raise LabBusy(f"lab {name!r} is busy: `labctl {holder.get('command', '?')}` (pid"
                              f" {holder.get('pid', '?')}) is changing it since {holder.get('since', '?')}",
                              hint=f"wait for it to finish, or stop it: kill {holder.get('pid', 'PID')}") from None
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "command": command,
                                     "since": time.strftime("%H:%M:%S")}).encode())
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def lab(self, name: str) -> LabDir:
        if not NAME_RE.match(name):
            raise LabNotFound(f"invalid lab name {name!r}", hint="labctl list shows the labs")
        return LabDir(name, self.labs_dir / name)

    def names(self) -> list[str]:
        if not self.labs_dir.is_dir():
            return []
        return sorted(p.name for p in self.labs_dir.iterdir()
                      if NAME_RE.match(p.name) and (p / "lab.json").is_file())


def _lock_holder(path: Path) -> RawMap:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
