"""A cloned class whose seats keep seat-01's name and address, each on a network of its own
(classroom.seat_networks: how a compute DevStack is cloned, labctl.classroom.networks), on real VMs
with the stand-in DevStack: every seat is the template's name and lab address with identity and
secrets of its own, each trainee's port leads to their own seat (by its management address), a seat
sees nothing on its lab network, reset keeps it reachable, a walk-in's seat is made from the class's
base without stack.sh, and destroy leaves no network behind.

Marked `clone_vm` with tests/test_clone_vm.py (out of the default run): about 15 minutes here.
    .venv/bin/python -m pytest -m clone_vm tests/test_seat_networks_vm.py
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from standin_devstack import make_repo
from test_clone_vm import probe

from conftest import TEST_APT_PORT, Result, leave_nothing, libvirt_names
from labctl.isolation import SEAL

pytestmark = [pytest.mark.vm, pytest.mark.clone_vm]
SEATS = ("seat-01", "seat-02", "seat-03")
WALK_IN = "seat-04"


@pytest.fixture
def class_name(vm_env: Path) -> Iterator[str]:
    name = f"snw-{uuid.uuid4().hex[:6]}"
    yield name
    leave_nothing(name, [*SEATS, WALK_IN])


def machine_behind(port: int, password: str) -> str | None:
    """The machine-id of the seat a trainee's password login through this host's port reaches (every
    seat has the same host name here); None when refused."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - a throwaway lab VM
    try:
        client.connect("127.0.0.1", port=port, username="stack", password=password, look_for_keys=False,
                       allow_agent=False, timeout=30)
        _, out, _ = client.exec_command("cat /etc/machine-id", timeout=30)
        return str(out.read().decode().strip())
    except paramiko.AuthenticationException:
        return None
    finally:
        client.close()


