"""The real DevStack, end to end: `labctl up` of a two-seat classroom that names ../shared/mirrors/
stacks the real DevStack master (Keystone, MySQL and RabbitMQ) through the host's package caches, in
a real Debian 12 VM (software emulation here: 40 minutes or more), once: seat-01 as the template,
then seat-02 made from its disk. Each seat's Keystone and RabbitMQ take its own passwords alone; no
value of one seat's secrets (its Erlang cookie included) is anywhere on the other's disk (every
qcow2 layer under it, free blocks included);
a reset of the clone brings back its stacked state.

Marked `devstack_class` (and `vm`), and left out of the default run: with the clone, its disk
searches and reset it outgrew CI's time (tests/test_devstack_real.py stacks one machine there). Run
it with `pytest -m devstack_class`. The stand-in DevStack of the other tests cannot tell whether
labctl gets what the real one needs; this test can.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ports import free_base
from test_devstack_real import HOST_CAS, MIRRORS, fetched_through_caches, token

from conftest import Result, leave_nothing, libvirt_names

pytestmark = [pytest.mark.vm, pytest.mark.devstack_class]

SEATS = ("seat-01", "seat-02")


@pytest.fixture
def real_lab(vm_env: Path, isolated_home: Path) -> Iterator[tuple[str, Path, int]]:
    if not (MIRRORS / "openstack" / "devstack.git").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{MIRRORS} is missing: CI has ../shared/ beside the clone")
        pytest.skip(f"{MIRRORS} is not there")
    name = f"real-{uuid.uuid4().hex[:6]}"
    # Ports no one holds: a forwarder left by a killed run of another test would answer in our place.
    base = free_base([1, 2, 5001, 5002], top=31000)
    cas = sorted(HOST_CAS.glob("*.crt")) if HOST_CAS.is_dir() else []
    # A classroom of two: seat-01 stacks once (as the template), seat-02 is made from its disk.
    lines = [f"name: {name}", "defaults: {distro: debian:12, memory: 8G, cpus: 2, disk: 20G}",
             f"classroom: {{seats: 2, listen: 127.0.0.1, ssh_port: {base}, web_port: {base + 5000}}}"]
    if cas:  # a TLS-intercepting proxy between the VM and PyPI: its CA must be trusted inside
        lines += ["ca_certificates:", *(f"  - {p}" for p in cas)]
    # Packages and PyPI files through the host's caches (labctl.cache): DevStack's own pip and apt use them.
    lines += ["caches: true", "devstack:", f"  git_base: {MIRRORS}",
              "  localrc: {ENABLED_SERVICES: 'key,mysql,rabbit'}"]
    (isolated_home / "lab.yaml").write_text("\n".join(lines) + "\n")
    yield name, isolated_home, base
    leave_nothing(name, list(SEATS))


def disk_files(domain: str) -> list[Path]:
    """A domain's disk as files on this host: its overlay and every image under it."""
    from labctl.adapters import hypervisor

    conn = hypervisor.connect()
    try:
        xml = conn.lookupByName(domain).XMLDesc()
    finally:
        conn.close()
    top = xml.split("<source file='", 1)[1].split("'", 1)[0]
    chain = json.loads(subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", top],
                                      capture_output=True, text=True, check=True).stdout)
    return [Path(layer["filename"]) for layer in chain]


def values_in(files: list[Path], values: list[str]) -> dict[str, set[str]]:
    """Which of the values each file holds, byte for byte (free blocks included: a qcow2 layer keeps
    whatever was ever written to it), each file read once. The box's own layer is compressed and
    older than any secret."""
    found: dict[str, set[str]] = {}
    for f in dict.fromkeys(str(f) for f in files if "_vagrant_box_image_" not in f.name):
        out = subprocess.run(["grep", "-aoF", *(x for v in values for x in ("-e", v)), f],
                             capture_output=True, text=True, errors="replace", check=False)
        assert out.returncode in (0, 1), out.stderr
        found[f] = set(out.stdout.split()) & set(values)
    return found


def listeners(port: int) -> set[int]:
    """The processes listening on a TCP port of this host."""
    import psutil

    return {c.pid for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}


def seen_from_the_host(run: Callable[..., Result], name: str, direct: str, password: str,
                       through_url: str, through: list[int]) -> str:
    """What tells a wrong forward from a wrong Keystone, should the forwarded port refuse seat-01's own
    password again (twice it did: Keystone's lockout after the test's own wrong passwords, see below):
    who listens on the port, the host's neighbour entries, each seat's cards, the request asked straight."""
    import psutil

    neigh = subprocess.run(["ip", "neigh", "show"], capture_output=True, text=True, check=False).stdout
    port = int(through_url.rsplit(":", 1)[1].split("/")[0])
    holders = [(pid, " ".join(psutil.Process(pid).cmdline())) for pid in listeners(port)]
    cards = run("exec", "--all", "--lab", name, "--", "ip -o -4 addr show; ip -o link show").out
    straight = [token(direct, "admin", password) for _ in range(5)]
    return (f"through the forwarder: {through}; straight to {direct}: {straight}\n"
            f"listening on port {port}: {holders}\n"
            f"host neighbours:\n{neigh}\nseats' cards:\n{cards}")


