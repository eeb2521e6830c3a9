"""A developer's lab at the speed of a boot: its machine made from a stacked image when one of the same
stack is kept on the host, and its disk kept as one when it stacks (labctl.images says what an image
is, and when it is the same stack).

Only for a lab of one machine, on this host, stacked whole (not --clean), whose disk starts at a box:
- with an image of its key: `up` finds it before Vagrant runs (straight_images) and the machine is
  created on an overlay of the image without a box (no boot thrown away), then made its own machine
  by the classroom's copy script (its name, address, passwords, SSH and Keystone keys;
  labctl.stacking.clone_guest), its own local.conf pushed. A machine that was made from its box
  meanwhile (`labctl stack`), or a copy an earlier up did not finish making, is powered off, its disk
  replaced by a new overlay on the image, and booted;
- without one (or with --fresh): stack.sh, as any lab; then, when it stacked, the machine is
  prepared as the classroom's template is (copies ask DHCP as themselves), shut off, its disk copied
  once into the image, and booted again. The stack is never failed by an image that could not be kept.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl import records
from labctl.classroom.networks import hostname
from labctl.errors import LabctlError
from labctl.images.key import CommitUnknown, StackKey, image_lab, machine_key
from labctl.images.store import IMAGE_PREFIX, Image, ImageStore, nearest, volume_name
from labctl.machine_status import MachineStatus, host_of
from labctl.names import domain_name
from labctl.passwords import Passwords
from labctl.protocols import RemoteCommandFailed, SshTarget, SshUnreachable
from labctl.provision import StackResult, push_local_conf
from labctl.stacking.clone_guest import FIXUP_SCRIPT
from labctl.stacking.clone_hosts import BOOT_TIMEOUT, Hosts, wait_for_addresses
from labctl.stacking.identity import UNDO_TEMPLATE, identity_spec, prepare_copy
from labctl.stacking.machines import StackRun, day_one, record
from labctl.stacklog import mask
from labctl.state import atomic_write

if TYPE_CHECKING:
    from labctl.lab import Rendered
    from labctl.model import Lab
    from labctl.protocols import HypervisorPort, Reporter, SshPort, VagrantPort
    from labctl.stacking.request import StackRequest
    from labctl.state import LabDir


def images_apply(lab: Lab, names: Sequence[str], request: StackRequest) -> bool:
    return bool(request.images is not None and not request.clean and image_lab(lab)
                and list(names) == [lab.machines[0].name])


def cut_short(lab: Lab, name: str, origin: str, image: Image | None, fresh: bool) -> Image:
    """The image under machine `name`'s disk (`origin`), which an up cut short was making its own: made
    again from it, unless it is gone or --fresh asks for stack.sh, which never runs on such a copy."""
    if image is None or fresh:
        raise LabctlError(f"{name} of lab {lab.name!r} was being made from stacked image {origin}, and"
                          f" {'--fresh asks for stack.sh' if image else 'that image is gone'}: stack.sh does not"
                          " run on a copy of another machine", hint=f"labctl destroy --lab {lab.name}, then"
                          f" labctl up{' --fresh' if fresh else ''}")
    return image


def stack_with_images(lab: Lab, lab_dir: LabDir, reporter: Reporter, hypervisor: HypervisorPort, ssh: SshPort,
                      request: StackRequest, stack: Callable[[], StackRun | None]) -> StackRun | None:
    """The lab's one machine from an image of its stack, or stacked by `stack` and kept as one."""
    assert request.images is not None
    store, name = request.images, lab.machines[0].name
    origin = hypervisor.disk_origin(domain_name(lab.name, name))
    if origin is not None and origin.startswith(IMAGE_PREFIX):  # booted straight from one, or an up cut short
        image = store.get(origin.removeprefix(IMAGE_PREFIX).removesuffix(".img"))
        if image is not None and name in request.straight:
            return StackRun({name: from_image(lab, lab_dir, reporter, hypervisor, ssh, request, image, booted=True)})
        image = cut_short(lab, name, origin, image, request.fresh)
        reporter.step(f"{name}: its disk is a copy of image {image.digest} not yet made its own machine: made again")
        return StackRun({name: from_image(lab, lab_dir, reporter, hypervisor, ssh, request, image)})
    key = stack_key_of(lab, lab_dir, name, origin, reporter)
    if key is not None and not request.fresh:
        image = kept_image(store, hypervisor, key.digest)
        if image is not None:
            return StackRun({name: from_image(lab, lab_dir, reporter, hypervisor, ssh, request, image)})
        reporter.step(why_no_image(store, key))
    elif key is not None:
        reporter.step("stacking afresh (--fresh): no image used; the stacked disk is kept as a new one")
    run = stack()
    if key is not None and run is not None and run.results.get(name) is not None and run.results[name].ok:
        try:
            keep(lab, lab_dir, reporter, hypervisor, ssh, store, key, run.results[name])
        except (LabctlError, SshUnreachable, RemoteCommandFailed, OSError) as exc:
            reporter.warn(f"{name}: stacked, but its disk was not kept as an image:"
                          f" {exc.message if isinstance(exc, LabctlError) else exc}")
    return run


