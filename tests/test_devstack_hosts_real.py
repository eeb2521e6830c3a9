"""The real DevStack in a classroom across two hosts that are really two (issue 23): two keystone-only
seats from ../shared/mirrors, seat-01 on a second host (a libvirtd in namespaces of its own, reached
only through its sshd: tests/second_host.py), seat-02 on this machine. stack.sh runs once, on the
second host, through the relays to this machine's caches and mirrors; its base is sent here and
seat-02 is made from it. Each seat's Keystone issues a token with its own password through its
forwarded port, and refuses the other's; destroy leaves both hosts as they were.

Marked `devstack_hosts` (and `vm`), out of the default run (CI keeps one real stack):
pytest -m devstack_hosts. About as long as the real class test (an hour and a half here).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ports import free_base
from second_host import SecondHost
from test_devstack_real import HOST_CAS, MIRRORS, token
from test_hosts_class_vm import names_on

from conftest import Result, leave_nothing, libvirt_names

pytestmark = [pytest.mark.vm, pytest.mark.devstack_hosts]
SEATS = ("seat-01", "seat-02")
SEAT_MB = 8192


@pytest.fixture
def second(vm_env: Path, tmp_path: Path) -> Iterator[SecondHost]:
    host = SecondHost(tmp_path / "second", index=52).start()
    yield host
    host.stop()


@pytest.fixture
def lab_name(vm_env: Path) -> Iterator[str]:
    if not (MIRRORS / "openstack" / "devstack.git").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{MIRRORS} is missing: CI has ../shared/ beside the clone")
        pytest.skip(f"{MIRRORS} is not there")
    name = f"rh-{uuid.uuid4().hex[:6]}"
    yield name
    leave_nothing(name, list(SEATS))


def test_real_keystone_seats_on_two_hosts(run: Callable[..., Result], isolated_home: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, second: SecondHost,
                                          lab_name: str) -> None:
    before_here, before_there = libvirt_names(), names_on(second)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("hosts:\n" + second.inventory_line() + "  - {name: here, uri: 'qemu:///system'}\n")
    monkeypatch.setenv("LABCTL_HOSTS", str(inventory))
    free = {h["name"]: h["memory_free_mb"] for h in json.loads(run("hosts", "--json").out)["hosts"]}
    reserve = {name: max(0, mb - SEAT_MB - 1024) for name, mb in free.items()}  # room for one seat each
    inventory.write_text("hosts:\n" + second.inventory_line().replace("}", f", reserve: {reserve['second']}M}}")
                         + f"  - {{name: here, uri: 'qemu:///system', reserve: {reserve['here']}M}}\n")
    base = free_base([1, 2, 5001, 5002], top=31000)
    cas = sorted(HOST_CAS.glob("*.crt")) if HOST_CAS.is_dir() else []
    lines = [f"name: {lab_name}", "defaults: {distro: debian:12, memory: 8G, cpus: 2, disk: 20G}",
             f"classroom: {{seats: 2, listen: 127.0.0.1, ssh_port: {base}, web_port: {base + 5000}}}"]
    if cas:
        lines += ["ca_certificates:", *(f"  - {p}" for p in cas)]
    lines += ["caches: true", "devstack:", f"  git_base: {MIRRORS}", "  localrc: {ENABLED_SERVICES: 'key,mysql'}"]
    (isolated_home / "lab.yaml").write_text("\n".join(lines) + "\n")

    up = run("up", "--json")
    (tmp_path / "up.err").write_text(up.err)
    assert up.code == 0, up.err[-5000:]
    report = json.loads(up.out)
    assert {m["name"]: m["host"] for m in report["machines"]} == {"seat-01": "second", "seat-02": None}
    assert {n: r["status"] for n, r in report["devstack"]["machines"].items()} == dict.fromkeys(SEATS, "ok")
    assert "stacking seat-01 once; 1 more seats will be made from its disk" in up.err
    assert "this machine has the base:" in up.err
    creds = json.loads(run("creds", "--json").out)["machines"]
    for number, seat in enumerate(SEATS, start=1):
        other = creds[SEATS[number % 2]]["password"]
        through = f"http://127.0.0.1:{base + 5000 + number}/identity"
        assert token(through, "admin", creds[seat]["password"]) == 201, seat
        assert token(through, "admin", other) == 401, seat

    assert run("destroy", "-y").code == 0
    for before, now in ((before_here, libvirt_names()), (before_there, names_on(second))):
        assert not {n for n in now["domains"] | now["networks"] | now["volumes"] if lab_name in n}
        assert now["domains"] == before["domains"]
        assert all("_vagrant_box_image_" in v for v in now["volumes"] - before["volumes"])
