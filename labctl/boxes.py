"""Use-case: the boxes a lab's machines boot from, made available to Vagrant: fetched from its
registry, or built here from Debian's packages where the catalogue says so (labctl.boxbuild)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LabctlError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from labctl.boxbuild import BoxSpec
    from labctl.catalog import Catalog, Release
    from labctl.context import Context
    from labctl.devstack_python import PythonSet
    from labctl.model import Lab
    from labctl.protocols import Reporter, VagrantPort


class BoxUnavailable(LabctlError):
    """A machine's box is neither present nor obtainable."""



def cache_driver(ctx: Context) -> VagrantPort:
    """Vagrant run from labctl's cache folder: for boxes, and for labs not written yet."""
    ctx.cache.mkdir(parents=True, exist_ok=True)
    return ctx.vagrant(ctx.cache, ctx.cache / "logs" / "vagrant.log")


@contextmanager
def boxes_lock(cache: Path, reporter: Reporter) -> Iterator[None]:
    """One labctl at a time makes boxes from a cache folder. Two `up`s at once each built the box and
    added two versions of it to Vagrant: a lab then took the newer, and the stacked image another lab
    had kept of the older was another stack (seen in a test run)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "boxes.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            reporter.step("waiting for another labctl making boxes")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # the lock goes with the file's closing


def ensure_boxes(lab: Lab, ctx: Context, driver: VagrantPort, reporter: Reporter, mirror: str,
                 local_confs: Mapping[str, str] | None = None) -> dict[str, str]:
    """Make every machine's box available to Vagrant (one labctl at a time). Returns the swaps made:
    catalogue box -> locally built box, where the catalogue's cannot be fetched and labctl can build it,
    or where devstack.preinstall asks for a DevStack-ready box: what stack.sh would install with the
    machines' `local_confs`, with apt (labctl.devstack_packages) and with pip (labctl.devstack_python)."""
    from labctl.devstack_packages import box_packages
    from labctl.devstack_python import python_sets

    packages = box_packages(lab, local_confs) if local_confs else {}
    python = python_sets(lab, local_confs) if local_confs else {}
    with boxes_lock(ctx.cache, reporter):
        return _ensure_boxes(lab, ctx, driver, reporter, mirror, packages, python)


def _ensure_boxes(lab: Lab, ctx: Context, driver: VagrantPort, reporter: Reporter, mirror: str,
                  packages: Mapping[str, tuple[str, ...]], python: Mapping[str, PythonSet]) -> dict[str, str]:
    from labctl.boxbuild import local_box_name
    from labctl.proc import CommandFailed

    present = driver.box_names()
    chosen: dict[str, str] = {}
    for m in lab.machines:
        release = m.release
        wanted = packages.get(m.box)
        if m.box in chosen:
            continue
        if wanted and release.local_build:
            chosen[m.box] = _built_box(release, wanted, ctx, driver, reporter, mirror, present, python.get(m.box))
            continue
        if wanted:
            reporter.warn(f"devstack.preinstall: labctl builds DevStack-ready boxes of Debian only; {m.name} boots"
                          f" {m.box} and stack.sh installs its packages itself")
        if m.box in present:
            continue
        local = local_box_name(release) if release.local_build and m.box == release.box else None
        if local and local in present:
            reporter.step(f"using the locally built box {local} for {release.ref}")
            chosen[m.box] = local
            continue
        try:
            reporter.step(f"fetching box {m.box}")
            driver.box_add(m.box, m.box)
            present.add(m.box)
            continue
        except CommandFailed as exc:
            if not local:
                raise BoxUnavailable(f"box {m.box} is not on this host and cannot be fetched ({exc.message})",
                                     hint="check the network to Vagrant's box registry, or set box: in"
                                          " lab.yaml to a box you have (vagrant box list)") from None
            reporter.warn(f"box {m.box} cannot be fetched ({exc.tail.splitlines()[-1] if exc.tail else exc.code});"
                          f" using {local}, built from Debian's packages")
        chosen[m.box] = _built_box(release, (), ctx, driver, reporter, mirror, present)
    return chosen


def _built_box(release: Release, packages: tuple[str, ...], ctx: Context, driver: VagrantPort, reporter: Reporter,
               mirror: str, present: set[str], python: PythonSet | None = None) -> str:
    """A box labctl builds (once: the file is cached), added to Vagrant (once: then it is used as it is)."""
    from labctl.boxbuild import box_spec, build_box

    spec = box_spec(release, ctx.cache, packages, python)
    held = f"{len(packages)} packages" + (" and the Python" if python else "")
    if spec.name in present:
        reporter.step(f"using the DevStack-ready box {spec.name} ({held} stack.sh would install)"
                      if packages else f"using the locally built box {spec.name}")
        return spec.name
    if not spec.file.is_file():
        what = (f"with the {held} stack.sh would install (minutes, once)" if packages
                else "(about a minute)")
        reporter.step(f"building box {spec.name} {what}; cached in {spec.file}")
        build_box(spec, mirror=mirror, step=reporter.step, log=ctx.cache / "logs" / "box-build.log")
    reporter.step(f"adding box {spec.name} to Vagrant")
    add_built_box(driver, spec)
    present.add(spec.name)
    return spec.name


def build_box_command(distro: str, ctx: Context, driver: VagrantPort, reporter: Reporter, mirror: str,
                      catalog: Catalog) -> tuple[str, Path]:
    """`labctl box build DISTRO`: build (always anew) and add the box to Vagrant."""
    from labctl.boxbuild import box_spec, build_box

    spec = box_spec(catalog.resolve(distro), ctx.cache)
    build_box(spec, mirror=mirror, step=reporter.step, log=ctx.cache / "logs" / "box-build.log")
    reporter.step(f"adding box {spec.name} to Vagrant")
    add_built_box(driver, spec)
    return spec.name, spec.file


def add_built_box(driver: VagrantPort, spec: BoxSpec) -> None:
    """Add a built box with a version (from its file's age): vagrant-libvirt names the box's base
    volume after it, so the same file is uploaded to libvirt once, not once per `box add`."""
    import json

    version = f"{spec.release.version.split('.')[0]}.0.{int(spec.file.stat().st_mtime)}"
    metadata = spec.file.with_suffix(".json")
    metadata.write_text(json.dumps({"name": spec.name, "versions": [{"version": version, "providers": [
        {"name": "libvirt", "url": spec.file.resolve().as_uri()}]}]}))
    driver.box_add(spec.name, str(metadata), force=True)