def straight_images(lab: Lab, local_confs: Mapping[str, str], passwords: Iterable[str], new: Sequence[str],
                    box_volume: Callable[[str], str | None], store: ImageStore,
                    hypervisor: HypervisorPort) -> dict[str, Image]:
    """Before Vagrant runs: the lab's machine, not made yet, -> the stacked image of its stack, which it is
    then created on (no box, no boot to throw away). Its key is the one the machine would have once made
    from its box: the box's volume (`box_volume`: box -> the volume vagrant-libvirt makes of it), its
    rendered local.conf. Empty when none is kept, or when the lab is not one an image is used for."""
    machine = lab.machines[0]
    if not image_lab(lab) or machine.name not in new:
        return {}
    origin = box_volume(machine.box)
    if origin is None:
        return {}
    try:
        key = machine_key(lab, machine.name, local_confs[machine.name], passwords, origin)
    except CommitUnknown:  # said by stack_with_images, which then stacks
        return {}
    image = kept_image(store, hypervisor, key.digest)
    return {machine.name: image} if image is not None else {}


def kept_image(store: ImageStore, hypervisor: HypervisorPort, digest: str) -> Image | None:
    """The image of this key when it is recorded and its volume is still in a pool."""
    image = store.get(digest)
    return image if image is not None and hypervisor.base_named(Path(image.volume).name) is not None else None


def onto_images(rendered: Rendered, render: Callable[[dict[str, str]], Rendered], validate: Callable[[str], None],
                new: Sequence[str], images: ImageStore, driver: VagrantPort, hv: HypervisorPort,
                reporter: Reporter) -> tuple[Rendered, dict[str, Image]]:
    """In `up`, before Vagrant runs: the machines not made yet (`new`) that an image of their stack is kept
    for -> that image; the lab rendered again (`render`) with them box-less (`validate`d), and their disks
    made, overlays on the images. (rendered, {}) when there is none."""
    lab = rendered.lab
    made_from = straight_images(lab, rendered.local_confs, rendered.secrets.values(), new, driver.box_volume,
                                images, hv)
    if not made_from:
        return rendered, {}
    rendered = render({n: f"{domain_name(lab.name, n)}.img" for n in made_from})
    validate(rendered.vagrantfile)
    for name, image in made_from.items():
        reporter.step(f"{name}: created on stacked image {image.digest} (lab {image.lab}): no box to boot")
        hv.image_overlay(Path(image.volume), f"{domain_name(lab.name, name)}.img")
    return rendered, made_from


