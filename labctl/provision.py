"""DevStack on one machine, over SSH: trust and proxies, the stack user, DevStack's source, local.conf,
stack.sh with its output streamed, masked and logged.

Every remote command is a fixed script whose values travel as quoted arguments (shlex), never
pasted into the script. Secrets travel in uploaded files of mode 0600, never in command lines.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labctl.cache.services import Endpoints
from labctl.cloud.spec import CloudSpec
from labctl.devstack_source import DEVSTACK_DIR, check_git_server, obtain_devstack
from labctl.errors import LabctlError
from labctl.guest_network import NetworkAccess, configure_network_access, install_file
from labctl.mirrors import DevstackSource
from labctl.model import DevstackSpec, Proxy
from labctl.protocols import HostKeyChanged, RemoteCommandFailed, SessionPort, SshPort, SshTarget, SshUnreachable
from labctl.stacklog import DETAIL_SEP, StackProgress, mask

# What a fresh box must have before stack.sh can start, per package family: (command, package).
# DevStack's GetOSVersion runs lsb_release before it installs anything, except on the RHEL family
# (read from /etc/os-release); its own attempt to install it fails on a box with no package lists.
GUEST_NEEDS = {
    "apt": (("git", "git"), ("sudo", "sudo"), ("python3", "python3"), ("lsb_release", "lsb-release")),
    "dnf": (("git", "git"), ("sudo", "sudo"), ("python3", "python3"), ("lsb_release", "lsb_release")),
    "zypper": (("git", "git"), ("sudo", "sudo"), ("python3", "python3"), ("lsb_release", "lsb-release")),
}
# $1: package family; then COMMAND:PACKAGE pairs. Installs only what is missing; a fresh box has no
# package lists, so apt's are fetched first.
PREPARE_SCRIPT = r"""
set -eu
family=$1; shift
id=$(. /etc/os-release && echo "${ID:-}")
missing=""
for pair in "$@"; do
  cmd=${pair%%:*}
  case $cmd:$id in lsb_release:*almalinux*|lsb_release:*centos*|lsb_release:*rocky*|lsb_release:*rhel*) continue ;; esac
  command -v "$cmd" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  case $family in
    apt) apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing ;;
    dnf) dnf install -y -q $missing ;;
    zypper) zypper --non-interactive install $missing ;;
  esac
