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
