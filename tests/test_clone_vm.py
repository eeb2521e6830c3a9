"""A classroom stacked once and cloned, on real VMs (stand-in DevStack; tests/test_devstack_real.py
clones the real one): seat-01 stacks alone as the template, every seat is made from its disk, and each is its own
machine afterwards: name, address, machine-id, SSH host keys, local.conf, trainee's password. The
machines fetched through the host's caches, and destroy leaves nothing, the clones' base included."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from standin_devstack import make_repo

from conftest import TEST_CACHE, Result, libvirt_names

pytestmark = pytest.mark.vm
SEATS = ("seat-01", "seat-02", "seat-03")


@pytest.fixture
def class_name(vm_env: Path) -> Iterator[str]:
    name = f"cln-{uuid.uuid4().hex[:6]}"
    yield name
    from labctl import hypervisor

    conn = hypervisor.connect()
    hypervisor.remove_leftovers(conn, [f"labctl-{name}-{s}" for s in SEATS], f"labctl-{name}")


def password_login(address: str, password: str) -> bool:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - a throwaway lab VM
    try:
        client.connect(address, username="stack", password=password, look_for_keys=False, allow_agent=False,
                       timeout=30)
        return True
    except paramiko.AuthenticationException:
        return False
    finally:
        client.close()


def test_stack_once_and_clone(run: Callable[..., Result], isolated_home: Path, labctl_home: Path,
                              class_name: str) -> None:
    before = libvirt_names()
    repo = make_repo(isolated_home / "devstack")
    base = 21000 + (os.getpid() % 400) * 10
    (isolated_home / "lab.yaml").write_text(
        f"name: {class_name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\n"
        f"classroom:\n  seats: 3\n  ssh_port: {base}\n  web_port: {base + 5000}\n"
        f"devstack:\n  repo: {repo}\n  localrc: {{STANDIN_PHASE_SECONDS: 0.1}}\n")

    up = run("up", "--json")
    assert up.code == 0, up.err
    results = json.loads(up.out)["devstack"]["machines"]
    assert {n: r["status"] for n, r in results.items()} == dict.fromkeys(SEATS, "ok")
    assert "stacking seat-01 once; 2 more seats will be made from its disk" in up.err
    assert "seat-02: stack.sh" not in up.err  # stack.sh ran on seat-01 alone
    assert "the machines fetch packages through the host's caches" in up.err

    machines = {m["name"]: m for m in json.loads(run("status", "--json").out)["machines"]}
    assert [machines[s]["devstack"] for s in SEATS] == ["stacked"] * 3
    facts = json.loads(run("exec", *SEATS, "--json", "--", "hostname; cat /etc/machine-id;"
                           " ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2;"
                           " ip -4 -o addr show | awk '{print $4}' | cut -d/ -f1 | tr '\\n' ' '; echo;"
                           " sudo grep -h ^HOST_IP= /opt/stack/devstack/local.conf;"
                           " test -e /opt/stack/standin-stacked && echo stacked-files-here").out)
    seen = {s: facts[s]["stdout"].splitlines() for s in SEATS}
    for seat in SEATS:
        name, _machine_id, _host_key, addresses, host_ip, stacked = seen[seat]
        assert name == seat
        assert machines[seat]["ip"] in addresses.split()
        assert host_ip == f"HOST_IP={machines[seat]['ip']}"
        assert stacked == "stacked-files-here"  # seat-01's stack.sh's work, in every clone
    for field in (1, 2):  # machine-id, SSH host key: each seat its own
        assert len({seen[s][field] for s in SEATS}) == 3
    assert machines["seat-01"]["ip"] not in seen["seat-02"][3].split()

    # Each seat's trainee password opens that seat only (password logins as stack, on its address).
    from labctl.state import LabHome

    logins = {s: own["login"] for s, own in LabHome(labctl_home).lab(class_name).read_seat_passwords().items()}
    assert password_login(machines["seat-02"]["ip"], logins["seat-02"])
    assert not password_login(machines["seat-02"]["ip"], logins["seat-01"])
    assert password_login(machines["seat-03"]["ip"], logins["seat-03"])

    snaps = json.loads(run("snapshot", "list", "--json").out)
    assert {m: [s["name"] for s in v] for m, v in snaps.items()} == {s: ["stacked"] for s in SEATS}
    volumes = libvirt_names()["volumes"]
    assert f"labctl-{class_name}-seat-01.base.img" in volumes

    # The guests fetch through the host's caches.
    got = run("exec", "seat-02", "--", "sudo apt-get update -q && sudo apt-get install -q -y --download-only sl")
    assert got.code == 0, got.out + got.err
    cache = {c["name"]: c for c in json.loads(run("cache", "--json").out)["caches"]}
    assert cache["apt"]["running"] and cache["apt"]["requests"] > 0

    # The outside cut (the caches offline, the machine's proxy routed nowhere): what the cache holds
    # still installs; what it does not hold is refused, never fetched.
    assert run("cache", "start", "--offline").code == 0
    try:
        cut = ("export http_proxy=http://192.0.2.1:9 https_proxy=http://192.0.2.1:9;"
               " sudo rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb &&"
               " sudo -E apt-get update -q && sudo -E apt-get install -q -y --download-only sl")
        offline = run("exec", "seat-03", "--", cut)
        assert offline.code == 0, offline.out + offline.err
        missing = run("exec", "seat-03", "--", "sudo apt-get install -q -y --download-only cowsay")
        assert missing.code != 0
    finally:
        assert run("cache", "start").code == 0

    destroyed = run("destroy", "-y")
    assert destroyed.code == 0, destroyed.err
    after = libvirt_names()
    assert not {n for n in after["domains"] | after["networks"] | after["volumes"] if class_name in n}
    # The caches outlive the lab, for the next one.
    assert all(c["running"] for c in json.loads(run("cache", "--json").out)["caches"])
    assert all("_vagrant_box_image_" in v for v in after["volumes"] - before["volumes"])
    assert TEST_CACHE.exists()
