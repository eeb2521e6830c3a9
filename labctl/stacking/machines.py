"""Use-case: DevStack on a lab's machines, in parallel and in order, with results remembered.

All-in-one machines and the controller start at once; computes start when the controller has
stacked (never if it failed); then DevStack's discover_hosts.sh maps the computes into the cell.
One machine's failure never stops the others, and every result is kept in the lab's state.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl import records
from labctl.cache.services import Endpoints
from labctl.cloud.dayone import API_ROLES
from labctl.cloud.spec import CloudSpec
from labctl.errors import LabctlError
from labctl.files import CERTIFICATE_LIMIT, certificate_blocks, read_bounded
from labctl.machine_status import MachineStatus, host_of, running
from labctl.mirrors import GIT_PORT, devstack_source, host_address, served_folders, url_secrets
from labctl.model import Lab, Machine
from labctl.passwords import LabSecrets
from labctl.protocols import RemoteCommandFailed, SshPort, SshTarget, SshUnreachable
from labctl.provision import StackJob, StackResult, discover_hosts, stack_machine
from labctl.stacking.pool import machine_pool
from labctl.stacking.serving import Relayer, serving_mirrors
from labctl.state import LabDir, labctl_cache

if TYPE_CHECKING:
    from labctl.protocols import Reporter

Runner = Callable[[SshPort, StackJob, Callable[[str], None]], StackResult]
# This machine's (address, port)s offered to a lab's machines on other hosts for a block (hosts.services.relayer)


@dataclass(frozen=True)
class DiscoverSettings:
    attempts: int = 12
    interval: float = 10.0


@dataclass
class StackRun:
    results: dict[str, StackResult]
    discovery: str | None = None  # what discover_hosts.sh achieved, if it ran

    @property
    def failed(self) -> list[str]:
        return [name for name, r in self.results.items() if r.status != "ok"]

    @property
    def problems(self) -> dict[str, list[str]]:
        """Machines that stacked, with what went wrong after (a day-one resource not made)."""
        return {name: r.problems for name, r in self.results.items() if r.problems}


def machines_to_stack(lab: Lab, lab_dir: LabDir, names: Sequence[str], everything: bool) -> list[Machine]:
    """Named machines; else with --all every one; else those whose last stack failed or never ran."""
    known = {m.name: m for m in lab.machines}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LabctlError(f"no machine named {', '.join(map(repr, unknown))} in lab {lab.name!r}",
                          hint="labctl status lists the machines")
    if names:
        return [known[n] for n in dict.fromkeys(names)]
    if everything:
        return list(lab.machines)
    done = records.read(lab_dir).stack
    return [m for m in lab.machines if not (m.name in done and done[m.name].ok)]


def guest_certificates(paths: Sequence[Path]) -> tuple[tuple[str, str], ...]:
    """(file name, PEM) for each certificate of the lab's CA files, and only certificates (a combined
    PEM may hold a private key). Names end in .crt, which every family's tool reads (Debian's
    update-ca-certificates reads nothing else), and are numbered: two files of the same name never
    overwrite each other."""
    out: list[tuple[str, str]] = []
    for path in paths:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem)[:40] or "ca"
        for block in certificate_blocks(read_bounded(path, CERTIFICATE_LIMIT, "PEM certificate file", "ascii")):
            out.append((f"labctl-{len(out) + 1:02d}-{stem}.crt", block))
    return tuple(out)


@dataclass(frozen=True)
class AsTemplate:
    """Stack a classroom's template: each of its own passwords replaced in local.conf by one of no
    seat's (`replace`: own -> template), and no trainee's login yet. Its disk becomes every seat's
    base, and each seat then gets its own (labctl.stacking.clone)."""

    replace: tuple[tuple[str, str], ...]


def make_jobs(lab: Lab, lab_dir: LabDir, machines: Sequence[Machine], statuses: Sequence[MachineStatus],
              lab_secrets: LabSecrets, clean: bool, caches: Endpoints | None = None,
              template: AsTemplate | None = None) -> list[StackJob]:
    by_name = {s.name: s for s in statuses}
    running([by_name[m.name] for m in machines], lab.name)
    certificates = guest_certificates(lab.ca_certificates)
    lab_hosts = (host_address(lab.cidr), *(m.ip for m in lab.machines), *(m.name for m in lab.machines),
                 *((caches.address,) if caches else ()))
    source = devstack_source(lab)
    proxy = lab.proxy
    seats = lab_secrets.seats
    secrets = (*lab_secrets.values(),
               *url_secrets(lab.devstack.repo, lab.devstack.git_base, *((proxy.http, proxy.https) if proxy else ())),
               *(t for _own, t in (template.replace if template else ())))
    git_server = (host_address(lab.cidr), GIT_PORT) if served_folders(lab) else None
    jobs = []
    for m in machines:
        status = by_name[m.name]
        conf = lab_dir.local_conf(m.name)
        if not conf.is_file():
            raise LabctlError(f"{m.name} has no local.conf yet", hint=f"labctl plan --lab {lab.name}")
        text = conf.read_text(encoding="utf-8")
        for own, stand_in in template.replace if template else ():
            text = text.replace(own, stand_in)
        jobs.append(StackJob(
            machine=m.name, role=m.role, host=host_of(lab_dir, status), package_family=m.release.package_family,
            local_conf=text, devstack=lab.devstack, source=source,
            log=lab_dir.stack_log(m.name), secrets=secrets, certificates=certificates,
            proxy=lab.proxy, no_proxy_hosts=lab_hosts, clean=clean, git_server=git_server,
            seat_login=seats[m.name].login if m.name in seats and not template else None, caches=caches,
            cloud=lab.cloud if lab.cloud and m.role in API_ROLES else None))
    return jobs


def run_stacks(ssh: SshPort, jobs: Sequence[StackJob], reporter: Reporter, *, controller_host: SshTarget | None = None,
               controller_ready: bool = False, runner: Runner = stack_machine,
               discover: DiscoverSettings | None = None, discover_log: Path | None = None,
               on_result: Callable[[StackResult], None] | None = None) -> StackRun:
    """Stack every job; computes after the controller. `controller_ready`: the controller is not
    among the jobs but stacked fine before (a retry of computes alone). `on_result` hears of each
    machine as it ends, so that an interruption loses nothing that finished."""
    return _run_stacks(ssh, jobs, reporter, controller_host, controller_ready, runner, discover or DiscoverSettings(),
                       discover_log, on_result or (lambda _r: None))


def _run_stacks(ssh: SshPort, jobs: Sequence[StackJob], reporter: Reporter, controller_host: SshTarget | None,
                controller_ready: bool,
                runner: Runner, discover: DiscoverSettings, discover_log: Path | None,
                on_result: Callable[[StackResult], None]) -> StackRun:
    results: dict[str, StackResult] = {}
    controller = next((j for j in jobs if j.role == "controller"), None)
    computes = [j for j in jobs if j.role == "compute"]
    first = [j for j in jobs if j.role != "compute"]
    with reporter.machines([j.machine for j in jobs], "queued") as progress, \
            machine_pool(len(jobs), ssh.cancel) as pool:

        def start(job: StackJob) -> Future[StackResult]:
            def on_phase(text: str) -> None:
                progress.update(job.machine, text)
            return pool.submit(runner, ssh, job, on_phase)

        futures = {j.machine: start(j) for j in first}
        for j in computes:
            progress.update(j.machine, "waiting for the controller")
        if computes:
            if controller is not None:
                ready = futures[controller.machine].result().ok
                why = f"controller {controller.machine} failed"
            else:
                ready, why = controller_ready, "the controller has not stacked successfully"
            for j in computes:
                if ready:
                    futures[j.machine] = start(j)
                else:
                    results[j.machine] = StackResult(j.machine, "skipped", message=f"not started: {why}")
                    progress.update(j.machine, f"skipped: {why}")
        for name, future in futures.items():
            result = future.result()
            results[name] = result
            on_result(result)
            progress.update(name, "done" if result.ok else f"failed at {result.phase}")
    run = StackRun({j.machine: results[j.machine] for j in jobs})
    stacked_computes = [j.machine for j in computes if results[j.machine].ok]
    host = controller.host if controller else controller_host
    controller_ok = results[controller.machine].ok if controller else controller_ready
    if stacked_computes and host is not None and controller_ok:
        reporter.step(f"mapping computes into the cell (discover_hosts.sh on {host.name})")
        force = jobs[0].devstack.force
        ok, run.discovery = discover_hosts(ssh, host, stacked_computes, force, discover.attempts, discover.interval,
                                           discover_log or jobs[0].log.parent / "discover_hosts.log",
                                           jobs[0].secrets)
        if not ok:
            reporter.warn(run.discovery)
    return run


def _record_of(r: StackResult) -> records.StackRecord:
    return records.StackRecord(r.status, r.phase, round(r.seconds), r.message, r.dashboard, r.keystone,
                               tuple(r.phases), finished=int(time.time()))


def day_one(ssh: SshPort, host: SshTarget, spec: CloudSpec, result: StackResult, on_phase: Callable[[str], None],
            log: Path | None = None) -> None:
    """lab.yaml's day-one resources made in a machine that stacked (labctl.cloud): timed as a phase of
    its own; what failed becomes the result's problems (the stack itself stays ok, `labctl cloud`
    tries again)."""
    from labctl.cloud.dayone import Outcome, make_resources

    on_phase("making the day-one resources")
    started = time.monotonic()

    def seen(line: str) -> None:
        on_phase(f"day-one: {line[:80]}")
        if log is not None:
            with log.open("a", encoding="utf-8") as out:
                out.write(f"labctl day-one: {line}\n")

    try:
        with ssh.session(host) as session:
            outcomes = make_resources(session, spec, seen)
    except (SshUnreachable, RemoteCommandFailed, OSError) as exc:
        outcomes = [Outcome("cloud", "ssh", "failed", exc.message if isinstance(exc, LabctlError) else str(exc))]
    result.phases.append(("Day-one resources", time.monotonic() - started))
    result.problems += [o.line() for o in outcomes if o.failed]


def _then_cloud(inner: Runner) -> Runner:
    def run(ssh: SshPort, job: StackJob, on_phase: Callable[[str], None]) -> StackResult:
        result = inner(ssh, job, on_phase)
        if result.ok and job.cloud:
            day_one(ssh, job.host, job.cloud, result, on_phase, job.log)
        return result
    return run


def _then_snapshot(inner: Runner, snapshot: Callable[[str, records.StackRecord], None], reporter: Reporter) -> Runner:
    def run(ssh: SshPort, job: StackJob, on_phase: Callable[[str], None]) -> StackResult:
        result = inner(ssh, job, on_phase)
        if result.ok:
            on_phase("taking the stacked snapshot")
            try:
                snapshot(job.machine, _record_of(result))
            except LabctlError as exc:
                reporter.warn(f"{job.machine}: stacked, but no snapshot: {exc.message}")
        return result
    return run


def _runner(cloud: bool, snapshot: Callable[[str, records.StackRecord], None] | None, reporter: Reporter) -> Runner:
    """stack.sh, then the day-one resources, then the `stacked` snapshot (which `reset` returns to)."""
    runner = _then_cloud(stack_machine) if cloud else stack_machine
    return _then_snapshot(runner, snapshot, reporter) if snapshot else runner


def record(lab_dir: LabDir, results: Sequence[StackResult], discovery: str | None = None) -> None:
    state = records.read(lab_dir)
    for r in results:
        state.stack[r.machine] = _record_of(r)
    if discovery is not None:
        state.discover_hosts = discovery
    records.write(lab_dir, state)


def stack_lab(ssh: SshPort, lab: Lab, lab_dir: LabDir, statuses: Sequence[MachineStatus], reporter: Reporter, *,
              names: Sequence[str] = (), everything: bool = False, clean: bool = False,
              discover: DiscoverSettings | None = None, cache: Path | None = None,
              snapshot: Callable[[str, records.StackRecord], None] | None = None,
              caches: Endpoints | None = None, template: AsTemplate | None = None,
              relay: Relayer | None = None) -> StackRun | None:
    """`labctl stack`: None when every machine already stacked fine. `cache`: where the copies of
    served mirrors are kept (labctl's cache by default). `snapshot`: called in a machine's worker
    as soon as it has stacked (the `stacked` snapshot); its failure is a warning, not a failed stack.
    `caches`: where the host's package caches listen, when the lab uses them (hosts.services.host_caches)."""
    machines = machines_to_stack(lab, lab_dir, names, everything)
    if not machines:
        return None
    jobs = make_jobs(lab, lab_dir, machines, statuses, lab_dir.secrets(), clean, caches, template)
    ctl = lab.controller
    done = records.read(lab_dir).stack
    by_name = {s.name: s for s in statuses}
    controller_host = host_of(lab_dir, by_name[ctl.name]) if ctl and ctl.name in by_name else None
    names = [j.machine for j in jobs]
    records.mark(lab_dir, names, "started")
    try:
        with serving_mirrors(lab, lab_dir, cache or labctl_cache(), reporter, relay):
            run = run_stacks(ssh, jobs, reporter, controller_host=controller_host,
                             controller_ready=bool(ctl and ctl.name in done and done[ctl.name].ok),
                             discover=discover, on_result=lambda r: record(lab_dir, [r]),
                             runner=_runner(any(j.cloud for j in jobs), snapshot, reporter))
    except BaseException:
        with contextlib.suppress(LabctlError):  # a full disk must not hide what stopped the run
            records.mark(lab_dir, names, "interrupted")
        raise
    record(lab_dir, list(run.results.values()), run.discovery)
    return run


@dataclass(frozen=True)
class MachineApi:
    """Where one machine serves Keystone, and the admin password there (a seat's own in a classroom)."""

    auth_url: str
    dashboard: str | None
    stacked: bool
    password: str


@dataclass(frozen=True)
class Credentials:
    """The lab's admin credentials (`labctl creds`), and each machine that runs Keystone."""

    password: str
    machines: dict[str, MachineApi]
    username: str = "admin"
    project: str = "admin"
    user_domain: str = "default"
    project_domain: str = "default"
    region: str = "RegionOne"

    def as_json(self) -> dict[str, object]:
        return {"username": self.username, "password": self.password, "project": self.project,
                "user_domain": self.user_domain, "project_domain": self.project_domain, "region": self.region,
                "machines": {name: {"auth_url": m.auth_url, "dashboard": m.dashboard, "stacked": m.stacked,
                                    "password": m.password} for name, m in self.machines.items()}}


def credentials(lab_dir: LabDir) -> Credentials:
    """The lab's admin credentials and, per machine that runs Keystone, its URLs."""
    lab_secrets = lab_dir.secrets()
    stacked = records.read(lab_dir).stack
    apis = {}
    for m in records.read_lab(lab_dir).machines:
        if m.role == "compute":
            continue
        done = stacked.get(m.name)
        ok = bool(done and done.ok)
        # What DevStack said it serves; before it said anything, where Keystone will be.
        apis[m.name] = MachineApi(((done.keystone if done else None) or f"http://{m.ip}/identity/").rstrip("/"),
                                  done.dashboard if done and ok else None, ok, lab_secrets.for_machine(m.name).admin)
    return Credentials(lab_secrets.passwords.admin, apis)


def openrc(creds: Credentials, machine: str) -> str:
    """An openrc for the admin user against one machine's Keystone (values quoted for the shell)."""
    import shlex

    api = creds.machines[machine]
    values = {"OS_AUTH_URL": api.auth_url, "OS_USERNAME": creds.username, "OS_PASSWORD": api.password,
              "OS_PROJECT_NAME": creds.project, "OS_USER_DOMAIN_ID": creds.user_domain,
              "OS_PROJECT_DOMAIN_ID": creds.project_domain, "OS_REGION_NAME": creds.region,
              "OS_IDENTITY_API_VERSION": "3"}
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())