def test_real_keystone_only_devstack_classroom(run: Callable[..., Result], real_lab: tuple[str, Path, int],
                                               labctl_home: Path) -> None:
    name, folder, base = real_lab
    # Two and a half hours at most: seat-01 alone stacked in 75 min here on cold caches beside other work.
    progress = folder / "up.progress"
    with progress.open("w") as err:
        up = subprocess.run([sys.executable, "-m", "labctl", "up", "--json"], cwd=folder, stdout=subprocess.PIPE,
                            stderr=err, text=True, timeout=9000, stdin=subprocess.DEVNULL)
    shown = progress.read_text()
    assert up.returncode == 0, shown[-5000:]
    report = json.loads(up.stdout)
    results = report["devstack"]["machines"]
    assert {s: results[s]["status"] for s in SEATS} == dict.fromkeys(SEATS, "ok"), shown[-3000:]
    ips = {m["name"]: m["ip"] for m in report["machines"]}
    first = results["seat-01"]
    # Only what DevStack says it serves: Keystone, and no dashboard (no Horizon in this lab).
    assert first["keystone"] == f"http://{ips['seat-01']}/identity/" and first["dashboard"] is None
    phases = [p["phase"] for p in first["phases"]]
    assert phases[-5:] == ["Installing package prerequisites", "Starting RabbitMQ",
                           "Installing OpenStack project source", "Configuring and starting MySQL", "Starting Keystone"]
    # Live progress: labctl's steps and DevStack's phases, never apt's or pip's lines.
    assert "seat-01: Starting Keystone" in shown and "seat-02: stack.sh" not in shown
    assert "stacking seat-01 once; 1 more seats will be made from its disk" in shown
    assert "Setting up " not in shown and "Collecting " not in shown
    assert "serving them to the machines at git://" in shown
    assert "classroom access for lab" not in shown  # the forwarder listens on the seats' ports (no warning)
    fetched_through_caches(run, name, "seat-01")

    # Each seat's Keystone answers its own admin password alone: not the other seat's, not the template's.
    from labctl.state import LabHome

    lab_dir = LabHome(labctl_home).lab(name)
    seats = lab_dir.secrets().seats
    from labctl.classroom.access import forwarder_pid

    forwarder = forwarder_pid(lab_dir)  # the seats' ports are held by this lab's forwarder, no other process
    assert forwarder and [listeners(base + n) for n in (1, 2, 5001, 5002)] == [{forwarder}] * 4
    template = json.loads((lab_dir.path / "template-secrets.json").read_text())
    creds = json.loads(run("creds", "--json", "--lab", name).out)
    urls = {s: creds["machines"][s]["auth_url"] for s in SEATS}
    assert urls == {s: f"http://{ips[s]}/identity" for s in SEATS}
    # Every right password first, then the wrong ones: DevStack's Keystone locks an account for 10 s
    # after 2 failed logins (lib/keystone: KEYSTONE_LOCKOUT_FAILURE_ATTEMPTS=2, KEYSTONE_LOCKOUT_DURATION=10,
    # security_compliance on by default), and two runs of this test failed on exactly that: seat-01's own
    # password refused (401) straight and through the forwarder, just after the two wrong ones.
    for seat in SEATS:
        assert creds["machines"][seat]["password"] == seats[seat].admin
        assert token(urls[seat], "admin", seats[seat].admin) == 201
    # Through the classroom's forwarded web port, as a trainee reaches seat-01.
    forwarded = f"http://127.0.0.1:{base + 5001}/identity"
    through = [token(forwarded, "admin", seats["seat-01"].admin) for _ in range(5)]
    assert through == [201] * 5, seen_from_the_host(run, name, urls["seat-01"], seats["seat-01"].admin, forwarded,
                                                         through)
    for seat, other in (("seat-01", "seat-02"), ("seat-02", "seat-01")):
        assert token(urls[seat], "admin", seats[other].admin) == 401
        assert token(urls[seat], "admin", template["admin"]) == 401
    assert token(forwarded, "admin", seats["seat-02"].admin) == 401
    # No value of one seat's secrets anywhere on the other's disk: every layer under it, byte for byte.
    # Before the checks below type one seat's passwords into the other: `sudo rabbitmqctl authenticate_user
    # stackrabbit PASSWORD` puts PASSWORD in the seat's journal (sudo logs each command line), which is
    # what a run of this test found on seat-02's disk when the search came after them.
    cookies = {s: run("exec", s, "--lab", name, "--", "sudo cat /var/lib/rabbitmq/.erlang.cookie").out.strip()
               for s in SEATS}
    assert len(set(cookies.values())) == 2 and all(len(c) >= 20 for c in cookies.values()), cookies
    disks = {s: disk_files(f"labctl-{name}-{s}") for s in SEATS}
    assert disks["seat-01"][1:] == disks["seat-02"][1:] and len(disks["seat-02"]) >= 2  # one base under both
    secrets = {s: {*seats[s].values(), cookies[s]} for s in SEATS}
    found = values_in(disks["seat-01"] + disks["seat-02"], [v for s in SEATS for v in secrets[s]])
    for seat, other in (("seat-02", "seat-01"), ("seat-01", "seat-02")):
        assert not [f for f in map(str, disks[seat]) if found.get(f, set()) & secrets[other]]
        # The search finds what is there: the seat's own admin password, in its own layer alone.
        assert [f for f in map(str, disks[seat]) if seats[seat].admin in found.get(f, set())] == [
            str(disks[seat][0])]
    # seat-01's MySQL refuses seat-02's database password and the template's (asked on seat-01's own lab
    # address, from seat-01); from seat-02 it cannot even be reached (labctl.isolation); seat-02's own works.
    mysql = "MYSQL_PWD={pw} mysql --connect-timeout=10 -h {ip} -u root -N -e 'select 1'"
    for pw in (seats["seat-02"].database, template["database"]):
        denied = run("exec", "seat-01", "--lab", name, "--", mysql.format(pw=pw, ip=ips["seat-01"]))
        assert denied.code != 0 and "Access denied" in denied.out + denied.err, denied.out + denied.err
    fenced = run("exec", "seat-02", "--lab", name, "--",
                 mysql.format(pw="no-password-needed-to-be-refused", ip=ips["seat-01"]))
    assert fenced.code != 0 and "Can't connect" in fenced.out + fenced.err, fenced.out + fenced.err
    own = run("exec", "seat-02", "--lab", name, "--", mysql.format(pw=seats["seat-02"].database, ip="127.0.0.1"))
    assert own.code == 0, own.out + own.err
    # RabbitMQ: each seat's broker takes its own password alone (seat-02's is a new Erlang node, rabbit@seat-02,
    # whose user the clone made), and each has an Erlang cookie of its own.
    rabbit = "sudo rabbitmqctl -q authenticate_user stackrabbit {pw}"
    for seat, other in (("seat-01", "seat-02"), ("seat-02", "seat-01")):
        ok = run("exec", seat, "--lab", name, "--", rabbit.format(pw=seats[seat].rabbit))
        assert ok.code == 0, ok.out + ok.err
        for pw in (seats[other].rabbit, template["rabbit"]):
            assert run("exec", seat, "--lab", name, "--", rabbit.format(pw=pw)).code != 0

    # The openrc `labctl creds seat-02` prints works inside the seat, with DevStack's own client.
    # A trainee then breaks seat-02's real DevStack; `reset` brings back the `stacked` snapshot labctl
    # took, memory included: MySQL and Keystone run at once, without what was done since.
    rc2 = run("creds", "seat-02", "--lab", name).out.split("# openrc", 1)[1].split("\n", 1)[1]
    assert f"OS_AUTH_URL={urls['seat-02']}" in rc2 and seats["seat-02"].admin in rc2
    inside = run("exec", "seat-02", "--lab", name, "--", rc2 + "openstack token issue -f value -c id")
    assert inside.code == 0 and len(inside.out.strip().splitlines()[-1]) > 20, inside.out + inside.err
    snaps = json.loads(run("snapshot", "list", "--json", "--lab", name).out)["machines"]
    assert {s: [x["name"] for x in snaps[s]] for s in SEATS} == {s: ["stacked"] for s in SEATS}
    made = run("exec", "seat-02", "--lab", name, "--", rc2 + "openstack project create broken-by-trainee")
    assert made.code == 0, made.out + made.err
    reset = run("reset", "seat-02", "--lab", name)
    assert reset.code == 0, reset.out + reset.err
    assert token(urls["seat-02"], "admin", seats["seat-02"].admin) == 201
    gone = run("exec", "seat-02", "--lab", name, "--", rc2 + "openstack project show broken-by-trainee")
    # openstackclient says "No Project found for broken-by-trainee" (its words, not ours).
    assert gone.code == 1 and "no project found" in (gone.out + gone.err).lower(), gone.out + gone.err

    status = {m["name"]: m for m in json.loads(run("status", "--json", "--lab", name).out)["machines"]}
    assert [status[s]["devstack"] for s in SEATS] == ["stacked", "stacked"]
    assert status["seat-01"]["devstack_slowest"] and {
        p["phase"] for p in status["seat-01"]["devstack_slowest"]} <= set(phases)
    log = run("logs", "seat-01", "--lab", name).out
    assert "The password: ********" in log
    assert not [v for s in SEATS for v in (*seats[s].values(),) if v in log]

    assert run("destroy", "-y", "--lab", name).code == 0
    after = libvirt_names()
    assert not [n for n in after["domains"] | after["networks"] if name in n]
