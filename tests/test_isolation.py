"""The filter that fences each machine in (labctl.isolation), as XML: what each card is held to, and
what labctl refuses to do half. The filter at work, on real VMs and real libvirt, is in
tests/test_clone_vm.py (a seat probing another seat and the host as root)."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import require_libvirt
from labctl import isolation
from labctl.host import local_addresses_of
from labctl.isolation import Fence, Gateway

NETWORK_XML = """<network><name>vagrant-libvirt</name><forward mode='nat'/>
  <bridge name='virbr1'/><mac address='52:54:00:bd:d4:23'/>
  <ip address='192.168.121.1' netmask='255.255.255.0'><dhcp><range start='192.168.121.2'
  end='192.168.121.254'/></dhcp></ip></network>"""

DOMAIN_XML = """<domain type='qemu'><name>labctl-x-seat-02</name><devices>
  <interface type='network'><mac address='52:54:00:AA:00:01'/><source network='vagrant-libvirt'/>
    <target dev='vnet4'/><model type='virtio'/><filterref filter='clean-traffic'/></interface>
  <interface type='network'><mac address='52:54:00:aa:00:02'/><source network='labctl-x'/>
    <model type='virtio'/></interface>
  <interface type='bridge'><mac address='52:54:00:aa:00:03'/><source bridge='br0'/></interface>
