"""Debian 13 (trixie) for real: its box built here from Debian's packages, booted, and the real
DevStack master (keystone-only, from ../shared/mirrors) stacked in it, then a token from its Keystone
with `labctl creds`' password, a reset, and a destroy that leaves nothing (as for Debian 12 in
test_devstack_real.py). Marked `devstack_trixie` (and `vm`), not in the default run: about as long
as Debian 12's real stack here (30 to 60 minutes)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_devstack_real import destroys_leaving_nothing, keystone_lab, stacks_keystone_and_resets

from conftest import Result

pytestmark = [pytest.mark.vm, pytest.mark.devstack_trixie]


@pytest.fixture
def trixie_lab(vm_env: Path, isolated_home: Path) -> Iterator[tuple[str, Path]]:
    yield from keystone_lab(isolated_home, "debian:13")


def test_trixie_stacks_keystone(run: Callable[..., Result], trixie_lab: tuple[str, Path]) -> None:
    name, folder = trixie_lab
    boxes = {r["distro"]: r for r in json.loads(run("boxes", "--json").out)["releases"]}
    assert boxes["debian:13"]["local_build"] is True
    stacks_keystone_and_resets(run, name, folder)
    destroys_leaving_nothing(run, name)
