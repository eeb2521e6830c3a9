"""A classroom at the speed of one seat: stack seat-01 once, then make every seat from its disk.

N runs of stack.sh on one host cost N times its CPU (under software emulation, the whole host for
half an hour each). Instead (classroom.clone, the default):
1. the other seats, just booted from the box, are shut off: they wait without using the CPU;
2. seat-01 stacks, alone and at full speed, as the classroom's *template*: with passwords of no seat
   (template_secrets) and no trainee's login yet;
3. seat-01 is shut off cleanly and its disk is copied once, by libvirt, into a read-only base volume;
   seat-01 and every other seat get a qcow2 overlay on it (hypervisor.clone_disks): one copy for
   the class (a minute or so), never one per seat;
4. every seat boots with the template's stacked DevStack and is made its own seat, seat-01 included
   (clone_guest.FIXUP_SCRIPT: name, address, keys, passwords, Keystone's catalog and users, the
   secrets no password list holds), in parallel; each is then searched for every other seat's
   secrets; then the trainee's password, the seat's own local.conf, and its `stacked` snapshot.
Why a template rather than seat-01's own passwords: a trainee is root in their seat and can read its
whole disk, free blocks included, and every seat's disk lies on the base. A base made with seat-01's
passwords would hand them to every seat, whatever the copies rewrite; a base made with passwords
that open nothing once each seat has its own hands out nothing.
A keystone-only seat gets its own name and address on the class's lab network (the catalog is
rewritten): each seat's Keystone is then reached by the host at its own address. A DevStack whose
services remember their host (Nova, Neutron, OVN) cannot be renamed reliably: in such a class every
seat keeps the template's name and address, each on a network of its own, and only its passwords and
secrets are rewritten (labctl.classroom.networks, classroom.seat_networks).

`labctl stack` of named seats, a classroom with `clone: false`, or a seat-01 that has stacked
already, stacks seats one by one as any lab.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from labctl import records
from labctl.classroom.networks import hostname
from labctl.errors import LabctlError
from labctl.machine_status import MachineStatus, host_of, lab_status
from labctl.model import Lab
from labctl.names import domain_name
from labctl.passwords import Passwords, SeatSecrets
from labctl.protocols import RemoteCommandFailed, SshPort, SshTarget, SshUnreachable
from labctl.provision import StackResult, open_seat, push_local_conf
from labctl.stacking.class_images import keep_template, template_from_image, template_image
from labctl.stacking.clone_guest import FIXUP_SCRIPT
from labctl.stacking.clone_hosts import BOOT_TIMEOUT, Hosts, send_base, wait_for_addresses
from labctl.stacking.identity import _identities, identity_spec, prepare_copy
from labctl.stacking.machines import AsTemplate, StackRun, day_one, record, stack_lab
from labctl.stacking.pool import machine_pool
from labctl.stacking.request import StackRequest
from labctl.stacklog import mask
from labctl.state import LabDir

if TYPE_CHECKING:
    from labctl.images.key import StackKey
    from labctl.images.store import Image
    from labctl.protocols import HypervisorPort, Reporter

TEMPLATE = "seat-01"
def fixup_spec(lab: Lab, seat: str, seats: Mapping[str, SeatSecrets], template: Passwords, user: str,
               authorized_key: str, machine_id: str = "") -> dict[str, object]:
    """What the clone script needs to make the template's copy into `seat` (secrets included: it
    travels in a file of mode 0600): the template's passwords -> the seat's, and every secret of every
    other seat, which must be nowhere in it, as salted digests (a value sent would be in it). Pure
    but for the salt."""
    ips = {m.name: m.ip for m in lab.machines}
    names = {n: hostname(lab.name, lab.classroom, n) for n in (seat, TEMPLATE)}  # the same with seat networks
    return identity_spec(name=names[seat], old_name=names[TEMPLATE], old_ip=ips[TEMPLATE], new_ip=ips[seat],
                         user=user, authorized_key=authorized_key, machine_id=machine_id, old=template,
                         own=seats[seat], others=[v for name, values in seats.items() if name != seat
                                                  for v in values.values()])


def template_secrets(lab_dir: LabDir) -> Passwords:
    """The passwords seat-01 stacks with when it is the classroom's template: no seat's, made once
    per lab (a retried stack.sh must meet the database it made), kept 0600 in the lab's folder."""
    from labctl.state import atomic_write

    path = lab_dir.path / "template-secrets.json"
    with contextlib.suppress(OSError, ValueError):
        known = Passwords.from_raw(json.loads(path.read_text(encoding="utf-8")))
        if known is not None and all(len(v) >= 16 for v in known.values()):
            return known
    made = Passwords.generate()
    atomic_write(path, json.dumps(made.as_dict(), indent=2) + "\n", mode=0o600)
    return made