def finish_on_images(lab_dir: LabDir, ssh: SshPort, boxed: str, made_from: Mapping[str, Image]) -> None:
    """Once Vagrant created them: the Vagrantfile with every box again (a later `vagrant up` starts them as
    any machine, waiting for their SSH), and a key for each, where Vagrant keeps one (it makes none for a
    machine without a box, and clears that folder as it creates the machine)."""
    atomic_write(lab_dir.vagrantfile, boxed)
    for name in made_from:
        ssh.make_key(lab_dir.private_key(name))


def stack_key_of(lab: Lab, lab_dir: LabDir, name: str, origin: str | None, reporter: Reporter) -> StackKey | None:
    if origin is None:  # a disk in no pool: no box known under it
        return None
    try:
        text = lab_dir.local_conf(name).read_text(encoding="utf-8")
        return machine_key(lab, name, text, lab_dir.secrets().values(), origin)
    except CommitUnknown as exc:
        reporter.warn(f"no stacked image can be used or kept: {exc.message}")
        return None


def why_no_image(store: ImageStore, key: StackKey) -> str:
    close = nearest(store.all(), key)
    if close is None:
        return f"no stacked image of this stack yet ({key.digest}): stack.sh runs, and its disk is kept as one"
    reasons = key.differences(close.key)
    return (f"no stacked image of this stack ({key.digest}): the nearest, {close.digest} (lab {close.lab}), differs"
            f" in {'; '.join(reasons[:4])}{' and more' if len(reasons) > 4 else ''}: stack.sh runs")


def keep(lab: Lab, lab_dir: LabDir, reporter: Reporter, hypervisor: HypervisorPort, ssh: SshPort,
         store: ImageStore, key: StackKey, stacked: StackResult) -> Image | None:
    """The stacked machine's disk kept as the image of `key`: prepared so that its copies ask DHCP as
    themselves, shut off, copied, and booted again (whatever happened to the copy)."""
    name = stacked.machine
    dom = domain_name(lab.name, name)
    existing = hypervisor.base_named(volume_name(key.digest))
    users = hypervisor.image_users(existing) if existing is not None else []
    if users:  # kept by another lab's up meanwhile, and stood on: never replaced under a machine
        reporter.step(f"{name}: image {key.digest} of this stack is kept already (under {', '.join(users)})")
        return None
    status = _status(lab_dir, hypervisor, lab, name)
    reporter.step(f"{name}: keeping its stacked disk as image {key.digest} (shut off, copied once, booted again)")
    with ssh.session(host_of(lab_dir, status)) as session:
        prepare_copy(session, {}, "preparing its disk to be kept")
    hypervisor.shut_down([dom], 300, lambda _d, state: reporter.step(f"{name}: {state}"))
    try:
        image = save_image(lab, lab_dir, hypervisor, store, key, stacked, status.user, lab_dir.secrets().passwords)
    finally:
        hypervisor.start([dom])
        hypervisor.mark_started([dom])
        status = _status(lab_dir, hypervisor, lab, name)
        ssh.wait(host_of(lab_dir, status), BOOT_TIMEOUT)
        with ssh.session(host_of(lab_dir, status)) as session:
            session.run(f"sudo sh -c {shlex.quote(UNDO_TEMPLATE)}", "removing what only its copies need")
    reporter.step(f"{name}: kept as image {key.digest} ({image.size / 1024**3:.1f} GiB); the next lab of this stack"
                  " starts from it (labctl images)")
    return image


def save_image(lab: Lab, lab_dir: LabDir, hypervisor: HypervisorPort, store: ImageStore, key: StackKey,
               stacked: StackResult, user: str, passwords: Passwords) -> Image:
    """The shut-off, prepared disk of machine `stacked.machine` copied into the image of `key`, recorded
    with the `passwords` it was stacked with and the machine's key (nothing left of it if that fails)."""
    name = stacked.machine
    with store.keeping(key.digest):
        path, size = hypervisor.keep_image(domain_name(lab.name, name), volume_name(key.digest))
        try:
            image = Image(digest=key.digest, volume=str(path), lab=lab.name, machine=name,
                          hostname=hostname(lab.name, lab.classroom, name), ip=_ip(lab, name), user=user,
                          created=time.time(), size=size, stack_seconds=stacked.seconds, parts=dict(key.parts))
            store.save(image, passwords, lab_dir.private_key(name))
        except BaseException:  # a copy without its passwords and key can make no machine
            hypervisor.remove_image(path)
            store.forget(key.digest)
            raise
    return image


