"""A class held again stacks nothing: its template, seat-01, is made from a stacked image of the same
stack when the host keeps one, and its stacked disk is kept as one when it stacked (what
labctl.stacking.images does for a developer's machine; the same images serve both).

- Before seat-01 would stack as the template: its key is read as a developer's machine's is (its box's
  volume, its rendered local.conf, the commits stack.sh would clone; for a DevStack that remembers its
  host, the host's name and address). With an image of it, seat-01's box boot is thrown away, it boots
  on an overlay of the image and is made the template (the image's name, address and passwords
  rewritten into the template's, which open nothing once the seats are their own); the class then
  goes on as after stack.sh: seat-01's disk is copied into the class's base, and every seat is made
  from it.
- After seat-01 stacked (no image, or --fresh): while it is shut off for the class's base anyway, its
  disk (already prepared for copies) is copied once more, into the image. Keeping it never fails the
  class.
Only for a classroom that clones, with seat-01 on this host, stacked whole (not --clean).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from labctl.errors import LabctlError
from labctl.images.key import StackKey
from labctl.images.store import IMAGE_PREFIX, Image, volume_name
from labctl.names import domain_name
from labctl.provision import StackResult
from labctl.stacking.images import (
    Becoming,
    cut_short,
    kept_image,
    make_own,
    on_image,
    save_image,
    stack_key_of,
    why_no_image,
)

if TYPE_CHECKING:
    from labctl.model import Lab
    from labctl.passwords import Passwords
    from labctl.protocols import HypervisorPort, Reporter, SshPort
    from labctl.stacking.request import StackRequest
    from labctl.state import LabDir

TEMPLATE = "seat-01"
# The volume vagrant-libvirt makes of a box ends so: a template whose disk starts elsewhere (the class's
# base, after an earlier clone) is not a box's stack.
BOX_VOLUME_SUFFIX = "_box.img"


def template_image(lab: Lab, lab_dir: LabDir, reporter: Reporter, hypervisor: HypervisorPort, request: StackRequest,
                   local: bool) -> tuple[StackKey | None, Image | None]:
    """seat-01's stack key (None: no image is used or kept for it) and the kept image it is made from
    (None: it stacks). `local`: seat-01 is on this host."""
    store = request.images
    if store is None or request.clean or not local:
        return None, None
    origin = hypervisor.disk_origin(domain_name(lab.name, TEMPLATE))
    if origin is not None and origin.startswith(IMAGE_PREFIX):  # an up cut short while making it
        under = cut_short(lab, TEMPLATE, origin, store.get(origin.removeprefix(IMAGE_PREFIX).removesuffix(".img")),
                          request.fresh)
        reporter.step(f"{TEMPLATE}: its disk is a copy of image {under.digest} not yet made the template: made again")
        return None, under
    if origin is None or not origin.endswith(BOX_VOLUME_SUFFIX):
        return None, None
    key = stack_key_of(lab, lab_dir, TEMPLATE, origin, reporter)
    if key is None:
        return None, None
    if request.fresh:
        reporter.step(f"{TEMPLATE} stacks afresh (--fresh): no image used; its stacked disk is kept as a new one")
        return key, None
    image = kept_image(store, hypervisor, key.digest)
    if image is None:
        reporter.step(why_no_image(store, key).replace("stack.sh runs", f"{TEMPLATE} stacks"))
    return key, image


def template_from_image(lab: Lab, lab_dir: LabDir, reporter: Reporter, hypervisor: HypervisorPort, ssh: SshPort,
                        request: StackRequest, image: Image, template: Passwords) -> StackResult:
    """seat-01 made the class's template from `image`, with the template's passwords, without stack.sh."""
    store = request.images
    assert store is not None
    started = time.monotonic()
    reporter.step(f"{TEMPLATE}: made the template from stacked image {image.digest} (lab {image.lab}, stack.sh took"
                  f" {image.stack_seconds / 60:.0f} min), without stack.sh (--fresh stacks)")
    # The template's local.conf holds the template's passwords, never seat-01's own: its disk becomes every
    # seat's base. (Each seat made from it is then searched for every other seat's secrets, seat-01's
    # included: a search of the template itself would only repeat that, minutes under emulation.)
    text = lab_dir.local_conf(TEMPLATE).read_text(encoding="utf-8")
    for own, stand_in in zip(lab_dir.secrets().seats[TEMPLATE].devstack().values(), template.values(), strict=True):
        text = text.replace(own, stand_in)
    status = on_image(lab, lab_dir, hypervisor, request, image, TEMPLATE)
    result = make_own(lab, lab_dir, status, reporter, ssh, store, image, started, Becoming(template, text))
    if result.ok:
        store.used(image)
    return result


def keep_template(lab: Lab, lab_dir: LabDir, reporter: Reporter, hypervisor: HypervisorPort, request: StackRequest,
                  key: StackKey, stacked: StackResult, user: str, template: Passwords) -> None:
    """seat-01's stacked disk (shut off, prepared for copies) kept as the image of `key`; a failure is
    said, never the class's."""
    store = request.images
    assert store is not None
    existing = hypervisor.base_named(volume_name(key.digest))
    users = hypervisor.image_users(existing) if existing is not None else []
    if users:  # kept by another lab's up meanwhile, and stood on: never replaced under a machine
        reporter.step(f"{TEMPLATE}: image {key.digest} of this stack is kept already (under {', '.join(users)})")
        return
    try:
        image = save_image(lab, lab_dir, hypervisor, store, key, stacked, user, template)
    except (LabctlError, OSError) as exc:
        reporter.warn(f"{TEMPLATE}: stacked, but its disk was not kept as an image:"
                      f" {exc.message if isinstance(exc, LabctlError) else exc}")
        return
    reporter.step(f"{TEMPLATE}: its stacked disk kept as image {key.digest} ({image.size / 1024**3:.1f} GiB): this"
                  " class held again starts from it (labctl images)")
