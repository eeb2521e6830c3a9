"""The tests' second host (tests/second_host.py) is really another: its own libvirtd, networks and
storage, seen by labctl only through its sshd, and gone after. Fast (no VM is booted): in the
default run, so that the VM tests that rely on it rely on something checked."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from second_host import SecondHost

from conftest import Result, libvirt_names, require_libvirt
from labctl.hosts.relay import Forward, Relay, RelayError, relays_in, same, stop_relays


@pytest.fixture
def second(tmp_path: Path) -> Iterator[SecondHost]:
    require_libvirt()
    host = SecondHost(tmp_path / "second", index=41).start()
    yield host
    host.stop()


def test_the_second_host_shares_nothing_with_this_one(second: SecondHost, run: Callable[..., Result],
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = libvirt_names()
    # It starts empty, whatever this machine's libvirtd holds, and has a private /run/libvirt.
    assert second.virsh("list", "--all", "--name").stdout.strip() == ""
    assert second.virsh("net-list", "--all", "--name").stdout.strip() == ""
    assert second.virsh("pool-list", "--all", "--name").stdout.strip() == ""
    # What is made there stays there: a network with the name and subnet vagrant-libvirt gives its
    # management network on every host, which this machine has too once a lab ran.
    xml = ("<network><name>vagrant-libvirt</name><forward mode='nat'/><ip address='192.168.121.1'"
           " netmask='255.255.255.0'/></network>")
    made = second.ssh(f"echo \"{xml}\" > /tmp/n.xml && virsh -q -c qemu:///system net-create /tmp/n.xml")
    assert made.returncode == 0, made.stderr
    assert second.virsh("net-list", "--name").stdout.split() == ["vagrant-libvirt"]
    assert libvirt_names() == here
    # labctl reaches it as any other host: over SSH with the inventory's key, and reads its room.
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("hosts:\n  - {name: here, uri: 'qemu:///system'}\n" + second.inventory_line())
    monkeypatch.setenv("LABCTL_HOSTS", str(inventory))
    result = run("hosts", "--json")
    assert result.code == 0, result.out + result.err
    there = json.loads(result.out)["hosts"][1]
    assert (there["name"], there["reachable"], there["domains_running"]) == ("second", True, 0)
    assert there["disk_free_gb"] is None  # no storage pool made there yet


def test_the_second_host_leaves_nothing_behind(tmp_path: Path) -> None:
    require_libvirt()
    host = SecondHost(tmp_path / "second", index=42).start()
    inside = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True).stdout.split()
    names = {Path(f"/proc/{p}/comm").read_text().strip() for p in inside}
    assert {"libvirtd", "virtlogd", "sshd"} <= names, names
    host.stop()
    assert host.netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert subprocess.run(["ip", "link", "show", host.veth], capture_output=True).returncode != 0
    assert host.subnet not in subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    assert not (host.folder / "root").exists()
    assert [p for p in inside if Path(f"/proc/{p}").exists()] == []


def test_a_seat_on_the_second_host_is_reached_through_its_sshd_and_its_seats_are_refused(
        second: SecondHost, tmp_path: Path) -> None:
    """A "seat" that only the second host can reach (its own loopback): the forwarder on this machine
    gets there through the host's sshd, as labctl reaches it; a client from the host's address (where
    its seats' traffic comes from) is refused."""
    from ports import free_port
    from test_forward import start_forwarder, stop

    from labctl.hosts.inventory import HostEntry
    from labctl.hosts.transport import addresses_of, ssh_argv

    served = second.ssh("mkdir -p /tmp/seat && echo seat-on-second > /tmp/seat/index.html && cd /tmp/seat &&"
                        " (setsid python3 -m http.server --bind 127.0.0.1 8099 >/dev/null 2>&1 &) && sleep 1")
    assert served.returncode == 0, served.stderr
    entry = HostEntry("second", second.uri, ssh_key=second.client_key)
    port = free_port()
    proc, _log = start_forwarder(tmp_path, [[second.gateway, port, "127.0.0.1", 8099, "second"]],
                                 tunnels={"second": ssh_argv(entry, tmp_path / "home")},
                                 refuse_from=list(addresses_of(entry)))
    try:
        got = subprocess.run(["curl", "-s", "--max-time", "10", f"http://{second.gateway}:{port}/"],
                             capture_output=True, text=True)
        assert got.stdout.strip() == "seat-on-second"
        from_there = second.ssh(f"curl -s --max-time 5 http://{second.gateway}:{port}/; echo rc=$?")
        assert "seat-on-second" not in from_there.stdout and "rc=0" not in from_there.stdout
    finally:
        stop(proc)


def management_addresses(second: SecondHost, tmp_path: Path) -> tuple[str, str]:
    """vagrant-libvirt's management network on both hosts, made as labctl makes it: the same host
    address on each."""
    from labctl.adapters.hypervisor import Hypervisor
    from labctl.hosts.inventory import HostEntry
    from labctl.hosts.transport import libvirt_uri

    with Hypervisor("qemu:///system") as here:
        mine = here.management_address()
    entry = HostEntry("second", second.uri, ssh_key=second.client_key)
    with Hypervisor(libvirt_uri(entry, tmp_path / "home")) as there:
        theirs = there.management_address()
    return mine, theirs


def relay_for(second: SecondHost, tmp_path: Path, forwards: tuple[Forward, ...]) -> Relay:
    from labctl.hosts.inventory import HostEntry
    from labctl.hosts.transport import ssh_argv

    entry = HostEntry("second", second.uri, ssh_key=second.client_key)
    return Relay("second", ssh_argv(entry, tmp_path / "home"), tmp_path / "relays", "caches", forwards)


def test_this_machines_service_reaches_the_second_hosts_network_at_the_same_address(
        second: SecondHost, tmp_path: Path) -> None:
    import socket
    import threading

    mine, theirs = management_addresses(second, tmp_path)
    assert mine == theirs
    server = socket.create_server((mine, 0))
    port = int(server.getsockname()[1])

    def answer() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                client.sendall(b"cache-on-first\n")

    threading.Thread(target=answer, daemon=True).start()
    relay = relay_for(second, tmp_path, (same(mine, port),))
    try:
        relay.start()
        pid = relay.running()
        assert pid is not None
        relay.start()  # kept: the same process
        assert relay.running() == pid
        got = second.ssh(f"exec 3<>/dev/tcp/{mine}/{port} && head -1 <&3")
        assert got.stdout.strip() == "cache-on-first", got.stderr
        # Only on that address: not on the host's own address on the outside.
        assert second.ssh(f"timeout 3 bash -c ': < /dev/tcp/{second.address}/{port}'").returncode != 0
        assert relays_in(relay.folder) == [("second.caches", True)]  # as `labctl cache` shows it
        # The caches restarted on another port: the relay with the old port goes, a new one comes.
        moved = relay_for(second, tmp_path, (*relay.forwards, same(mine, port + 1)))
        assert moved.running() is None
        moved.start()
        assert moved.running() not in (None, pid) and not Path(f"/proc/{pid}").exists()
        relay = moved
        assert stop_relays(relay.folder) == ["second.caches"]  # as `labctl cache stop` does
        assert relay.running() is None
        assert second.ssh(f"timeout 3 bash -c ': < /dev/tcp/{mine}/{port}'").returncode != 0  # gone with it
    finally:
        relay.stop()
        server.close()


def test_a_host_whose_sshd_keeps_forwards_on_its_loopback_is_named_with_the_setting(tmp_path: Path) -> None:
    require_libvirt()
    host = SecondHost(tmp_path / "second", index=43, gateway_ports=False).start()
    try:
        mine, _theirs = management_addresses(host, tmp_path)
        relay = relay_for(host, tmp_path, (same(mine, 3149),))
        with pytest.raises(RelayError) as err:
            relay.start(timeout=10)
        assert err.value.message == (f"host second does not offer the caches to its machines: nothing answers there on"
                                     f" {mine}:3149")
        assert err.value.hint and "GatewayPorts clientspecified" in err.value.hint
        assert relay.running() is None
    finally:
        host.stop()


def test_a_base_goes_to_the_second_host_once_sparse_and_its_seats_become_overlays_on_it(
        second: SecondHost, tmp_path: Path) -> None:
    """A stacked base stands in as a 1 GiB qcow2 with 3 MiB written; it crosses through libvirt's
    volume streams, holes as holes, and a seat's disk there becomes an overlay on the copy."""
    import hashlib
    import uuid

    from labctl.adapters.hypervisor import Hypervisor
    from labctl.hosts.inventory import HostEntry
    from labctl.hosts.transport import libvirt_uri

    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    base_file = pool_dir / "seat-01.base.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base_file), "1G"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0xab 0 3M", str(base_file)], check=True, capture_output=True)
    pool_name = f"labctl-test-{uuid.uuid4().hex[:8]}"
    defined = subprocess.run(["virsh", "-q", "pool-create-as", pool_name, "dir", "--target", str(pool_dir)],
                             capture_output=True, text=True)
    assert defined.returncode == 0, defined.stderr
    try:
        made = second.ssh("virsh -q pool-define-as default dir --target /var/lib/libvirt/images && virsh -q pool-start"
                          " default && virsh -q vol-create-as default seat-03.img 1G --format qcow2 && virsh -q define"
                          " /dev/stdin <<'X'\n<domain type='qemu'><name>seat-03</name><memory unit='MiB'>64</memory>"
                          "<os><type>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu'"
                          " type='qcow2'/><source file='/var/lib/libvirt/images/seat-03.img'/><target dev='vda'/>"
                          "</disk></devices></domain>\nX")
        assert made.returncode == 0, made.stderr
        entry = HostEntry("second", second.uri, ssh_key=second.client_key)
        sent: list[int] = []
        with Hypervisor("qemu:///system") as here, Hypervisor(libvirt_uri(entry, tmp_path / "home")) as there:
            copy = here.send_base(base_file, there, "seat-03", sent.append)
            there.overlay_disks(copy, ["seat-03"])
        assert copy == Path("/var/lib/libvirt/images/seat-01.base.img")  # as the second host sees it
        on_disk = second.folder / "root" / "var/lib/libvirt/images" / "seat-01.base.img"
        assert hashlib.sha256(on_disk.read_bytes()).digest() == hashlib.sha256(base_file.read_bytes()).digest()
        assert 3 * 2**20 <= sent[-1] < 8 * 2**20  # the data, not the gigabyte
        assert on_disk.stat().st_blocks * 512 < 8 * 2**20  # holes stayed holes there
        overlay = second.virsh("vol-dumpxml", "--pool", "default", "seat-03.img").stdout
        assert "<backingStore>" in overlay and "/var/lib/libvirt/images/seat-01.base.img" in overlay
    finally:
        subprocess.run(["virsh", "-q", "pool-destroy", pool_name], capture_output=True)


