"""A classroom stacked once and cloned, on real VMs (stand-in DevStack; tests/test_devstack_real.py
clones the real one): seat-01 stacks alone as the template, every seat is made from its disk, and each is its own
machine afterwards: name, address, machine-id, SSH host keys, local.conf, trainee's password. The
machines fetched through the host's caches, and destroy leaves nothing, the clones' base included."""

from __future__ import annotations

import json
import os
import shlex
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from standin_devstack import make_repo
from test_cache import HostOnlyServer

from conftest import TEST_APT_PORT, TEST_CACHE, TEST_PYPI_PORT, Result, leave_nothing, libvirt_names

pytestmark = [pytest.mark.vm, pytest.mark.clone_vm]  # out of the default run: about 25 minutes here
SEATS = ("seat-01", "seat-02", "seat-03")


@pytest.fixture
def class_name(vm_env: Path) -> Iterator[str]:
    name = f"cln-{uuid.uuid4().hex[:6]}"
    yield name
    leave_nothing(name, list(SEATS))


def password_login(address: str, password: str, port: int = 22) -> bool:
    return seat_behind(address, password, port) is not None


def seat_behind(address: str, password: str, port: int = 22) -> str | None:
    """The hostname of the machine a trainee's password login reaches there; None when refused."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - a throwaway lab VM
    try:
        client.connect(address, port=port, username="stack", password=password, look_for_keys=False,
                       allow_agent=False, timeout=30)
        _, out, _ = client.exec_command("hostname", timeout=30)
        return str(out.read().decode().strip())
    except paramiko.AuthenticationException:
        return None
    finally:
        client.close()


# Run as root in a seat: each target host:port "open" or "shut", all at once (4 s to connect).
PROBE = """probe() { if timeout 4 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; then echo "open $1:$2"; \
else echo "shut $1:$2"; fi; }
for t in "$@"; do probe "${t%:*}" "${t##*:}" & done; wait"""
# From a source address of another seat's: "sent" if a connection got through, "dropped" if not.
SPOOF = """import socket, sys
s = socket.socket(); s.settimeout(4)
try:
    s.bind((sys.argv[1], 0)); s.connect((sys.argv[2], int(sys.argv[3]))); print("sent")
except OSError:
    print("dropped")"""


# Run as root in a seat: every TCP port of each address given, 2000 at a time, 1.5 s each; then the
# last argument (host:port, the control) alone, given 20 s, by the same code. Prints the open ones.
SCAN = """import asyncio, sys
targets = [(h, p) for h in sys.argv[1:-1] for p in range(1, 65536)]
control = sys.argv[-1].rpartition(":")
found = []
async def knock(host, port, wait):
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait)
        found.append(f"{host}:{port}")
        writer.close()
    except (OSError, asyncio.TimeoutError):
        pass
async def worker():
    while targets:
        await knock(*targets.pop(), 1.5)
async def main():
    await asyncio.gather(*(worker() for _ in range(2000)))
    await knock(control[0], int(control[2]), 20)
asyncio.run(main())
print("scanned", len(found), *sorted(found))"""


# Run as root in a seat: what the host's caches answer it (an HTTP status, 0 for no answer at all).
ASK_CACHES = """import json, sys, urllib.error, urllib.request
apt, pypi, loopback_port = sys.argv[1:4]
def call(url, method="GET", body=None, proxy=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy} if proxy else {}))
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0
print("devpi-root-login", call(f"http://{pypi}/+login", "POST", {"user": "root", "password": ""}))
print("devpi-new-user", call(f"http://{pypi}/mallory", "PUT", {"password": "x"}))
print("devpi-repoint", call(f"http://{pypi}/root/pypi", "PATCH", ["mirror_url=http://192.0.2.1/simple/"]))
print("apt-maintenance", call(f"http://{apt}/acng-report.html?doExpire=Start+Expiration&abortOnErrors=aOe"))
print("apt-host-loopback", call(f"http://127.0.0.1:{loopback_port}/pool/main/x.deb", proxy=f"http://{apt}"))
print("devpi-simple", call(f"http://{pypi}/root/pypi/+simple/pip/"))"""


def the_host_caches_refuse_a_seat(run: Callable[..., Result], seat: str) -> None:
    """As root in the seat: devpi takes no root login without the host's password and no change;
    apt-cacher-ng no maintenance and no fetch of the host's loopback; yet both still serve it."""
    host_only = HostOnlyServer()
    try:
        out = run("exec", seat, "--", f"sudo python3 -c {shlex.quote(ASK_CACHES)} 192.168.121.1:{TEST_APT_PORT}"
                  f" 192.168.121.1:{TEST_PYPI_PORT} {host_only.port}")
        assert out.code == 0, out.out + out.err
        said = dict(line.split() for line in out.out.splitlines() if line.startswith(("devpi-", "apt-")))
        assert said == {"devpi-root-login": "401", "devpi-new-user": "403", "devpi-repoint": "403",
                        "apt-maintenance": "401", "apt-host-loopback": "403", "devpi-simple": "200"}, said
        assert host_only.asked == []
    finally:
        host_only.server.shutdown()