def _ip(lab: Lab, name: str) -> str:
    return next(m.ip for m in lab.machines if m.name == name)


def from_image(lab: Lab, lab_dir: LabDir, reporter: Reporter, hypervisor: HypervisorPort, ssh: SshPort,
               request: StackRequest, image: Image, booted: bool = False) -> StackResult:
    """The lab's machine made from `image`, without stack.sh; its result recorded, its snapshot taken.
    `booted`: `up` created it on a new overlay of the image (no box, straight_images), and it runs."""
    started = time.monotonic()
    name = lab.machines[0].name
    store = request.images
    assert store is not None
    reporter.step(f"{name}: made from stacked image {image.digest} (lab {image.lab}, stack.sh took"
                  f" {image.stack_seconds / 60:.0f} min), without stack.sh (--fresh stacks)")
    status = on_image(lab, lab_dir, hypervisor, request, image, name, booted)
    becomes = Becoming(lab_dir.secrets().passwords, lab_dir.local_conf(name).read_text(encoding="utf-8"))
    result = make_own(lab, lab_dir, status, reporter, ssh, store, image, started, becomes)
    record(lab_dir, [result])
    if result.ok:
        store.used(image)
        if request.snapshot is not None:
            try:
                request.snapshot(name, records.read(lab_dir).stack[name])
            except LabctlError as exc:
                reporter.warn(f"{name}: made, but no snapshot: {exc.message}")
    return result


def on_image(lab: Lab, lab_dir: LabDir, hypervisor: HypervisorPort, request: StackRequest, image: Image, name: str,
             booted: bool = False) -> MachineStatus:
    """Machine `name` running on a new overlay of `image`, with its lease, fenced: its status. `booted`:
    it runs on one already (created so by `up`)."""
    dom = domain_name(lab.name, name)
    hosts = Hosts(hypervisor, None, {name: None})
    if not booted:
        # A box's boot, or a copy an earlier up did not finish making, is thrown away with its disk:
        # powered off at once, booted on a new overlay, with a machine-id of its own (and asks DHCP by
        # its card).
        hypervisor.shut_down([dom], 0, lambda _d, _state: None)
        hypervisor.overlay_disks(Path(image.volume), [dom])
        leased = hosts.booted_anew({name: dom}, BOOT_TIMEOUT)  # the image asks DHCP as no box did: a new lease
        hypervisor.start([dom])
        hypervisor.mark_started([dom])
        leased()
    current = wait_for_addresses(lab, lab_dir, hosts, [name])
    if request.fence is not None:
        request.fence(current)
    return next(s for s in current if s.name == name)


@dataclass(frozen=True)
class Becoming:
    """What a copy of an image is made: its passwords, its local.conf's text, and secrets that must be
    nowhere on it (a class's template: every seat's)."""

    own: Passwords
    local_conf: str
    others: tuple[str, ...] = ()