def test_a_class_is_planned_across_this_machine_and_the_second_host(
        second: SecondHost, run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        isolated_home: Path) -> None:
    """What was refused before seats could be reached on another host: a class spread over both."""
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("hosts:\n  - {name: here, uri: 'qemu:///system'}\n" + second.inventory_line())
    monkeypatch.setenv("LABCTL_HOSTS", str(inventory))
    # Reserves that leave each host room for two seats of 1 GiB, whatever else runs on this machine
    # (both hosts share its memory): two seats on each.
    free = {h["name"]: h["memory_free_mb"] for h in json.loads(run("hosts", "--json").out)["hosts"]}
    reserve = {name: max(0, mb - 2 * 1024 - 512) for name, mb in free.items()}
    inventory.write_text(f"hosts:\n  - {{name: here, uri: 'qemu:///system', reserve: {reserve['here']}M}}\n"
                         + second.inventory_line().replace("}", f", reserve: {reserve['second']}M}}"))
    Path("lab.yaml").write_text("name: spread\nclassroom: {seats: 4, seat: {memory: 1G, cpus: 2, disk: 10G}}\n")
    result = run("plan", "--json")
    assert result.code == 0, result.err
    placed = json.loads(result.out)["placement"]["hosts"]
    assert sorted(placed.values()) == ["here", "here", "second", "second"], placed