def test_seats_keep_the_templates_name_and_address_on_networks_of_their_own(
        run: Callable[..., Result], isolated_home: Path, labctl_home: Path, class_name: str) -> None:
    from labctl.adapters import hypervisor
    from labctl.state import LabHome

    repo = make_repo(isolated_home / "devstack")
    base = 23000 + (os.getpid() % 400) * 10
    # DevStack's default services (Nova, Neutron, OVN among them): plan puts the seats on networks of their own.
    (isolated_home / "lab.yaml").write_text(
        f"name: {class_name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\n"
        f"classroom:\n  seats: 3\n  ssh_port: {base}\n  web_port: {base + 5000}\n"
        f"devstack:\n  repo: {repo}\n  localrc: {{STANDIN_PHASE_SECONDS: 0.1}}\n")
    up = run("up", "--json")
    assert up.code == 0, up.err
    assert "every seat keeps seat-01's name" in up.err
    results = json.loads(up.out)["devstack"]["machines"]
    assert {n: r["status"] for n, r in results.items()} == dict.fromkeys(SEATS, "ok")
    assert "stacking seat-01 once; 2 more seats will be made from its disk" in up.err

    machines = {m["name"]: m for m in json.loads(run("status", "--json").out)["machines"]}
    lab_ip = machines["seat-01"]["ip"]
    assert [machines[s]["devstack"] for s in SEATS] == ["stacked"] * 3
    assert {machines[s]["ip"] for s in SEATS} == {lab_ip}
    managed = {s: machines[s]["ssh_address"] for s in SEATS}
    assert len(set(managed.values())) == 3 and lab_ip not in managed.values()
    facts = json.loads(run("exec", *SEATS, "--json", "--", "hostname; cat /etc/machine-id;"
                           " ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2;"
                           " ip -4 -o addr show | awk '{print $4}' | cut -d/ -f1 | tr '\\n' ' '; echo;"
                           " sudo grep -h ^HOST_IP= /opt/stack/devstack/local.conf;"
                           " test -e /opt/stack/standin-stacked && echo stacked-files-here").out)["machines"]
    seen = {s: facts[s]["stdout"].splitlines() for s in SEATS}
    for seat in SEATS:
        name, _machine_id, _host_key, addresses, host_ip, stacked = seen[seat]
        assert name == class_name  # the template's name, on every seat
        assert lab_ip in addresses.split() and managed[seat] in addresses.split()
        assert host_ip == f"HOST_IP={lab_ip}"
        assert stacked == "stacked-files-here"
    for field in (1, 2):  # machine-id, SSH host key: each seat its own
        assert len({seen[s][field] for s in SEATS}) == 3

    # libvirt: seat-01 on the lab's network (the host's git daemon is there), every other seat alone
    # on a network of its own with no address of the host and no forwarding.
    conn = hypervisor.connect()
    try:
        for seat in SEATS:
            xml = conn.lookupByName(f"labctl-{class_name}-{seat}").XMLDesc()
            wanted = f"labctl-{class_name}" if seat == "seat-01" else f"labctl-{class_name}_{seat}"
            assert f"<source network='{wanted}'" in xml, (seat, xml)
            if seat != "seat-01":
                net = conn.networkLookupByName(wanted).XMLDesc()
                assert "<ip" not in net and "<forward" not in net, net
                assert f"<filterref filter='{SEAL}'/>" in xml, xml  # its card there carries nothing
    finally:
        conn.close()

    # Each trainee's port leads to their own seat, again and again; another seat's password is refused.
    logins = {s: own.login for s, own in LabHome(labctl_home).lab(class_name).secrets().seats.items()}
    ids = {s: seen[s][1] for s in SEATS}
    for number, seat in enumerate(SEATS, start=1):
        assert [machine_behind(base + number, logins[seat]) for _ in range(3)] == [ids[seat]] * 3, seat
    assert machine_behind(base + 2, logins["seat-01"]) is None
    ports = json.loads(run("access", "status", "--json").out)["seats"]
    assert {p["seat"]: p["seat_address"] for p in ports} == managed

    # From seat-02, as root: nothing answers on its lab network (the host has no address there, and
    # seat-01's address is its own), seat-01's management address is fenced off, and the host's caches
    # still serve it.
    lab_host = lab_ip.rsplit(".", 1)[0] + ".1"
    allowed = f"192.168.121.1:{TEST_APT_PORT}"
    seen_from_2 = probe(run, "seat-02", [f"{lab_host}:9418", f"{lab_host}:22", f"{managed['seat-01']}:22", allowed])
    assert seen_from_2 == {f"{lab_host}:9418": "shut", f"{lab_host}:22": "shut", f"{managed['seat-01']}:22": "shut",
                           allowed: "open"}, seen_from_2
    # No one answers there, not even the host's ARP for its address on seat-01's network (sealed card).
    neighbours = run("exec", "seat-02", "--", f"ping -c 2 -W 2 {lab_host} >/dev/null; ip neigh show {lab_host}")
    assert "lladdr" not in neighbours.out, neighbours.out

    # A seat of one's own after a reset, through the same port.
    assert run("exec", "seat-02", "--", "touch /tmp/trainee-was-here").code == 0
    reset = run("reset", "seat-02", "-y")
    assert reset.code == 0, reset.err
    assert run("exec", "seat-02", "--", "test ! -e /tmp/trainee-was-here").code == 0
    assert machine_behind(base + 2, logins["seat-02"]) == ids["seat-02"]

    # A walk-in: one seat more, made from the class's base without stack.sh (as a failed copy would be).
    (isolated_home / "lab.yaml").write_text(
        (isolated_home / "lab.yaml").read_text().replace("seats: 3", "seats: 4"))
    more = run("up", "--json")
    assert more.code == 0, more.err
    assert "making seat-04 from seat-01's stacked disk (the class's base), without stack.sh" in more.err
    assert "seat-04: stack.sh" not in more.err
    assert json.loads(more.out)["devstack"]["machines"]["seat-04"]["status"] == "ok"
    four = json.loads(run("exec", "seat-04", "--json", "--", "hostname; cat /etc/machine-id;"
                          " test -e /opt/stack/standin-stacked && echo stacked-files-here").out)["machines"]["seat-04"]
    name, machine_id, stacked = four["stdout"].split()
    assert name == class_name and stacked == "stacked-files-here"
    assert machine_id not in ids.values()
    logins = {s: own.login for s, own in LabHome(labctl_home).lab(class_name).secrets().seats.items()}
    assert machine_behind(base + 4, logins["seat-04"]) == machine_id
    assert machine_behind(base + 4, logins["seat-02"]) is None
    snaps = json.loads(run("snapshot", "list", "--json").out)["machines"]
    assert [s["name"] for s in snaps["seat-04"]] == ["stacked"]

    destroyed = run("destroy", "-y")
    assert destroyed.code == 0, destroyed.err
    after = libvirt_names()
    assert not {n for n in after["domains"] | after["networks"] | after["volumes"] if class_name in n}