</devices></domain>"""

GATEWAYS = {"vagrant-libvirt": Gateway("52:54:00:bd:d4:23", "192.168.121.1", "192.168.121.0/24"),
            "labctl-x": Gateway("52:54:00:18:3d:85", "192.168.145.1", "192.168.145.0/24")}


def params(xml: str) -> list[tuple[str, str]]:
    ref = ET.fromstring(xml).find("filterref")  # noqa: S314 - the test's own XML
    assert ref is not None and ref.get("filter") == isolation.FILTER
    return [(str(p.get("name")), str(p.get("value"))) for p in ref.iterfind("parameter")]


def test_a_network_s_gateway_is_read_from_libvirt_s_xml() -> None:
    assert isolation.gateway(NETWORK_XML) == GATEWAYS["vagrant-libvirt"]
    prefixed = "<network><mac address='52:54:00:00:00:09'/><ip address='10.9.8.1' prefix='28'/></network>"
    assert isolation.gateway(prefixed) == Gateway("52:54:00:00:00:09", "10.9.8.1", "10.9.8.0/28")
    # A network with no host side (no address, no MAC) cannot hold a card to its gateway.
    assert isolation.gateway("<network><name>n</name><bridge name='br0'/></network>") is None


def test_each_card_is_held_to_its_own_address_its_gateway_and_the_host_s_ports() -> None:
    fences = [Fence("vagrant-libvirt", ("192.168.121.40",)), Fence("labctl-x", ("192.168.145.12",))]
    mgmt, lab = isolation.fenced_interfaces(DOMAIN_XML, fences, GATEWAYS, ["192.0.2.2", "192.168.121.1"],
                                            [9418, 3148, 3149])
    assert params(mgmt) == [
        ("IP", "192.168.121.40"), ("GATEWAY_MAC", "52:54:00:bd:d4:23"), ("GATEWAY_IP", "192.168.121.1"),
        ("DHCPSERVER", "192.168.121.1"),
        ("HOST_TCP", "53"), ("HOST_TCP", "3148"), ("HOST_TCP", "3149"), ("HOST_TCP", "9418"),
        ("HOST_ADDRESS", "192.0.2.2"), ("HOST_ADDRESS", "192.168.121.1"),
        # Every libvirt network's subnet, its own included, as two lists walked side by side.
        ("LIBVIRT_NET", "192.168.121.0"), ("LIBVIRT_NET", "192.168.145.0"),
        ("LIBVIRT_MASK", "24"), ("LIBVIRT_MASK", "24")]
    # The card's other filter is replaced, never stacked beside labctl's (libvirt takes one).
    assert mgmt.count("<filterref") == 1 and "clean-traffic'" not in mgmt and "<target dev=\"vnet4\"" in mgmt
    assert ("IP", "192.168.145.12") in params(lab) and ("GATEWAY_IP", "192.168.145.1") in params(lab)
    # The gateway's own address is always among the host's addresses dropped beyond the allowed ports.
    assert ("HOST_ADDRESS", "192.168.145.1") in params(lab)


def test_a_card_never_goes_unfenced_quietly() -> None:
    with pytest.raises(ValueError, match="no card on network labctl-other"):
        isolation.fenced_interfaces(DOMAIN_XML, [Fence("labctl-other", ("10.0.0.2",))], GATEWAYS, [], [])
    with pytest.raises(ValueError, match="no address for the card on network vagrant-libvirt"):
        isolation.fenced_interfaces(DOMAIN_XML, [Fence("vagrant-libvirt")], GATEWAYS, [], [])


def test_what_is_fenced_is_read_back() -> None:
    (mgmt,) = isolation.fenced_interfaces(DOMAIN_XML, [Fence("vagrant-libvirt", ("192.168.121.40",))],
                                          GATEWAYS, [], [])
    domain = DOMAIN_XML.replace(DOMAIN_XML[DOMAIN_XML.index("<interface"):DOMAIN_XML.index("</interface>") + 12],
                                mgmt)
    assert isolation.is_fenced(domain, "vagrant-libvirt")
    assert not isolation.is_fenced(DOMAIN_XML, "vagrant-libvirt")  # libvirt's clean-traffic is not labctl's
    assert not isolation.is_fenced(domain, "labctl-x") and not isolation.is_fenced(domain, "nowhere")
    assert isolation.cards(DOMAIN_XML)["vagrant-libvirt"][1] == "52:54:00:aa:00:01"  # MACs compared lowercase


def test_a_network_made_later_reaches_the_filter_of_every_card_fenced_before() -> None:
    """Another lab's network, made after a seat was fenced: the seat's cards learn of it (libvirt
    accepts what a card's filter lets through, so a subnet missing there is a way into that lab)."""
    fences = [Fence("vagrant-libvirt", ("192.168.121.40",)), Fence("labctl-x", ("192.168.145.12",))]
    # The domain as libvirt holds it once its cards are fenced (what update-device did).
    domain = ET.fromstring(DOMAIN_XML)  # noqa: S314 - the test's own XML
    devices = domain.find("devices")
    assert devices is not None
    for xml in isolation.fenced_interfaces(DOMAIN_XML, fences, GATEWAYS, ["192.0.2.2"], [9418]):
        card = ET.fromstring(xml)  # noqa: S314 - labctl's own XML
        mac = card.find("mac").get("address")  # type: ignore[union-attr]
        old = next(i for i in devices.iterfind("interface") if i.find("mac").get("address") == mac)  # type: ignore[union-attr]
        devices.insert(list(devices).index(old), card)
        devices.remove(old)
    fenced = ET.tostring(domain, encoding="unicode")
    assert isolation.refreshed_interfaces(fenced, GATEWAYS, ["192.0.2.2"]) == []  # nothing new: nothing to do
    later = {**GATEWAYS, "labctl-y": Gateway("52:54:00:77:00:01", "10.20.0.1", "10.20.0.0/16")}
    mgmt, lab = isolation.refreshed_interfaces(fenced, later, ["192.0.2.2"])
    for card, own in ((mgmt, "192.168.121.40"), (lab, "192.168.145.12")):
        got = params(card)
        assert [v for n, v in got if n == "LIBVIRT_NET"] == ["10.20.0.0", "192.168.121.0", "192.168.145.0"]
        assert [v for n, v in got if n == "LIBVIRT_MASK"] == ["16", "24", "24"]
        assert ("IP", own) in got and ("HOST_TCP", "9418") in got  # what is the card's own is kept
    # The card on the bridge carries no filter of labctl's: left alone.
    assert all("br0" not in xml for xml in (mgmt, lab))


def test_a_seat_is_fenced_on_both_networks_a_lab_machine_on_the_management_one() -> None:
    assert isolation.fences_for(True, "labctl-x", "192.168.145.12") == [
        Fence("vagrant-libvirt"), Fence("labctl-x", ("192.168.145.12",))]
    # A controller and its computes talk on their lab network: only the network all labs share is fenced.
    assert isolation.fences_for(False, "labctl-x", "192.168.145.12") == [Fence("vagrant-libvirt")]
    assert isolation.host_ports(9418, [3149, 3148, 9418]) == [53, 3148, 3149, 9418]


def test_the_filter_definition_is_well_formed() -> None:
    root = ET.fromstring(isolation.FILTER_XML)  # noqa: S314 - labctl's own XML
    assert root.get("name") == isolation.FILTER and root.find("filterref") is not None


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
              |-- 192.0.2.0
                 /24 link UNICAST
              |-- 192.0.2.2
                 /32 host LOCAL
           |-- 192.0.2.255
              /32 link BROADCAST
              |-- 192.168.121.1
                 /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
              |-- 192.0.2.2
                 /32 host LOCAL
"""


def test_the_host_s_own_addresses_come_from_the_kernel_s_table() -> None:
    assert local_addresses_of(FIB_TRIE) == ["192.0.2.2", "192.168.121.1"]
    assert local_addresses_of("") == []


@pytest.mark.vm
def test_the_host_holds_the_fence_and_an_older_snapshot_keeps_it(tmp_path: Path) -> None:
    """Real libvirtd: a machine with a tiny disk and no system (nothing to wait for) is fenced; the
    host's own ebtables and iptables hold the rules; restoring a snapshot taken before it was fenced
    leaves it fenced."""
    require_libvirt()
    import libvirt

    from labctl.adapters.hypervisor import Hypervisor
    from labctl.names import MANAGEMENT_NETWORK

    hypervisor = Hypervisor.open()
    conn = hypervisor.conn
    hypervisor.management_address()  # the management network, made as labctl makes it
    name = f"labctl-fence-{uuid.uuid4().hex[:6]}-m"
    disk = Path("/var/tmp") / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    dom = conn.defineXML(f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
      <os><type arch='x86_64'>hvm</type></os><devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
        <target dev='vda' bus='virtio'/></disk>
      <interface type='network'><source network='{MANAGEMENT_NETWORK}'/><model type='virtio'/></interface>
      </devices></domain>""")
    try:
        dom.create()
        dom.snapshotCreateXML("<domainsnapshot><name>before</name></domainsnapshot>", 0)
        hypervisor.fence(name, [Fence(MANAGEMENT_NETWORK, ("192.168.121.250",))], [3148])
        live = dom.XMLDesc()
        assert isolation.is_fenced(live, MANAGEMENT_NETWORK)
        assert isolation.is_fenced(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), MANAGEMENT_NETWORK)
        vnet = str(ET.fromstring(live).find("devices/interface/target").get("dev"))  # type: ignore[union-attr]  # noqa: S314
        rules = subprocess.run(["iptables", "-S", f"FI-{vnet}"], capture_output=True, text=True, check=True).stdout
        assert "-d 192.168.121.1/32 -p tcp -m tcp --dport 3148" in rules  # the cache port, and only to the host
        assert "-d 192.168.121.0/24 -j DROP" in rules and "-d 192.168.121.1/32 -j DROP" in rules
        frames = subprocess.run(["ebtables", "-t", "nat", "-L", f"libvirt-O-{vnet}"], capture_output=True,
                                text=True, check=True).stdout
        gw = isolation.gateway(conn.networkLookupByName(MANAGEMENT_NETWORK).XMLDesc())
        assert gw is not None and f"-s {gw.mac} -j ACCEPT" in frames and frames.rstrip().endswith("-j DROP")
        # Another lab's network, made after the machine was fenced: libvirt would let the machine into it
        # (it accepts what the card's filter passed), so the next fence on the host adds it to the filter.
        later = f"labctl-fence-net-{uuid.uuid4().hex[:4]}"
        subnet = f"10.250.{uuid.uuid4().int % 250 + 1}"
        assert f"-d {subnet}.0/24 -j DROP" not in rules
        net = conn.networkDefineXML(f"<network><name>{later}</name><forward mode='nat'/>"
                                    f"<ip address='{subnet}.1' netmask='255.255.255.0'/></network>")
        net.create()
        hypervisor.refresh_fences()
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):  # running, and as it will start next time
            card = isolation.cards(dom.XMLDesc(flags))[MANAGEMENT_NETWORK][0]
            assert ("LIBVIRT_NET", f"{subnet}.0") in params(ET.tostring(card, encoding="unicode"))
        rules = subprocess.run(["iptables", "-S", f"FI-{vnet}"], capture_output=True, text=True, check=True).stdout
        assert f"-d {subnet}.0/24 -j DROP" in rules and "-d 192.168.121.0/24 -j DROP" in rules
        hypervisor.revert_snapshot(name, "before")  # a snapshot of the card without its filter
        assert isolation.is_fenced(dom.XMLDesc(), MANAGEMENT_NETWORK)
        assert isolation.is_fenced(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), MANAGEMENT_NETWORK)
    finally:
        hypervisor.remove_leftovers([name], f"labctl-fence-none-{uuid.uuid4().hex[:4]}")
        with contextlib.suppress(libvirt.libvirtError, NameError):
            gone = conn.networkLookupByName(later)
            gone.destroy()
            gone.undefine()
        hypervisor.close()
        disk.unlink(missing_ok=True)
