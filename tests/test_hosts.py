"""Several hypervisor hosts: the inventory, each host's room live from libvirt, and placement.

Hosts of different sizes are libvirt test-driver hosts (test:///FILE.xml: a node of that memory and
those CPUs, with running domains). An unreachable host is a real qemu+ssh:// URI whose SSH port has
nothing listening: libvirt's own SSH transport fails as it would for a host that is down.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

from conftest import Result
from labctl.adapters.hypervisor import Hypervisor
from labctl.adapters.hypervisor.capacity import accelerator
from labctl.context import Context
from labctl.errors import LabFileError, NotEnoughResources
from labctl.hosts.inventory import HostEntry, load_hosts, parse_hosts
from labctl.hosts.placement import HostRoom, HostUnknown, Need, place
from labctl.hosts.survey import survey
from labctl.hosts.transport import libvirt_uri, proxy_command
from labctl.protocols import HostCapacity
from labctl.state import LabHome

GIB = 1024


def node_xml(folder: Path, name: str, memory_gib: int, cpus: int, running: tuple[int, ...] = (),
             disk_used_gib: int | None = None) -> str:
    """A libvirt test-driver host: `memory_gib` of memory, `cpus` CPUs, domains running with the given
    GiB each, and with `disk_used_gib` a storage pool "default" (the test driver makes every pool
    100 GiB) that many GiB of it taken by a volume. Returns its URI."""
    domains = "".join(f'<domain type="test"><name>vm{i}</name><memory unit="MiB">{gib * GIB}</memory>'
                      f"<vcpu>1</vcpu><os><type>hvm</type></os></domain>" for i, gib in enumerate(running))
    pool = ("" if disk_used_gib is None else
            "<pool type='dir'><name>default</name><target><path>/var/lib/libvirt/images</path></target>"
            f"<volume type='file'><name>held.img</name><capacity unit='G'>{disk_used_gib}</capacity>"
            f"<allocation unit='G'>{disk_used_gib}</allocation></volume></pool>")
    path = folder / f"{name}.xml"
    path.write_text(f"<node><cpu><mhz>2000</mhz><model>x86_64</model><active>{cpus}</active><nodes>1</nodes>"
                    f"<sockets>1</sockets><cores>{cpus}</cores><threads>1</threads></cpu>"
                    f"<memory>{memory_gib * GIB * 1024}</memory>{domains}{pool}</node>")
    return f"test://{path}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# The inventory


def test_no_inventory_means_this_machine_alone(tmp_path: Path) -> None:
    assert load_hosts(tmp_path / "hosts.yaml", "qemu:///system") == [HostEntry("local", "qemu:///system")]


def test_inventory_parsed_with_reserve_and_key(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  - {name: here, uri: 'qemu:///system', reserve: 2G}\n"
                    "  - {name: rack2, uri: 'qemu+ssh://labctl@rack2.example.org:2222/system', ssh_key: ~/.ssh/k}\n")
    here, rack2 = load_hosts(path, "qemu:///system")
    assert (here.name, here.reserve_mb, here.remote, here.address) == ("here", 2048, False, None)
    assert rack2.parts is not None
    assert (rack2.remote, rack2.address, rack2.parts.user, rack2.reserve_mb) == (True, "rack2.example.org", "labctl", 0)
    assert rack2.ssh_key == Path.home() / ".ssh/k"
    assert libvirt_uri(here, tmp_path / "home") == "qemu:///system"
    uri = libvirt_uri(rack2, tmp_path / "home")
    script = tmp_path / "home" / "hosts" / "rack2.ssh"
    assert uri == f"qemu+ext://rack2/system?command={script}"
    assert stat.S_IMODE(script.stat().st_mode) == 0o700
    text = script.read_text()
    assert "-o BatchMode=yes" in text and f"'UserKnownHostsFile=\"{tmp_path}/home/hosts/known_hosts\"'" in text
    assert "-p 2222 -l labctl rack2.example.org" in text and "virt-ssh-helper qemu:///system" in text
    assert proxy_command(rack2, tmp_path / "home").endswith("-l labctl rack2.example.org -W %h:%p")


@pytest.mark.parametrize(("text", "error"), [
    ("hosts: []", "names no host"),
    ("hosts:\n  - {name: a, uri: 'qemu+ssh://h/system?command=touch%20/tmp/x'}", "not a libvirt URI"),
    ("hosts:\n  - {name: a, uri: 'qemu+ssh://h/system', ssh_key: 'k'}", "not an absolute path"),
    ("hosts:\n  - {name: a, uri: 'qemu:///system', ssh_key: '/k'}", "only a qemu\\+ssh"),
    ("hosts:\n  - {name: a, uri: 'qemu+ssh:///system'}", "names no host"),
    ("hosts:\n  - {name: a, uri: 'qemu+ssh://h:99999/system'}", "not a libvirt URI"),
    ("hosts:\n  - {name: a, uri: 'lxc:///'}", "not a libvirt URI"),
    ("hosts:\n  - {name: 'A;rm', uri: 'qemu:///system'}", "invalid name"),
    ("hosts:\n  - {name: a, uri: 'qemu:///system'}\n  - {name: a, uri: 'test:///default'}", "named twice"),
    ("hosts:\n  - {name: a, uri: 'qemu:///system'}\n  - {name: b, uri: 'qemu:///system'}",
     "qemu:///system is the libvirt of 'a'"),
    # One host spelled three ways would count its memory three times.
    ("hosts:\n  - {name: a, uri: 'qemu+ssh://u@far/system'}\n  - {name: b, uri: 'qemu+ssh://FAR:22/system/'}",
     "is the libvirt of 'a'"),
    ("hosts:\n  - {name: a, uri: 'qemu+ssh://root@[::1]/system'}\n  - {name: b, uri: 'qemu+ssh://[0:0::1]:22/system'}",
     "is the libvirt of 'a'"),
    ("hosts:\n  - {name: a, uri: 'qemu:///system', reserve: lots}", "reserve: expected MiB"),
    ("hosts:\n  - {name: a}", "uri: missing"),
    ("hosts:\n  - {name: a, uri: 'qemu:///system', cpus: 4}", "unknown key"),
    ("hosts: " + "[" * 5000, "nested too deeply"),
])
def test_inventory_refuses_what_it_cannot_use(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    with pytest.raises(LabFileError, match=error) as exc:
        load_hosts(path, "qemu:///system")
    assert str(path) in exc.value.message


def test_too_many_hosts_and_too_big_a_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n" + "".join(f"  - {{name: h{i}, uri: 'test:///f{i}'}}\n" for i in range(65)))
    with pytest.raises(LabFileError, match="at most 64"):
        load_hosts(path, "qemu:///system")
    path.write_text("hosts: []\n" + "#" * 300_000)
    with pytest.raises(LabFileError, match="more than the 256 KiB"):
        load_hosts(path, "qemu:///system")


def test_inventory_entries_parse_alone() -> None:
    assert [e.name for e in parse_hosts({"hosts": [{"name": "x", "uri": "test:///default"}]})] == ["x"]


# ---------------------------------------------------------------------------------------------
# Each host's room, from libvirt


def test_capacity_of_a_test_host_counts_its_running_domains(tmp_path: Path) -> None:
    with Hypervisor(node_xml(tmp_path, "h", 64, 16, running=(8, 4))) as hv:
        cap = hv.host_capacity()
    assert (cap.cpus, cap.memory_total_mb, cap.memory_domains_mb, cap.domains_running) == (16, 64 * GIB, 12 * GIB, 2)
    room = HostRoom(HostEntry("h", "test:///x", reserve_mb=4 * GIB), cap)
    assert room.free_mb == (64 - 12 - 4) * GIB


def test_capacity_of_a_test_host_reads_its_storage_pool(tmp_path: Path) -> None:
    with Hypervisor(node_xml(tmp_path, "full", 64, 16, disk_used_gib=90)) as hv:
        cap = hv.host_capacity()
    assert (cap.disk_free_gb, cap.disk_path) == (10, "storage pool default")
    with Hypervisor(node_xml(tmp_path, "bare", 64, 16)) as hv:  # no pool yet: not known, never 0
        assert hv.host_capacity().disk_free_gb is None


def test_free_memory_is_the_smaller_of_left_by_domains_and_available() -> None:
    cap = HostCapacity(cpus=4, memory_total_mb=32 * GIB, memory_domains_mb=8 * GIB, memory_available_mb=10 * GIB,
                       accelerator="kvm", domains_running=1)
    assert HostRoom(HostEntry("h", "qemu:///system", reserve_mb=GIB), cap).free_mb == 9 * GIB
    assert HostRoom(HostEntry("h", "qemu:///system", reserve_mb=64 * GIB), cap).free_mb == 0


def test_accelerator_needs_kvm_and_the_cpu_flag() -> None:
    def caps(kinds: str, features: str) -> str:
        return (f"<capabilities><host><cpu>{features}</cpu></host><guest><arch name='x86_64'>{kinds}"
                "</arch></guest></capabilities>")

    kvm_and_qemu = "<domain type='qemu'/><domain type='kvm'/>"
    assert accelerator(caps(kvm_and_qemu, "<feature name='vmx'/>")) == "kvm"
    assert accelerator(caps(kvm_and_qemu, "<feature name='svm'/>")) == "kvm"
    # nested /dev/kvm without vmx/svm: libvirt offers kvm, its guests would die
    assert accelerator(caps(kvm_and_qemu, "<feature name='avx'/>")) == "qemu"
    assert accelerator(caps("<domain type='qemu'/>", "")) == "qemu"
    assert accelerator(caps("<domain type='test'/>", "")) == "test"


def test_this_machine_has_a_room() -> None:
    """The real libvirtd: its capacity is read through the same call (skipped without libvirtd)."""
    from conftest import require_libvirt

    require_libvirt()
    with Hypervisor("qemu:///system") as hv:
        cap = hv.host_capacity()
    assert cap.cpus >= 1 and cap.memory_total_mb > 1024 and cap.memory_available_mb is not None
    assert cap.accelerator in ("kvm", "qemu")
    # QEMU writes its volumes as an unprivileged user: blocks the file system keeps for root are not
    # free for machines (libvirt's pool counts them: 215 GB where 65 GB were free on this machine).
    images = Path("/var/lib/libvirt/images")
    if images.exists() and cap.disk_free_gb is not None:
        assert cap.disk_free_gb <= os.statvfs(images).f_bavail * os.statvfs(images).f_frsize // 1024**3


def test_survey_names_an_unreachable_host_and_asks_the_others(tmp_path: Path) -> None:
    entries = [HostEntry("big", node_xml(tmp_path, "big", 64, 16)),
               HostEntry("down", f"qemu+ssh://nobody@127.0.0.1:{closed_port()}/system"),
               HostEntry("small", node_xml(tmp_path, "small", 16, 4))]
    ctx = Context(LabHome(tmp_path / "home"), tmp_path / "cache", "qemu:///system")
    rooms = survey(entries, ctx.host_hypervisor)
    ctx.close()
    assert [r.name for r in rooms] == ["big", "down", "small"]
    assert rooms[0].free_mb == 64 * GIB and rooms[2].free_mb == 16 * GIB
    assert rooms[1].capacity is None and rooms[1].free_mb == 0
    assert rooms[1].error and rooms[1].error.startswith("host down (qemu+ssh://nobody@127.0.0.1:")
    assert "ssh: connect to host 127.0.0.1" in rooms[1].error and "Connection refused" in rooms[1].error


def test_a_dead_host_is_tried_once_per_command(tmp_path: Path) -> None:
    """Three machines on a host that is down: one attempt (status took 31 s for 3, one timeout each)."""
    from labctl.errors import LabctlError

    tries: list[str] = []

    def refuse(uri: str) -> NoReturn:
        tries.append(uri)
        raise LabctlError("libvirt is not reachable: Connection refused")

    ctx = Context(LabHome(tmp_path / "home"), tmp_path / "cache", "qemu:///system", open_hypervisor=refuse)
    entry = HostEntry("far", "qemu+ssh://u@far/system")
    errors = []
    for _ in range(3):
        with pytest.raises(LabctlError) as err:
            ctx.host_hypervisor(entry)
        errors.append(err.value.message)
    assert len(tries) == 1 and len(set(errors)) == 1 and errors[0].startswith("host far (qemu+ssh://u@far/system)")


# ---------------------------------------------------------------------------------------------
# Placement (pure, on rooms as libvirt's test driver reports them)


@pytest.fixture
def rooms(tmp_path: Path) -> list[HostRoom]:
    """A big host (64 GiB, 8 GiB of it held by a running VM, 4 GiB reserved) and a small one (16 GiB)."""
    specs = [("big", 64, 16, (8,), 4), ("small", 16, 4, (), 0)]
    out = []
    for name, gib, cpus, running, reserve in specs:
        entry = HostEntry(name, node_xml(tmp_path, name, gib, cpus, running), reserve_mb=reserve * GIB)
        with Hypervisor(entry.uri) as hv:
            out.append(HostRoom(entry, hv.host_capacity()))
    assert [r.free_mb for r in out] == [52 * GIB, 16 * GIB]
    return out


def seats(n: int, gib: int = 8, cpus: int = 2, disk: int = 0) -> list[Need]:
    return [Need(f"seat-{i:02d}", gib * GIB, cpus, disk_gb=disk) for i in range(1, n + 1)]


@pytest.fixture
def disk_rooms(tmp_path: Path) -> list[HostRoom]:
    """roomy: 64 GiB of memory and 10 GB of disk free; small: 16 GiB and 100 GB free."""
    return [HostRoom(HostEntry(n, uri), Hypervisor(uri).host_capacity()) for n, uri in (
        ("roomy", node_xml(tmp_path, "roomy", 64, 16, disk_used_gib=90)),
        ("small", node_xml(tmp_path, "small", 16, 4, disk_used_gib=0)))]


def test_a_class_that_fits_spreads_by_free_memory(rooms: list[HostRoom]) -> None:
    placement = place(seats(8), rooms)
    # 52 GiB and 16 GiB free: the big host takes seats until what it has left is no more than the small one's
    assert len(placement.on("big")) == 6 and len(placement.on("small")) == 2
    assert placement.lines() == [
        "big: 6 machine(s) (seat-01, seat-02, seat-03, seat-04, seat-05, seat-06):"
        " 6 x 8192 = 49152 MiB of 53248 MiB free",
        "small: 2 machine(s) (seat-07, seat-08): 2 x 8192 = 16384 MiB of 16384 MiB free"]


def test_two_small_machines_go_to_two_hosts(rooms: list[HostRoom]) -> None:
    equal = [HostRoom(r.entry, r.capacity) for r in rooms]
    placement = place(seats(2, gib=1), [equal[0], HostRoom(HostEntry("twin", "test:///t", reserve_mb=4 * GIB),
                                                            equal[0].capacity)])
    assert set(placement.hosts.values()) == {"big", "twin"}


def test_a_class_too_big_is_refused_with_the_arithmetic(rooms: list[HostRoom]) -> None:
    with pytest.raises(NotEnoughResources) as exc:
        place(seats(9), rooms)
    message = exc.value.message
    assert "9 x 8192 = 73728 MiB" in message
    assert "big 53248 + small 16384 = 69632 MiB free after their reserves" in message
    assert "1 machine(s) find no room (seat-09)" in message
    assert exc.value.hint and "hosts.yaml" in exc.value.hint


def test_pins_and_kept_machines_stay_where_they_are(rooms: list[HostRoom]) -> None:
    needs = [Need("ctl", 8 * GIB, 2, pin="small"), Need("old", 0, 2, kept="small", running=True),
             Need("c1", 4 * GIB, 2), Need("c2", 4 * GIB, 2)]
    placement = place(needs, rooms)
    assert placement.hosts == {"ctl": "small", "old": "small", "c1": "big", "c2": "big"}


def test_a_kept_machine_wins_over_a_changed_pin(rooms: list[HostRoom]) -> None:
    placement = place([Need("ctl", 4 * GIB, 2, pin="big", kept="small")], rooms)
    assert placement.hosts == {"ctl": "small"}


def test_a_pin_to_a_host_too_small_is_refused(rooms: list[HostRoom]) -> None:
    with pytest.raises(NotEnoughResources, match="small is short of 16384 MiB"):
        place([Need("a", 16 * GIB, 2, pin="small"), Need("b", 16 * GIB, 2, pin="small")], rooms)


def test_a_pin_to_an_unknown_host_names_the_hosts(rooms: list[HostRoom]) -> None:
    with pytest.raises(HostUnknown, match=r"pinned to host 'rack9'.*hosts: big, small"):
        place([Need("a", GIB, 1, pin="rack9")], rooms)


def test_cpus_decide_too(rooms: list[HostRoom]) -> None:
    placement = place([Need("wide", GIB, 8)], rooms)
    assert placement.hosts == {"wide": "big"}  # small has 4 CPUs
    with pytest.raises(NotEnoughResources, match="wide want more vCPUs than any host has"):
        place([Need("wide", GIB, 32)], rooms)


def test_a_host_short_of_disk_gets_no_machines_however_much_memory_it_has(disk_rooms: list[HostRoom]) -> None:
    placement = place(seats(3, gib=4, disk=20), disk_rooms)
    assert placement.hosts == {"seat-01": "small", "seat-02": "small", "seat-03": "small"}
    assert placement.lines() == [
        "roomy: 0 machine(s) (): nothing new; 65536 MiB free; 10 GB of disk free",
        "small: 3 machine(s) (seat-01, seat-02, seat-03): 3 x 4096 = 12288 MiB of 16384 MiB free;"
        " 3 x 20 = 60 GB of 100 GB of disk free"]


def test_a_class_the_disks_cannot_hold_is_refused_with_the_disk_arithmetic(disk_rooms: list[HostRoom]) -> None:
    with pytest.raises(NotEnoughResources) as exc:
        place(seats(6, gib=2, disk=20), disk_rooms)  # memory for all 6 on either host; disk for 5 on small
    message = exc.value.message
    assert "1 machine(s) find no room (seat-06)" in message
    assert "and up to 6 x 20 = 120 GB of disk; the hosts have roomy 10 + small 100 = 110 GB free" in message
    assert exc.value.hint and "disk" in exc.value.hint


def test_a_pin_to_a_host_short_of_disk_is_refused(disk_rooms: list[HostRoom]) -> None:
    with pytest.raises(NotEnoughResources, match="roomy is short of 10 GB of disk"):
        place([Need("a", GIB, 1, pin="roomy", disk_gb=20)], disk_rooms)


def test_a_host_whose_disk_is_not_known_is_not_held_to_it(rooms: list[HostRoom]) -> None:
    assert all(r.disk_free_gb is None for r in rooms)
    assert len(place(seats(2, disk=10_000), rooms).hosts) == 2


def test_an_unreachable_host_gets_nothing_and_is_named(rooms: list[HostRoom]) -> None:
    down = HostRoom(HostEntry("down", "qemu+ssh://x@down/system"), error="libvirt is not reachable")
    placement = place(seats(2), [down, *rooms])
    assert "down" not in placement.hosts.values()
    assert placement.lines()[0] == "down: unreachable (libvirt is not reachable)"
    with pytest.raises(NotEnoughResources, match=r"\(unreachable: down\)"):
        place(seats(20), [down, *rooms])


# ---------------------------------------------------------------------------------------------
# labctl hosts


def test_hosts_command_lists_capacity_and_marks_a_down_host(run: Callable[..., Result], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(f"hosts:\n  - {{name: big, uri: '{node_xml(tmp_path, 'big', 64, 16, (8,))}', reserve: 4G}}\n"
                         f"  - {{name: down, uri: 'qemu+ssh://nobody@127.0.0.1:{closed_port()}/system'}}\n")
    monkeypatch.setenv("LABCTL_HOSTS", str(inventory))
    result = run("hosts")
    assert result.code == 1
    assert "big" in result.out and "53248 MiB" in result.out and "unreachable" in result.out
    assert "host down (qemu+ssh://nobody@127.0.0.1:" in result.out and "cannot be reached" in result.out
    assert "Traceback" not in result.out + result.err
    data = json.loads(run("hosts", "--json").out)
    big, down = data["hosts"]
    assert (big["memory_free_mb"], big["domains_running"], big["reachable"]) == (53248, 1, True)
    assert big["disk_free_gb"] is None  # no storage pool on it: not known, never taken for 0
    assert down["reachable"] is False and "Connection refused" in down["error"]


def test_an_ipv6_uri_is_shown_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    """[fd00::1] would be read as rich markup (a style named fd00::1) and vanish. Nothing is contacted."""
    from types import SimpleNamespace

    from labctl.commands.hosts import _table

    entry = HostEntry("six", "qemu+ssh://u@[fd00::1]/system")
    _table([SimpleNamespace(name="six", entry=entry, capacity=None, error="host six cannot be reached: [bold]x")],
           "/etc/[fd00]/hosts.yaml", "p")
    out = capsys.readouterr().out.replace("\n", "")
    assert "[fd00::1]" in out
    assert "[bold]x" in out and "[fd00]" in out


def test_hosts_command_without_inventory_is_this_machine(run: Callable[..., Result],
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABCTL_LIBVIRT_URI", node_xml(tmp_path, "here", 32, 8))
    result = run("hosts", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["inventory"] is None and [h["name"] for h in data["hosts"]] == ["local"]
    assert data["hosts"][0]["memory_free_mb"] == 32 * GIB


def test_hosts_command_with_a_broken_inventory_is_one_line(run: Callable[..., Result], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("hosts:\n  - {name: a, uri: 'qemu+ssh://h/system?command=id'}\n")
    monkeypatch.setenv("LABCTL_HOSTS", str(inventory))
    result = run("hosts")
    assert result.code == 2 and "not a libvirt URI" in result.err and "Traceback" not in result.err


# ---------------------------------------------------------------------------------------------
# labctl plan with an inventory


def write_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big, small = node_xml(tmp_path, "big", 64, 16, (8,)), node_xml(tmp_path, "small", 16, 4)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(f"hosts:\n  - {{name: big, uri: '{big}', reserve: 4G}}\n  - {{name: small, uri: '{small}'}}\n")
    monkeypatch.setenv("LABCTL_HOSTS", str(inventory))


def test_plan_places_machines_across_the_hosts(run: Callable[..., Result], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_inventory(tmp_path, monkeypatch)
    machines = "".join(f"  - {{name: m{n}}}\n" for n in range(1, 9))
    Path("lab.yaml").write_text(f"name: many\ncaches: false\ndefaults: {{memory: 8G, cpus: 2}}\nmachines:\n{machines}")
    result = run("plan")
    assert result.code == 0, result.err
    assert "Hosts: big: 6 machine(s) (m1, m2, m3, m4, m5, m6)" in result.out
    assert "small: 2 machine(s) (m7, m8): 2 x 8192 = 16384 MiB of 16384 MiB free" in result.out
    data = json.loads(run("plan", "--json").out)
    assert data["placement"]["hosts"]["m8"] == "small" and len(data["placement"]["arithmetic"]) == 2


def test_plan_refuses_a_class_the_hosts_cannot_hold_and_writes_nothing(
        run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, labctl_home: Path) -> None:
    write_inventory(tmp_path, monkeypatch)
    Path("lab.yaml").write_text("name: class\nclassroom: {seats: 12, seat: {memory: 8G, cpus: 2}}\n")
    result = run("plan")
    assert result.code == 2
    assert "12 x 8192 = 98304 MiB" in result.err and "big 53248 + small 16384 = 69632 MiB" in result.err
    assert "4 machine(s) find no room" in result.err
    assert not (labctl_home / "labs" / "class").exists()


def test_plan_counts_each_hosts_free_disk(run: Callable[..., Result], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, labctl_home: Path) -> None:
    """roomy has memory for every machine and 10 GB of disk; small has less memory and the disk."""
    roomy = node_xml(tmp_path, "roomy", 64, 16, disk_used_gib=90)
    small = node_xml(tmp_path, "small", 16, 4, disk_used_gib=0)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(f"hosts:\n  - {{name: roomy, uri: '{roomy}'}}\n  - {{name: small, uri: '{small}'}}\n")
    monkeypatch.setenv("LABCTL_HOSTS", str(inventory))
    listing = run("hosts")
    assert listing.code == 0 and "10 GB" in listing.out and "100 GB" in listing.out
    assert [h["disk_free_gb"] for h in json.loads(run("hosts", "--json").out)["hosts"]] == [10, 100]
    Path("lab.yaml").write_text("name: duo\ncaches: false\ndefaults: {memory: 4G, disk: 20G}\n"
                                "machines:\n  - {name: m1}\n  - {name: m2}\n")
    data = json.loads(run("plan", "--json").out)
    assert data["placement"]["hosts"] == {"m1": "small", "m2": "small"}
    assert any("2 x 20 = 40 GB of 100 GB of disk free" in line for line in data["placement"]["arithmetic"])
    # Six machines of 2G: memory for all of them on either host, disk for five (volumes are thin:
    # 40G each counts as the 20 GB DevStack fills)
    machines = "".join(f"  - {{name: m{n}}}\n" for n in range(1, 7))
    Path("lab.yaml").write_text(f"name: six\ncaches: false\ndefaults: {{memory: 2G, disk: 40G}}\nmachines:\n{machines}")
    result = run("plan")
    assert result.code == 2 and "1 machine(s) find no room (m6)" in result.err
    assert "6 x 20 = 120 GB of disk; the hosts have roomy 10 + small 100 = 110 GB free" in result.err
    assert not (labctl_home / "labs" / "six").exists()


def test_plan_honours_a_pin_and_refuses_an_unknown_host(run: Callable[..., Result], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    write_inventory(tmp_path, monkeypatch)
    Path("lab.yaml").write_text("name: duo\nmachines:\n  - {name: ctl, memory: 4G, host: small}\n"
                                "  - {name: cpu, memory: 4G}\n")
    data = json.loads(run("plan", "--json").out)
    assert data["placement"]["hosts"] == {"ctl": "small", "cpu": "big"}
    Path("lab.yaml").write_text("name: duo\nmachines:\n  - {name: ctl, memory: 4G, host: rack9}\n")
    result = run("plan")
    assert result.code == 2 and "ctl is pinned to host 'rack9'" in result.err and "hosts: big, small" in result.err
    Path("lab.yaml").write_text("name: duo\nmachines:\n  - {name: ctl, memory: 4G, host: 'x; rm -rf /'}\n")
    result = run("plan")
    assert result.code == 2 and "machines[0].host: invalid name" in result.err


# ---------------------------------------------------------------------------------------------
# A host over SSH: this machine's own libvirtd through a real sshd on a loopback port


def test_a_host_over_ssh_is_reached_with_labctls_own_known_hosts(run: Callable[..., Result], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 labctl_home: Path) -> None:
    from sshd import keygen, make_sshd

    from conftest import require_libvirt

    require_libvirt()
    sshd = make_sshd(tmp_path / "sshd").start()
    try:
        inventory = tmp_path / "hosts.yaml"
        inventory.write_text(f"hosts:\n  - {{name: far, uri: 'qemu+ssh://{sshd.user}@127.0.0.1:{sshd.port}/system',"
                             f" ssh_key: '{sshd.client_key}', reserve: 1G}}\n")
        monkeypatch.setenv("LABCTL_HOSTS", str(inventory))
        data = json.loads(run("hosts", "--json").out)
        far = data["hosts"][0]
        assert far["reachable"] is True, far["error"]
        assert far["accelerator"] in ("kvm", "qemu") and far["memory_total_mb"] > 1024
        recorded = (labctl_home / "hosts" / "known_hosts").read_text()
        assert recorded.count("ssh-ed25519") == 1  # recorded at first contact, in labctl's file only
        # The host comes back with another key (reinstalled, or someone in the middle): refused.
        sshd.stop()
        sshd.start(host_key=keygen(tmp_path / "other_host_key"))
        result = run("hosts")
        assert result.code == 1
        assert "host far (qemu+ssh://" in result.out and "cannot be reached" in result.out
        error = json.loads(run("hosts", "--json").out)["hosts"][0]["error"]
        assert "Host key verification failed" in error and "ssh-keygen -R" in error
        assert (labctl_home / "hosts" / "known_hosts").read_text() == recorded
    finally:
        sshd.stop()


def test_a_changed_host_key_gets_a_hint(tmp_path: Path) -> None:
    from labctl.hosts.transport import host_unreachable

    entry = HostEntry("far", "qemu+ssh://u@far/system")
    error = host_unreachable(entry, "libvirt is not reachable at qemu+ext://far/system?command=/x: Cannot recv data:"
                                    " Host key verification failed.: Connection reset by peer", tmp_path)
    assert error.message.startswith("host far (qemu+ssh://u@far/system) cannot be reached: Host key verification")
    assert error.hint and "known_hosts" in error.hint and "ssh-keygen -R" in error.hint


@pytest.mark.parametrize(("lab", "error"), [
    # The inventory's hosts are reached through libvirt's test driver, not SSH: the trainees' ports,
    # the caches and the mirrors cannot reach their machines.
    ("classroom: {seats: 8, seat: {memory: 8G}}\ncaches: false", "does not reach over SSH, and the trainees' ports"),
    ("classroom: {seats: 8, clone: false, seat: {memory: 8G}}", "does not reach over SSH, and the trainees' ports"),
    ("classroom: {seats: 2, seat: {memory: 8G, host: big}}\ncaches: false", "would live on host big, which"),
    ("caches: true\nmachines:\n  - {name: m, host: big}", "and the host's package caches (caches: true) reach"),
    ("machines:\n  - {name: ctl, role: controller, host: big}\n  - {name: cpu, role: compute, host: small}",
     "controller and its computes"),
])
def test_what_does_not_work_across_hosts_is_refused(run: Callable[..., Result], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, labctl_home: Path,
                                                        lab: str, error: str) -> None:
    write_inventory(tmp_path, monkeypatch)
    Path("lab.yaml").write_text(f"name: spread\n{lab}\n")
    result = run("plan")
    assert result.code == 2 and error in result.err and "hint:" in result.err
    assert not (labctl_home / "labs" / "spread").exists()


def test_the_transport_script_is_written_by_many_threads_at_once(tmp_path: Path) -> None:
    """Each machine's snapshot thread opens its own connection, so each may write the host's script."""
    from concurrent.futures import ThreadPoolExecutor

    entry = HostEntry("far", "qemu+ssh://u@far/system")
    with ThreadPoolExecutor(8) as pool:
        uris = set(pool.map(lambda _: libvirt_uri(entry, tmp_path / "home"), range(64)))
    assert len(uris) == 1 and sorted(p.name for p in (tmp_path / "home" / "hosts").iterdir()) == ["far.ssh"]


def test_a_host_is_reached_from_a_labctl_home_with_a_space(tmp_path: Path) -> None:
    from sshd import make_sshd

    from conftest import require_libvirt

    require_libvirt()
    sshd = make_sshd(tmp_path / "sshd").start()
    home = tmp_path / "labctl home"
    ctx = Context(LabHome(home), tmp_path / "cache", "qemu:///system")
    try:
        entry = HostEntry("far", f"qemu+ssh://{sshd.user}@127.0.0.1:{sshd.port}/system", ssh_key=sshd.client_key)
        assert ctx.host_hypervisor(entry).host_capacity().cpus >= 1
        assert "ssh-ed25519" in (home / "hosts" / "known_hosts").read_text()
    finally:
        ctx.close()
        sshd.stop()