def make_own(lab: Lab, lab_dir: LabDir, status: MachineStatus, reporter: Reporter, ssh: SshPort,
             store: ImageStore, image: Image, started: float, becomes: Becoming) -> StackResult:
    """The booted copy of the image made machine `status.name` of the lab, as `becomes` says; failures
    become its result."""
    name = status.name
    own, old = becomes.own, store.secrets(image)
    hidden = [*own.values(), *old.values()]
    log = lab_dir.stack_log(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    steps = ["waiting for SSH"]
    try:
        with log.open("a", encoding="utf-8") as out, reporter.machines([name], "booting") as progress:
            out.write(f"--- {time.strftime('%F %T')} made from stacked image {image.digest} (lab {image.lab})\n")

            def at(step: str) -> None:
                steps.append(step)
                progress.update(name, step)

            def line(text: str) -> None:
                out.write(mask(text, hidden).rstrip("\n") + "\n")
                out.flush()
                progress.update(name, f"{steps[-1]}: {mask(text, hidden).strip()[:70]}")

            spec = identity_spec(name=hostname(lab.name, lab.classroom, name), old_name=image.hostname,
                                 old_ip=image.ip, new_ip=status.lab_ip or _ip(lab, name), user=status.user,
                                 authorized_key=ssh.public_key(lab_dir.private_key(name)),
                                 machine_id=secrets.token_hex(16), old=old, own=own,
                                 others=becomes.others)  # a machine-id of its own, never the image's
            _rewrite(lab_dir, status, ssh, _image_target(lab_dir, status, store, image), spec, becomes.local_conf,
                     at, line)
            progress.update(name, "done")
    except (SshUnreachable, RemoteCommandFailed, LabctlError, OSError) as exc:
        message = exc.message if isinstance(exc, LabctlError) else str(exc)
        tail = exc.tail.splitlines() if isinstance(exc, RemoteCommandFailed) else []
        return StackResult(name, "failed", time.monotonic() - started, steps[-1], mask(message, hidden),
                           [mask(t, hidden) for t in tail]
                           + [f"labctl up --fresh --lab {lab.name} stacks it with stack.sh instead"])
    seconds = time.monotonic() - started
    made = StackResult(name, "ok", seconds, f"made from image {image.digest}", "", [], None,
                       f"http://{status.lab_ip or _ip(lab, name)}/identity/",
                       [(f"Made from image {image.digest}", seconds)], [])
    if lab.cloud:
        day_one(ssh, host_of(lab_dir, status), lab.cloud, made, lambda text: reporter.step(f"{name}: {text}"),
                lab_dir.stack_log(name))
    return made


def _rewrite(lab_dir: LabDir, status: MachineStatus, ssh: SshPort, inside: SshTarget, spec: dict[str, object],
             local_conf: str, at: Callable[[str], None], line: Callable[[str], None]) -> None:
    """The copy script run in the machine (reached with the image's key), then its local.conf."""
    assert status.ssh_address is not None
    known = lab_dir.known_hosts_of(status.host)
    ssh.forget(known, [status.ssh_address])  # it answers with the image's host key at first
    ssh.wait(inside, BOOT_TIMEOUT)
    at("making it its own machine")
    with ssh.session(inside) as session:
        spec_file = session.upload_private(json.dumps(spec).encode())
        script = session.upload_private(FIXUP_SCRIPT.encode())
        session.run(shlex.join(["sudo", "python3", script, spec_file])
                    + f"; rc=$?; rm -f {shlex.quote(script)}; exit $rc", "making it its own machine", on_line=line)
    ssh.forget(known, [status.ssh_address])  # its own host keys now
    at("pushing its local.conf")
    own_host = host_of(lab_dir, status)
    ssh.wait(own_host, 120)  # sshd starts again with its new keys
    with ssh.session(own_host) as session:
        push_local_conf(session, local_conf)


def _image_target(lab_dir: LabDir, status: MachineStatus, store: ImageStore, image: Image) -> SshTarget:
    """The machine as the image's login user lets it in: with the key the image was made with."""
    own = host_of(lab_dir, status)
    return SshTarget(own.name, own.address, image.user, store.key_file(image), own.known_hosts,
                     proxy_command=own.proxy_command)


def _status(lab_dir: LabDir, hypervisor: HypervisorPort, lab: Lab, name: str) -> MachineStatus:
    """The machine once it has its management address (a running machine's lease)."""
    hosts = Hosts(hypervisor, None, {name: None})
    current = wait_for_addresses(lab, lab_dir, hosts, [name])
    return next(s for s in current if s.name == name)