def clone_applies(lab: Lab, names: Sequence[str]) -> bool:
    return bool(lab.classroom and lab.classroom.clone and TEMPLATE in names and len(names) > 1)


def stack_classroom(lab: Lab, lab_dir: LabDir, statuses: Sequence[MachineStatus], reporter: Reporter,
                    hypervisor: HypervisorPort, ssh: SshPort, names: Sequence[str], request: StackRequest) -> StackRun:
    """The classroom's seats `names` (seat-01 among them, every one needing DevStack): seat-01 stacks
    once as the template, and every seat is made from its disk (see this module's header)."""
    clones = [n for n in names if n != TEMPLATE]
    doms = {n: domain_name(lab.name, n) for n in names}
    hosts = Hosts(hypervisor, request.hosts, {s.name: s.host for s in statuses})
    reporter.step(f"stacking {TEMPLATE} once; {len(clones)} more seats will be made from its disk"
                  " (classroom.clone: false stacks every seat)")
    machine_ids = _identities(ssh, lab_dir, statuses, clones)
    with reporter.machines(clones, "waiting") as progress:
        for host, on_host in hosts.group(clones).items():
            hosts.on(host).shut_down([doms[n] for n in on_host], 120, lambda dom, state: progress.update(
                _seat(dom, doms), f"{state} until {TEMPLATE} has stacked"))
    seats = lab_dir.secrets().seats
    template = template_secrets(lab_dir)
    key, image = template_image(lab, lab_dir, reporter, hypervisor, request, hosts.where.get(TEMPLATE) is None)
    run = _template(lab, lab_dir, statuses, reporter, hypervisor, ssh, request, image, template)
    if not run.results[TEMPLATE].ok:
        reporter.warn(f"{TEMPLATE} did not stack: the other seats stay off (labctl up starts them and tries again)")
        return run
    stacked = run.results[TEMPLATE]
    if image is not None:  # booted on the image: a lease of its own since
        statuses = lab_status(lab_dir, hosts.here, hosts.access)
    # Stacked as the template, not yet seat-01: said so in its record until it is made its own seat.
    record(lab_dir, [StackResult(TEMPLATE, "failed", stacked.seconds, "making it its own seat",
                                 "stacked as the classroom's template, then interrupted before it became its own seat",
                                 ["labctl stack --clean seat-01 stacks it again"])])
    kept = (key, template) if key is not None and image is None else None
    current = _copy_template(lab, lab_dir, statuses, reporter, hosts, ssh, names, machine_ids, request, kept, stacked)
    results = make_seats(ssh, lab, lab_dir, current, reporter, names, seats, template, stacked)
    if request.snapshot is not None:
        for name in names:
            if results[name].ok:
                try:
                    request.snapshot(name, records.read(lab_dir).stack[name])
                except LabctlError as exc:
                    reporter.warn(f"{name}: stacked, but no snapshot: {exc.message}")
    return StackRun({n: results[n] for n in names})


def _template(lab: Lab, lab_dir: LabDir, statuses: Sequence[MachineStatus], reporter: Reporter,
              hypervisor: HypervisorPort, ssh: SshPort, request: StackRequest, image: Image | None,
              template: Passwords) -> StackRun:
    """seat-01 made the class's template: from a stacked image of its stack (labctl.stacking.class_images),
    or by stack.sh with the template's passwords."""
    if image is not None:
        made = template_from_image(lab, lab_dir, reporter, hypervisor, ssh, request, image, template)
        if not made.ok:
            record(lab_dir, [made])
        return StackRun({TEMPLATE: made})
    own = lab_dir.secrets().seats[TEMPLATE].devstack()
    as_template = AsTemplate(tuple(zip(own.values(), template.values(), strict=True)))
    run = stack_lab(ssh, lab, lab_dir, statuses, reporter, names=[TEMPLATE], template=as_template, cache=request.cache,
                    caches=request.caches, relay=request.relay)
    assert run is not None  # the template needs DevStack: it is among the names
    return run


