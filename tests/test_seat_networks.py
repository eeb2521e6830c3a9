"""Seats on networks of their own (classroom.seat_networks, labctl.classroom.networks), without VMs: when
`plan` turns them on, what the Vagrantfile asks of vagrant-libvirt (checked by the real `vagrant
validate`), where the trainees' ports lead, what is fenced, what destroy removes (libvirt's test
driver), and what is refused. The seats themselves, booted and cloned: tests/test_seat_networks_vm.py."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Result, require_tool
from labctl.adapters import hypervisor
from labctl.adapters.hypervisor import Hypervisor
from labctl.adapters.vagrant import VagrantDriver
from labctl.catalog import Catalog
from labctl.classroom import access, networks
from labctl.errors import LabFileError
from labctl.isolation import SEAL, SEAL_XML, Fence, fenced_interfaces, fences_for
from labctl.labfile import lab_from_dict
from labctl.names import network_name, seat_network_name
from labctl.records import classroom_from_json, classroom_json
from labctl.state import LabDir, LabHome

COMPUTE = "key,mysql,rabbit,n-api,n-cpu,n-cond,n-sch,placement-api,g-api,ovn-controller,ovn-northd,q-svc"


def class_raw(services: str | None = COMPUTE, **classroom: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": "nova-class", "defaults": {"memory": "1G", "cpus": 1, "disk": "10G"},
                           "network": {"cidr": "192.168.79.0/24"}, "classroom": {"seats": 3, **classroom}}
    if services is not None:
        raw["devstack"] = {"localrc": {"ENABLED_SERVICES": services}}
    return raw


def write(folder: Path, raw: dict[str, Any]) -> None:
    (folder / "lab.yaml").write_text(yaml.safe_dump(raw))


# ---------------------------------------------------------------------------------------------
# The decision


@pytest.mark.parametrize(("services", "asked", "seats", "clone", "expected"), [
    (["key", "mysql", "n-cpu", "q-svc"], None, 3, True, True),      # Nova and Neutron remember their host
    (["key", "mysql", "ovn-controller"], None, 2, True, True),
    (["key", "mysql", "rabbit", "horizon"], None, 3, True, False),  # keystone-only: renamed as before
    (["key", "n-cpu"], None, 1, True, False),                       # one seat: nothing is copied
    (["key", "n-cpu"], None, 3, False, False),                      # every seat stacks as itself
    (["key", "n-cpu"], False, 3, True, False),                      # the lab decides
    (["key", "mysql"], True, 3, True, True),
])
def test_plan_decides_from_what_the_seat_runs(catalog: Catalog, services: list[str], asked: bool | None, seats: int,
                                              clone: bool, expected: bool) -> None:
    extra = {} if asked is None else {"seat_networks": asked}
    lab = lab_from_dict(class_raw(None, seats=seats, clone=clone, **extra), catalog)
    decided, note = networks.decide(lab, services)
    assert decided.classroom is not None and decided.classroom.seat_networks is expected
    ips = {m.ip for m in decided.machines}
    if expected:  # every seat at seat-01's address, and the plan says why
        assert ips == {"192.168.79.10"} and note and "seat-01's name (nova-class)" in note
    else:
        assert len(ips) == seats and note is None


def test_lab_yaml_refuses_what_cannot_work(catalog: Catalog) -> None:
    with pytest.raises(LabFileError) as err:
        lab_from_dict(class_raw(seat_networks=True, clone=False), catalog)
    assert "classroom.clone is false" in err.value.message and err.value.hint
    with pytest.raises(LabFileError) as err:
        lab_from_dict(class_raw(seat_networks="yes"), catalog)
    assert "seat_networks" in err.value.message


def test_the_decision_is_recorded(catalog: Catalog) -> None:
    lab, _ = networks.decide(lab_from_dict(class_raw(), catalog), ["n-cpu"])
    assert lab.classroom is not None
    again = classroom_from_json(json.loads(json.dumps(classroom_json(lab.classroom))))
    assert again is not None and again.seat_networks is True
    old = classroom_json(lab.classroom)
    del old["seat_networks"]  # a record written before seat networks existed
    older = classroom_from_json(old)
    assert older is not None and older.seat_networks is None and not networks.on(older)


def test_a_name_of_a_seats_network_is_no_labs_network() -> None:
    # lab "a" seat-02's network can never be lab "a-seat-02"'s, nor a seat's of lab "a-b".
    assert seat_network_name("a", "seat-02") == "labctl-a_seat-02" != network_name("a-seat-02")
    assert not seat_network_name("a-b", "seat-02").startswith(network_name("a") + "_")


# ---------------------------------------------------------------------------------------------
# plan: the Vagrantfile, the records, the ports


def test_plan_puts_every_copy_on_a_network_of_its_own(run: Callable[..., Result], isolated_home: Path,
                                                       labctl_home: Path, tmp_path: Path) -> None:
    write(isolated_home, class_raw())
    planned = run("plan")
    assert planned.code == 0, planned.err
    assert "every seat keeps seat-01's name (nova-class) and address (192.168.79.10)" in planned.out + planned.err
    lab_dir = LabHome(labctl_home).lab("nova-class").path
    vagrantfile = (lab_dir / "Vagrantfile").read_text()
    blocks = dict(re.findall(r"config\.vm\.define '(seat-0\d)' do \|node\|(.*?)\n  end\n", vagrantfile, re.S))
    assert sorted(blocks) == ["seat-01", "seat-02", "seat-03"]
    for seat, block in blocks.items():
        assert "node.vm.hostname = 'nova-class'" in block and "ip: '192.168.79.10'" in block
        if seat == "seat-01":  # on the lab's network, where the host serves the mirrors it clones
            assert "libvirt__network_name: 'labctl-nova-class'," in block and "veryisolated" not in block
        else:
            assert f"libvirt__network_name: 'labctl-nova-class_{seat}'," in block
            assert "libvirt__forward_mode: 'veryisolated'" in block
    # The real vagrant-libvirt reads it.
    require_tool("vagrant")
    (tmp_path / "Vagrantfile").write_text(vagrantfile)
    VagrantDriver(tmp_path, tmp_path / "vagrant.log", "test:///default").validate(tmp_path)
    record = json.loads((lab_dir / "lab.json").read_text())
    assert record["classroom"]["seat_networks"] is True
    assert {m["ip"] for m in record["machines"]} == {"192.168.79.10"}
    # Every local.conf gives DevStack the template's address.
    for n in (1, 2, 3):
        assert "HOST_IP=192.168.79.10" in (lab_dir / "machines" / f"seat-0{n}" / "local.conf").read_text()
    # No seat is running: no port leads anywhere yet (never to seat-01's lab address).
    data = json.loads(run("access", "status", "--json").out)
    assert [s["seat_address"] for s in data["seats"]] == ["", "", ""]
    assert "(no address yet: the seat is not running)" in run("access", "status").out


def test_keystone_only_seats_keep_addresses_of_their_own(run: Callable[..., Result], isolated_home: Path,
                                                         labctl_home: Path) -> None:
    write(isolated_home, class_raw("key,mysql,rabbit"))
    planned = run("plan")
    assert planned.code == 0, planned.err
    vagrantfile = LabHome(labctl_home).lab("nova-class").vagrantfile.read_text()
    assert "veryisolated" not in vagrantfile and "node.vm.hostname = 'seat-02'" in vagrantfile
    assert "ip: '192.168.79.11'" in vagrantfile


def test_the_decision_never_changes_under_seats_that_exist(run: Callable[..., Result], isolated_home: Path,
                                                           labctl_home: Path) -> None:
    write(isolated_home, class_raw())
    assert run("plan").code == 0
    lab_dir = LabHome(labctl_home).lab("nova-class").path
    (lab_dir / ".vagrant").mkdir()  # vagrant made its machines
    vagrantfile = (lab_dir / "Vagrantfile").read_text()
    write(isolated_home, class_raw("key,mysql"))
    refused = run("plan")
    assert refused.code != 0 and "are on networks of their own" in refused.err
    assert "seat_networks: true" in refused.err and "labctl destroy --lab nova-class" in refused.err
    assert (lab_dir / "Vagrantfile").read_text() == vagrantfile  # nothing rewritten
    write(isolated_home, class_raw("key,mysql", seat_networks=True))
    assert run("plan").code == 0


def test_the_ports_lead_to_each_seats_management_address(catalog: Catalog, tmp_path: Path) -> None:
    from labctl import records

    lab, _ = networks.decide(lab_from_dict(class_raw(), catalog), ["n-cpu"])
    assert lab.classroom is not None
    lab_dir = LabDir("nova-class", tmp_path / "nova-class")
    lab_dir.create()
    records.write_lab(lab_dir, records.LabRecord(
        lab.name, None, "test", lab.cidr,
        tuple(records.MachineRecord(m.name, m.role, m.ip, m.release.ref, m.box, m.release.user, m.memory_mb,
                                    m.cpus, m.disk_gb) for m in lab.machines), {}, lab.classroom))
    reached = {"seat-01": "192.168.121.40", "seat-03": "192.168.121.42"}
    doors = access.doors(lab_dir, lab.classroom, reached)
    assert [(d.seat, d.seat_address) for d in doors] == [
        ("seat-01", "192.168.121.40"), ("seat-02", ""), ("seat-03", "192.168.121.42")]
    routes = access.routes(lab.classroom, doors)
    assert [r[2] for r in routes] == ["192.168.121.40"] * 2 + ["192.168.121.42"] * 2  # seat-02: none yet


DOMAIN_XML = """<domain><devices>
  <interface type='network'><mac address='52:54:00:00:00:01'/><source network='vagrant-libvirt'/></interface>
  <interface type='network'><mac address='52:54:00:00:00:02'/><source network='labctl-nova-class_seat-02'/>
    <filterref filter='labctl-fence-2'><parameter name='IP' value='192.168.79.10'/></filterref></interface>