def another_lab_is_out_of_reach(run: Callable[..., Result], folder: Path, seat: str,
                                seat_addresses: list[str]) -> None:
    """A machine of another lab and a seat cannot reach each other on any of their addresses, though
    the host reaches both."""
    other = f"oth-{uuid.uuid4().hex[:6]}"
    # A network of its own, said outright: two random names share a derived /24 one time in a hundred
    # (labctl then refuses the second lab, as it must), which is not what this test is about.
    taken = {int(a.split(".")[2]) for a in seat_addresses if a.startswith("192.168.")}
    octet = next(n for n in range(150, 250) if n not in taken)
    (folder / "lab.yaml").write_text(f"name: {other}\nnetwork: {{cidr: 192.168.{octet}.0/24}}\nmachines:\n"
                                     "  - name: box\n    distro: debian:12\n    memory: 1G\n    cpus: 1\n"
                                     "    disk: 10G\n")
    try:
        up = run("up", "-f", str(folder / "lab.yaml"), "--no-stack", "--json")
        assert up.code == 0, up.err
        box = json.loads(run("status", "--json", "--lab", other).out)["machines"][0]
        theirs = sorted({box["ssh_address"], box["ip"]})
        for address in theirs:  # the host reaches it
            socket.create_connection((address, 22), timeout=10).close()
        seen = probe(run, seat, [f"{a}:22" for a in theirs])
        assert set(seen.values()) == {"shut"}, seen
        # From the other lab's machine, whose own lab network is open (no classroom): also routed through
        # the host on that network.
        from labctl import isolation
        from labctl.adapters import hypervisor

        conn = hypervisor.connect()
        try:
            gateway = isolation.gateway(conn.networkLookupByName(f"labctl-{other}").XMLDesc())
        finally:
            conn.close()
        assert gateway is not None
        routes = " && ".join(f"ip route add {a}/32 via {gateway.address}" for a in seat_addresses)
        control = f"192.168.121.1:{TEST_APT_PORT}"  # the probe sees what is open: the host's apt cache is
        for first in ("true", routes):
            seen = probe(run, "box", [*(f"{a}:22" for a in seat_addresses), control], lab=other, first=first)
            assert seen == {**{f"{a}:22": "shut" for a in seat_addresses}, control: "open"}, seen
        assert run("destroy", "-y", "--lab", other).code == 0
    finally:
        leave_nothing(other, ["box"])