def _copy_template(lab: Lab, lab_dir: LabDir, statuses: Sequence[MachineStatus], reporter: Reporter,
                   hosts: Hosts, ssh: SshPort, names: Sequence[str], machine_ids: dict[str, str],
                   request: StackRequest, kept: tuple[StackKey, Passwords] | None,
                   stacked: StackResult) -> list[MachineStatus]:
    """The stacked template's disk made every seat's base (sent once to each other host that has
    seats), the seats booted on it and fenced in: their statuses with their new leases. `kept`: the key
    and passwords of the image its disk is kept as, too, while it is shut off anyway."""
    clones = [n for n in names if n != TEMPLATE]
    doms = {n: domain_name(lab.name, n) for n in names}
    reporter.step(f"{TEMPLATE} has stacked: its disk becomes the base of every seat")
    by_name = {s.name: s for s in statuses}
    with ssh.session(_host(lab_dir, by_name[TEMPLATE], TEMPLATE)) as session:
        prepare_copy(session, machine_ids, f"preparing {TEMPLATE}'s disk to be copied")
    home = hosts.where[TEMPLATE]
    hv = hosts.on(home)
    hv.shut_down([doms[TEMPLATE]], 300, lambda _d, state: reporter.step(f"{TEMPLATE}: {state}"))
    if kept is not None:
        keep_template(lab, lab_dir, reporter, hv, request, kept[0], stacked, by_name[TEMPLATE].user, kept[1])
    reporter.step(f"{TEMPLATE}: its stacked disk is copied once into the classroom's base")
    groups = hosts.group(clones)
    base = hv.clone_disks(doms[TEMPLATE], [doms[n] for n in groups.pop(home, [])])
    for host, on_host in groups.items():
        copy = send_base(hv, base, host, hosts.on(host), doms[on_host[0]], reporter)
        hosts.on(host).overlay_disks(copy, [doms[n] for n in on_host])
    reporter.step(f"{len(clones) + 1} seats now start from {base.name}; booting them")
    waits = []
    for host, on_host in hosts.group(names).items():
        waits.append(hosts.booted_anew({n: doms[n] for n in on_host}, BOOT_TIMEOUT))
        hosts.on(host).start([doms[n] for n in on_host])
    for wait in waits:  # a copy labctl knew no machine-id of asks DHCP by its MAC: a new lease
        wait()
    current = wait_for_addresses(lab, lab_dir, hosts, names)
    if request.fence is not None:  # each copy's card is held to its own new lease, before anything else
        request.fence(current)
    # A copy answers with seat-01's host key at first: its own old key must not be taken for a changed host.
    for s in current:
        if s.ssh_address and s.name in clones:
            ssh.forget(lab_dir.known_hosts_of(s.host), [s.ssh_address])
    return current


def make_seats(ssh: SshPort, lab: Lab, lab_dir: LabDir, current: Sequence[MachineStatus], reporter: Reporter,
                names: Sequence[str], seats: Mapping[str, SeatSecrets], template: Passwords,
                stacked: StackResult, machine_ids: Mapping[str, str] | None = None) -> dict[str, StackResult]:
    """Every booted copy made its own seat at once; each result recorded as it ends. `machine_ids`: each
    seat's own, to give back to a copy that booted with the template's (seats made later, remake.py)."""
    by_name = {s.name: s for s in current}
    results: dict[str, StackResult] = {}
    with reporter.machines(names, "booting") as progress, machine_pool(len(names), ssh.cancel) as pool:
        futures = {n: pool.submit(_make_seat, ssh, lab, lab_dir, by_name, n, seats, template, progress.update,
                                  (machine_ids or {}).get(n, "")) for n in names}
        for name, future in futures.items():
            results[name] = future.result()
            if name == TEMPLATE and results[name].ok:  # its stack.sh's phases and endpoints
                stacked.problems = results[name].problems  # the day-one step's, tried again as seat-01
                results[name] = stacked
            record(lab_dir, [results[name]])
            progress.update(name, "done" if results[name].ok else f"failed: {results[name].message}")
    return results


def _seat(domain: str, doms: dict[str, str]) -> str:
    return next((n for n, d in doms.items() if d == domain), domain)