fi
# What DevStack's tools/create-stack-user.sh does.
getent group stack >/dev/null || groupadd stack
getent passwd stack >/dev/null || useradd -g stack -s /bin/bash -d /opt/stack -m stack
# RHEL and newer Ubuntu make homes 0700/0750, which breaks DevStack: it must be world-executable.
chmod +x /opt/stack
( umask 226 && echo "stack ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/50_stack_sh )
"""

# DevStack's scripts run in an SSH session of their own. labctl writes that session's id (with the
# boot's id) in the login user's home as it starts them. A later labctl holds the lab's lock, so no
# other labctl drives the machine: processes still alive in a recorded session were left by a labctl
# that was killed (their output goes nowhere; stack.sh would die half-way at its next line). It
# stops them and starts again. A stack.sh that labctl did not start (run by hand) is never touched.
SESSION_FILE = ".labctl-stack.session"
RECORD_SESSION = f'printf "%s %s\\n" "$(cat /proc/sys/kernel/random/boot_id)" "$$" > ~/{SESSION_FILE} && '
# $1: the session file, in the login user's home.
LEFTOVER_SCRIPT = r"""
f=$HOME/$1
if [ -s "$f" ]; then
  read -r boot sid < "$f"
  if [ "$boot" = "$(cat /proc/sys/kernel/random/boot_id)" ] && pgrep -s "$sid" >/dev/null; then
    echo "stopped the DevStack run that an interrupted labctl left running (session $sid)"
    sudo pkill -TERM -s "$sid"
    for i in $(seq 1 20); do pgrep -s "$sid" >/dev/null || break; sleep 0.5; done
    sudo pkill -KILL -s "$sid"
  fi
  rm -f "$f"
fi
if pgrep -u stack -a -f '[s]tack\.sh'; then exit 3; fi
exit 0
"""


@dataclass(frozen=True)
class StackJob:
    """Everything needed to stack one machine."""

    machine: str
    role: str
    host: SshTarget
    package_family: str
    local_conf: str
    devstack: DevstackSpec
    source: DevstackSource
    log: Path
    secrets: tuple[str, ...] = ()
    certificates: tuple[tuple[str, str], ...] = ()  # (file name, PEM text)
    proxy: Proxy | None = None
    no_proxy_hosts: tuple[str, ...] = ()
    clean: bool = False
    ssh_timeout: float = 300
    git_server: tuple[str, int] | None = None  # labctl's git daemon on the host, when it serves mirrors
    seat_login: str | None = None  # a classroom seat: the trainee's SSH password (user stack)
    caches: Endpoints | None = None  # the host's package caches, when the lab uses them
    cloud: CloudSpec | None = None  # day-one resources to make once stacked (a machine serving the APIs)


@dataclass
class StackResult:
    machine: str
    status: str  # "ok", "failed" or "skipped"
    seconds: float = 0.0
    phase: str = ""
    message: str = ""
    tail: list[str] = field(default_factory=list)
    dashboard: str | None = None
    keystone: str | None = None
    phases: list[tuple[str, float]] = field(default_factory=list)  # DevStack's phases and their seconds
    # What went wrong after a good stack (a day-one resource not made): the stack stays ok.
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# The trainee of a seat logs in as stack with the seat's own password: a password on paper is what
# a classroom can hand out. Only for stack; vagrant (labctl's own way in) keeps its key alone.
SEAT_SSHD_CONFIG = """# Written by labctl: this machine is a classroom seat.
Match User stack
    PasswordAuthentication yes
    KbdInteractiveAuthentication yes
"""
SEAT_SSHD_PATH = "/etc/ssh/sshd_config.d/labctl-seat.conf"
SSHD_RELOAD = ("sshd -t && { systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null"
               " || kill -HUP \"$(cat /run/sshd.pid)\"; }")


def open_seat(session: SessionPort, password: str) -> None:
    """Let the seat's trainee in: the stack user's password (never on a command line), and sshd
    taking passwords for stack."""
    login = session.upload_private(f"stack:{password}\n".encode())
    session.run(shlex.join(["sudo", "sh", "-c", 'chpasswd < "$1"; code=$?; rm -f "$1"; exit $code', "seat", login]),
                "setting the trainee's password")
    install_file(session, SEAT_SSHD_PATH, SEAT_SSHD_CONFIG, "0644")
    session.run(shlex.join(["sudo", "sh", "-c", SSHD_RELOAD]), "reloading sshd")


def prepare_guest(session: SessionPort, family: str) -> None:
    needs = [f"{command}:{package}" for command, package in GUEST_NEEDS[family]]
    session.run(shlex.join(["sudo", "sh", "-c", PREPARE_SCRIPT, "prepare", family, *needs]),
                "preparing the guest (DevStack's prerequisites, stack user)")


def push_local_conf(session: SessionPort, text: str) -> None:
    install_file(session, f"{DEVSTACK_DIR}/local.conf", text, "0600", owner="stack")


def devstack_command(script: str, force: bool) -> str:
    """Run one of DevStack's scripts as stack, with the proxy (profile.d) and FORCE when asked."""
    env = ["env", "FORCE=yes"] if force else []
    inner = f"cd {DEVSTACK_DIR} && exec {script}"
    return shlex.join(["sudo", "-u", "stack", "-H", *env, "bash", "-l", "-c", inner])


class _LogWriter:
    """stack.sh's lines: masked, appended to the lab's log as they arrive, fed to the parser. The
    machine's progress shows each new phase at once, and what DevStack does inside it (its function
    at work) at most every STEP_EVERY seconds."""

    STEP_EVERY = 1.0

    def __init__(self, path: Path, secrets: Sequence[str], progress: StackProgress,
                 on_phase: Callable[[str], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = path.open("a", encoding="utf-8")
        self.secrets = secrets
        self.progress = progress
        self.on_phase = on_phase
        self.shown: tuple[str, str | None] = ("", None)
        self.shown_at = 0.0

    def __call__(self, line: str) -> None:
        safe = mask(line, self.secrets)
        self.handle.write(safe if safe.endswith("\n") else safe + "\n")
        self.handle.flush()
        phase = self.progress.feed(safe)
        now = time.monotonic()
        current = (self.progress.phase, self.progress.step)
        if phase or (current != self.shown and now - self.shown_at >= self.STEP_EVERY):
            self.shown, self.shown_at = current, now
            self.on_phase(self.progress.phase + (DETAIL_SEP + self.progress.step if self.progress.step else ""))

    def close(self) -> None:
        self.handle.close()


def rotate_log(path: Path) -> None:
    if path.exists():
        path.replace(path.with_name(path.name + ".prev"))


def stack_machine(ssh: SshPort, job: StackJob, on_phase: Callable[[str], None]) -> StackResult:
    """Run every step on one machine; failures become the result, with the phase they hit."""
    started = time.monotonic()
    progress = StackProgress()
    step = "waiting for SSH"

    def announce(text: str) -> None:
        nonlocal step
        step = text
        on_phase(text)

    try:
        announce("waiting for SSH")
        ssh.wait(job.host, job.ssh_timeout)
        with ssh.session(job.host) as session:
            foreign = _prepare_machine(session, job, announce, on_phase)
            if foreign is not None:
                return StackResult(job.machine, "failed", time.monotonic() - started, "looking for a running stack.sh",
                                   foreign, [])
            progress = StackProgress()  # DevStack's phases are timed from stack.sh's start on
            code = _run_devstack(session, job, progress, announce)
    except (SshUnreachable, HostKeyChanged, RemoteCommandFailed, LabctlError, OSError) as exc:
        # LabctlError, OSError: on the host (DevStack's folder refused, its tarball on a full disk).
        message = str(exc) if isinstance(exc, OSError) else exc.message
        tail = exc.tail.splitlines() if isinstance(exc, RemoteCommandFailed) else []
        return StackResult(job.machine, "failed", time.monotonic() - started, step,
                           mask(message, job.secrets), [mask(t, job.secrets) for t in tail])
    return _stack_result(job, code, time.monotonic() - started, progress)


def _prepare_machine(session: SessionPort, job: StackJob, announce: Callable[[str], None],
                     on_phase: Callable[[str], None]) -> str | None:
    """Everything before stack.sh: the way out, the guest's needs, the trainee's login, DevStack and
    its local.conf. Returns why it must not go on (a stack.sh labctl did not start is running)."""
    access = NetworkAccess(job.package_family, job.certificates, job.proxy, job.no_proxy_hosts, job.caches)
    if access:
        announce("trusting CAs, setting proxies and the host's caches")
        configure_network_access(session, access)
    announce("preparing the guest")
    prepare_guest(session, job.package_family)
    if job.seat_login:
        announce("opening the seat to its trainee")
        open_seat(session, job.seat_login)
    # Never two stack.sh at once: stop one that an interrupted labctl left, refuse over another.
    code, out = session.run(shlex.join(["sh", "-c", LEFTOVER_SCRIPT, "leftover", SESSION_FILE]),
                            "looking for a running stack.sh", check=False)
    lines = out.strip().splitlines()
    if lines and lines[0].startswith("stopped "):
        on_phase(lines.pop(0))
    if code == 3:
        return (f"a stack.sh that labctl did not start is running ({lines[-1]}): wait for it to end, or stop it,"
                " then retry")
    if job.git_server:
        announce("reaching the host's git mirrors")
        check_git_server(session, *job.git_server)
    announce("getting DevStack")
    obtain_devstack(session, job.source, job.devstack.branch)
    push_local_conf(session, job.local_conf)
    return None


def _run_devstack(session: SessionPort, job: StackJob, progress: StackProgress, announce: Callable[[str], None]) -> int:
    """stack.sh (after unstack.sh and clean.sh with --clean), its output masked into the log and read
    for its phases; its exit code (-1: the connection went with no exit status)."""
    rotate_log(job.log)
    writer = _LogWriter(job.log, job.secrets, progress, announce)
    try:
        if job.clean:
            announce("unstack.sh and clean.sh")
            for script in ("./unstack.sh", "./clean.sh"):
                session.run(RECORD_SESSION + devstack_command(script, job.devstack.force), script[2:],
                            on_line=writer, check=False)
        announce("stack.sh")
        code, _ = session.run(RECORD_SESSION + devstack_command("./stack.sh", job.devstack.force), "stack.sh",
                              on_line=writer, check=False)
        return code
    finally:
        writer.close()
        progress.finish()


def _stack_result(job: StackJob, code: int, seconds: float, progress: StackProgress) -> StackResult:
    if code == -1:  # the SSH channel closed with no exit status: the machine, or its network, went away
        return StackResult(job.machine, "failed", seconds, progress.phase,
                           f"lost the connection to {job.host.address} while stack.sh ran: the machine stopped or"
                           " its network went (labctl status shows it; labctl stack retries)", list(progress.tail),
                           progress.dashboard, progress.keystone, progress.phase_times())
    if code != 0:
        message = progress.failure_line or f"stack.sh exited with {code}"
        return StackResult(job.machine, "failed", seconds, progress.phase, message, list(progress.tail),
                           progress.dashboard, progress.keystone, progress.phase_times())
    return StackResult(job.machine, "ok", seconds, progress.phase, "", [], progress.dashboard, progress.keystone,
                       progress.phase_times())


DISCOVER_COMMAND = "./tools/discover_hosts.sh"


def discover_hosts(ssh: SshPort, host: SshTarget, computes: Sequence[str], force: bool, attempts: int, interval: float,
                   log: Path, secrets: Sequence[str] = ()) -> tuple[bool, str]:
    """Run discover_hosts.sh on the controller until every compute is mapped into the cell (computes
    register asynchronously). Returns (all mapped, what was seen)."""
    seen: set[str] = set()
    output = ""
    with ssh.session(host) as session:
        for attempt in range(1, attempts + 1):
            code, output = session.run(devstack_command(DISCOVER_COMMAND, force), "discover_hosts.sh", check=False)
            output = "".join(mask(line, secrets) for line in output.splitlines(keepends=True))
            with log.open("a", encoding="utf-8") as handle:
                handle.write(f"--- discover_hosts.sh, attempt {attempt}: exit {code}\n{output}")
            seen |= {c for c in computes if f"'{c}'" in output or f'"{c}"' in output}
            if code == 0 and seen >= set(computes):
                return True, f"mapped {', '.join(sorted(seen))}"
            if attempt < attempts:
                time.sleep(interval)
    missing = sorted(set(computes) - seen)
    return False, f"not mapped yet: {', '.join(missing)} (last output: {output.strip().splitlines()[-1:]})"