class HostListener:
    """A TCP service on every address of this host, as any program of the trainer's might be."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("0.0.0.0", 0))  # noqa: S104 - every address, as the probe needs
        self.port = int(self.sock.getsockname()[1])
        self.peers: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer[0])
            conn.close()


def probe(run: Callable[..., Result], seat: str, targets: list[str], lab: str | None = None,
          first: str = "true") -> dict[str, str]:
    """As root in `seat` (of `lab`), after the command `first`: each target "open" or "shut"."""
    out = run("exec", seat, *(["--lab", lab] if lab else []), "--",
              f"sudo sh -c {shlex.quote(first)} && sudo bash -c {shlex.quote(PROBE)} probe {' '.join(targets)}")
    assert out.code == 0, out.out + out.err
    return {line.split()[1]: line.split()[0] for line in out.out.splitlines() if line.startswith(("open", "shut"))}


def seat_cannot_reach_another_seat_or_the_host(run: Callable[..., Result], lab: str,
                                               machines: dict[str, dict[str, Any]]) -> None:
    """As root in seat-02: nothing of seat-01 answers on any of its addresses, not even routed
    through the host; of the host, only the ports meant for machines; no address of seat-01's taken."""
    import libvirt

    from labctl import isolation
    from labctl.adapters import hypervisor
    from labctl.host import local_ipv4

    conn = hypervisor.connect()
    try:
        for seat in SEATS:
            dom = conn.lookupByName(f"labctl-{lab}-{seat}")
            for xml in (dom.XMLDesc(), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)):
                assert isolation.is_fenced(xml, "vagrant-libvirt") and isolation.is_fenced(xml, f"labctl-{lab}")
        lab_gw = isolation.gateway(conn.networkLookupByName(f"labctl-{lab}").XMLDesc())
    finally:
        conn.close()
    assert lab_gw is not None
    one = [machines["seat-01"]["ssh_address"], machines["seat-01"]["ip"]]
    # seat-01 serves on both addresses: the host reaches it there (what seat-02 must not).
    assert run("exec", "seat-01", "--", "sudo setsid -f python3 -m http.server 8765 >/dev/null 2>&1"
               " </dev/null; sleep 2").code == 0
    for address in one:
        socket.create_connection((address, 8765), timeout=10).close()
    listener = HostListener()
    hosts = sorted({*local_ipv4(), "192.168.121.1", lab_gw.address})
    wanted = [f"{a}:{p}" for a in one for p in (22, 8765)] + [f"{h}:{listener.port}" for h in hosts]
    allowed = f"192.168.121.1:{TEST_APT_PORT}"
    seen = probe(run, "seat-02", [*wanted, allowed])
    assert seen == {**dict.fromkeys(wanted, "shut"), allowed: "open"}, seen
    # Not one port of seat-01 answers, on either address (the host's apt cache, asked in the same scan, does).
    scan = run("exec", "seat-02", "--", f"sudo python3 -c {shlex.quote(SCAN)} {' '.join(one)} {allowed}")
    assert scan.code == 0, scan.out + scan.err
    assert scan.out.split()[-2:] == ["1", allowed], scan.out[-2000:]
    # Routed through the host instead (it forwards from a bridge back into it): still nothing.
    routes = f"ip route add {one[0]}/32 via 192.168.121.1 && ip route add {one[1]}/32 via {lab_gw.address}"
    assert run("exec", "seat-02", "--", f"sudo sh -c {shlex.quote(routes)}").code == 0
    seen = probe(run, "seat-02", [f"{a}:{p}" for a in one for p in (22, 8765)])
    assert set(seen.values()) == {"shut"}, seen
    # seat-01's management address taken by seat-02: nothing sent from it gets through (the apt cache,
    # which answers seat-02 from its own address, never hears of it).
    own, taken = machines["seat-02"]["ssh_address"], one[0]
    card = "$(ip -o -4 addr show | awk -v a=" + own + " 'index($4, a\"/\")==1 {print $2}')"
    spoof = (f"ip addr add {taken}/32 dev {card} && python3 -c {shlex.quote(SPOOF)} {taken} 192.168.121.1"
             f" {TEST_APT_PORT}; python3 -c {shlex.quote(SPOOF)} {own} 192.168.121.1 {TEST_APT_PORT};"
             f" ip addr del {taken}/32 dev {card}")
    out = run("exec", "seat-02", "--", f"sudo bash -c {shlex.quote(spoof)}")
    assert [w for w in out.out.split() if w in ("sent", "dropped")] == ["dropped", "sent"], out.out + out.err
    assert listener.peers == []
    listener.sock.close()