def _host(lab_dir: LabDir, status: MachineStatus, key_of: str) -> SshTarget:
    assert status.ssh_address is not None
    return host_of(lab_dir, status, key_of)


class _Steps:
    """The step a copy is at: shown live, and named in its result when it fails."""

    def __init__(self, name: str, update: Callable[[str, str], None]) -> None:
        self.name, self.update, self.now = name, update, "waiting for SSH"

    def at(self, step: str) -> None:
        self.now = step
        self.update(self.name, step)

    def say(self, text: str) -> None:
        self.update(self.name, f"{self.now}: {text}")


def _make_seat(ssh: SshPort, lab: Lab, lab_dir: LabDir, by_name: dict[str, MachineStatus], name: str,
               seats: Mapping[str, SeatSecrets], template: Passwords,
               update: Callable[[str, str], None], machine_id: str = "") -> StackResult:
    """Turn one booted copy of the template into seat `name`; failures become its result."""
    started = time.monotonic()
    status = by_name[name]
    secrets = [v for seat in seats.values() for v in seat.values()] + list(template.values())
    log = lab_dir.stack_log(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    steps = _Steps(name, update)
    try:
        with log.open("a", encoding="utf-8") as out:
            out.write(f"--- {time.strftime('%F %T')} made its own seat from the template's stacked disk"
                      " (classroom.clone)\n")

            def line(text: str) -> None:
                out.write(mask(text, secrets).rstrip("\n") + "\n")
                out.flush()
                steps.say(mask(text, secrets).strip()[:80])

            problems = _make_its_own(ssh, lab, lab_dir, status, name, seats, template, steps, line, machine_id)
    except (SshUnreachable, RemoteCommandFailed, LabctlError, OSError) as exc:
        message = exc.message if isinstance(exc, LabctlError) else str(exc)
        tail = exc.tail.splitlines() if isinstance(exc, RemoteCommandFailed) else []
        return StackResult(name, "failed", time.monotonic() - started, steps.now, mask(message, secrets),
                           [mask(t, secrets) for t in tail])
    ip = status.lab_ip
    return StackResult(name, "ok", time.monotonic() - started, f"cloned from {TEMPLATE}", "", [], None,
                       f"http://{ip}/identity/", [("Cloned from seat-01", time.monotonic() - started)],
                       problems)


def _make_its_own(ssh: SshPort, lab: Lab, lab_dir: LabDir, status: MachineStatus, name: str,
                  seats: Mapping[str, SeatSecrets], template: Passwords, steps: _Steps,
                  line: Callable[[str], None], machine_id: str = "") -> list[str]:
    """The copy, still seat-01 inside, rewritten into seat `name` (the fixup script, as root), then opened to
    its trainee with its own local.conf and keypair. Returns the day-one step's problems."""
    assert status.ssh_address is not None
    ssh.forget(lab_dir.known_hosts_of(status.host), [status.ssh_address])  # a DHCP address may have served another
    steps.at("waiting for SSH")
    ssh.wait(_host(lab_dir, status, TEMPLATE), BOOT_TIMEOUT)  # still seat-01's key inside
    steps.at("making it its own seat")
    spec = fixup_spec(lab, name, seats, template, status.user, ssh.public_key(lab_dir.private_key(name)), machine_id)
    with ssh.session(_host(lab_dir, status, TEMPLATE)) as session:
        spec_file = session.upload_private(json.dumps(spec).encode())
        script = session.upload_private(FIXUP_SCRIPT.encode())
        session.run(shlex.join(["sudo", "python3", script, spec_file])
                    + f"; rc=$?; rm -f {shlex.quote(script)}; exit $rc", "making the copy its own seat", on_line=line)
    ssh.forget(lab_dir.known_hosts_of(status.host), [status.ssh_address])  # its host keys are its own now
    steps.at("opening the seat to its trainee")
    own_host = _host(lab_dir, status, name)
    ssh.wait(own_host, 120)  # sshd starts again with its new keys: a moment without a listener
    with ssh.session(own_host) as session:
        open_seat(session, seats[name].login)
        push_local_conf(session, lab_dir.local_conf(name).read_text(encoding="utf-8"))
    if not lab.cloud:
        return []
    made = StackResult(name, "ok")  # made on the template already: only this seat's own keypair is new
    day_one(ssh, own_host, lab.cloud, made, lambda text: steps.update(name, text), lab_dir.stack_log(name))
    return made.problems