</devices></domain>"""


def test_a_seat_alone_on_its_network_has_that_card_sealed(catalog: Catalog) -> None:
    """The host has no address on a seat's own network, yet Linux answers ARP there for its addresses on
    its other networks and takes what the seat sends them (found by the VM test): nothing passes that card."""
    lab, _ = networks.decide(lab_from_dict(class_raw(), catalog), ["n-cpu"])
    cls = lab.classroom
    # What fencing.fence_machines asks for each seat.
    asked = {s: fences_for(True, networks.network_of(lab.name, cls, s), "192.168.79.10", networks.isolated(cls, s))
             for s in ("seat-01", "seat-02")}
    assert asked == {"seat-01": [Fence("vagrant-libvirt"), Fence("labctl-nova-class", ("192.168.79.10",))],
                     "seat-02": [Fence("vagrant-libvirt"), Fence("labctl-nova-class_seat-02", sealed=True)]}
    # The card's XML: the seal alone (whatever filter it had), no gateway of the host's needed.
    [card] = fenced_interfaces(DOMAIN_XML, [Fence("labctl-nova-class_seat-02", sealed=True)], {}, [], [])
    refs = ET.fromstring(card).findall("filterref")  # noqa: S314 - our own XML
    assert [(r.get("filter"), list(r)) for r in refs] == [(SEAL, [])]
    rule = ET.fromstring(SEAL_XML).find("rule")  # noqa: S314 - labctl's own XML
    assert rule is not None and (rule.get("action"), rule.get("direction")) == ("drop", "inout")
    assert [c.tag for c in rule] == ["mac"] and not rule[0].attrib  # every frame, whatever it carries


# ---------------------------------------------------------------------------------------------
# destroy


NET_XML = "<network><name>{name}</name><bridge name='virbr{n}'/>{ip}</network>"


def test_destroy_removes_the_seats_networks_and_no_other(tmp_path: Path) -> None:
    node = tmp_path / "node.xml"
    node.write_text("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>"
                    "<mhz>2000</mhz></cpu><memory>4194304</memory></node>")
    conn = hypervisor.connect(f"test://{node}")
    try:
        for n, name in enumerate(("labctl-c", "labctl-c_seat-02", "labctl-c_seat-03", "labctl-c-b_seat-02",
                                  "labctl-cc", "labctl-c-seat-02"), start=10):
            ip = f"<ip address='10.9.{n}.1' netmask='255.255.255.0'/>" if "_" not in name else ""
            conn.networkCreateXML(NET_XML.format(name=name, n=n, ip=ip))
        removed = Hypervisor(conn=conn).remove_leftovers([], "labctl-c")
        assert sorted(removed) == ["network labctl-c", "network labctl-c_seat-02", "network labctl-c_seat-03"]
        assert sorted(n.name() for n in conn.listAllNetworks()) == [
            "labctl-c-b_seat-02", "labctl-c-seat-02", "labctl-cc"]
    finally:
        conn.close()


def test_each_seat_gets_back_its_own_machine_id(tmp_path: Path) -> None:
    """A seat made later from the class's base boots with seat-01's machine-id: the copy script gives
    it back the one read from it before its disk was replaced, by seat (the start-up unit's view is by
    card). An SSH session stands in for the seats' (sshd itself is tested in test_ssh*.py): what is
    tested is how their answers are read."""
    import contextlib

    from labctl.machine_status import MachineStatus
    from labctl.stacking.identity import _identities, machine_ids_of
    from labctl.state import LabHome

    answers = {"192.168.121.7": "0123456789abcdef0123456789abcdef\n52:54:00:00:00:07\n52:54:00:00:01:07\n",
               "192.168.121.8": "fedcba9876543210fedcba9876543210\n52:54:00:00:00:08\n"}

    class Session:
        def __init__(self, address: str) -> None:
            self.address = address

        def run(self, command: str, what: str) -> tuple[int, str]:
            assert command == "cat /etc/machine-id /sys/class/net/*/address"
            return 0, answers[self.address]

    class Ssh:
        @contextlib.contextmanager
        def session(self, target):  # type: ignore[no-untyped-def]
            yield Session(target.address)

    def status(name: str, address: str | None) -> MachineStatus:
        return MachineStatus(name=name, role="allinone", lab_ip="10.0.0.1", domain=f"labctl-c-{name}",
                             state="running" if address else "shutoff", addresses=(address,) if address else (),
                             memory_mb=None, vcpus=None, uptime_s=None, user="vagrant")

    lab_dir = LabHome(tmp_path).lab("c")
    statuses = [status("seat-04", "192.168.121.7"), status("seat-05", "192.168.121.8"), status("seat-06", None)]
    names = ["seat-04", "seat-05", "seat-06"]
    assert machine_ids_of(Ssh(), lab_dir, statuses, names) == {  # type: ignore[arg-type]
        "seat-04": "0123456789abcdef0123456789abcdef", "seat-05": "fedcba9876543210fedcba9876543210"}
    assert _identities(Ssh(), lab_dir, statuses, names) == {  # type: ignore[arg-type]
        "52:54:00:00:00:07": "0123456789abcdef0123456789abcdef",
        "52:54:00:00:01:07": "0123456789abcdef0123456789abcdef",
        "52:54:00:00:00:08": "fedcba9876543210fedcba9876543210"}