def test_stack_once_and_clone(run: Callable[..., Result], isolated_home: Path, labctl_home: Path,
                              class_name: str) -> None:
    before = libvirt_names()
    repo = make_repo(isolated_home / "devstack")
    base = 21000 + (os.getpid() % 400) * 10
    (isolated_home / "lab.yaml").write_text(
        f"name: {class_name}\ndefaults: {{distro: debian:12, memory: 1G, cpus: 1, disk: 10G}}\n"
        # Each seat its own name and address, rewritten in the copy (a compute class keeps seat-01's:
        # tests/test_seat_networks_vm.py).
        f"classroom:\n  seats: 3\n  ssh_port: {base}\n  web_port: {base + 5000}\n  seat_networks: false\n"
        f"devstack:\n  repo: {repo}\n  localrc: {{STANDIN_PHASE_SECONDS: 0.1}}\n")

    # seat-01 fails first: the other seats stay off, and up's last table says so (issue 24, item 12).
    (isolated_home / "local.conf.d").mkdir()
    fail = isolated_home / "local.conf.d" / "seat-01.conf"
    fail.write_text('[[local|localrc]]\nSTANDIN_FAIL_AT="Starting Keystone"\n')
    failed = run("up", "--json")
    assert failed.code == 1, failed.err
    assert "seat-01 did not stack: the other seats stay off" in failed.err
    shown = {m["name"]: m for m in json.loads(failed.out)["machines"]}
    assert shown["seat-01"]["devstack"] == "failed at Starting Keystone", shown["seat-01"]
    assert [shown[s]["state"] for s in ("seat-02", "seat-03")] == ["shutoff", "shutoff"], shown
    fail.unlink()

    up = run("up", "--json")  # fixed: up goes on from there
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
                           " test -e /opt/stack/standin-stacked && echo stacked-files-here").out)["machines"]
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

    logins = {s: own.login for s, own in LabHome(labctl_home).lab(class_name).secrets().seats.items()}
    assert password_login(machines["seat-02"]["ip"], logins["seat-02"])
    assert not password_login(machines["seat-02"]["ip"], logins["seat-01"])
    assert password_login(machines["seat-03"]["ip"], logins["seat-03"])
    # Through the classroom's forwarded SSH ports, as trainees come in after the cloning: each port
    # leads to its own seat, asked again and again (the real class once reached the wrong Keystone
    # through seat-01's forwarded web port).
    for number, seat in enumerate(SEATS, start=1):
        behind = [seat_behind("127.0.0.1", logins[seat], base + number) for _ in range(3)]
        assert behind == [seat] * 3, (seat, behind)
    seat_cannot_reach_another_seat_or_the_host(run, class_name, machines)
    the_host_caches_refuse_a_seat(run, "seat-02")
    (isolated_home / "other").mkdir()
    another_lab_is_out_of_reach(run, isolated_home / "other", "seat-02",
                                [machines["seat-02"]["ssh_address"], machines["seat-02"]["ip"]])

    snaps = json.loads(run("snapshot", "list", "--json").out)["machines"]
    assert {m: [s["name"] for s in v] for m, v in snaps.items()} == {s: ["stacked"] for s in SEATS}
    volumes = libvirt_names()["volumes"]
    assert f"labctl-{class_name}-seat-01.base.img" in volumes

    # The guests fetch through the host's caches.
    got = run("exec", "seat-02", "--", "sudo apt-get update -q && sudo apt-get install -q -y --download-only sl")
    assert got.code == 0, got.out + got.err
    cache = {c["name"]: c for c in json.loads(run("cache", "--json").out)["caches"]}
    assert cache["apt"]["running"] and cache["apt"]["requests"] > 0

    # The outside cut (the caches offline, the machine's proxy routed nowhere): what the cache holds
    # still installs; what it does not hold is refused, never fetched. This restarts the test caches
    # every VM test shares: a test run beside this one loses them for a moment (a real stack.sh's pip did).
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
    # Nothing new but box images, and the disks of machines that live on (another test's, run beside it).
    alive = {f"{d}.img" for d in after["domains"]}
    kept = {f"labctl-image.{i['digest']}.img" for i in json.loads(run("images", "--json").out)["images"]}
    assert all("_vagrant_box_image_" in v for v in after["volumes"] - before["volumes"] - alive - kept)
    assert TEST_CACHE.exists()
