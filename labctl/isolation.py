"""Each machine fenced in on its networks by libvirt's own packet filter (nwfilter), so that a trainee,
root in their seat, reaches nothing but their seat, the host's services meant for it, and the internet.

Why nwfilter, and not networks of their own: every lab's machines share vagrant-libvirt's management
network (Vagrant reaches them through it), and a class's seats share their lab network. Separate
networks per seat would need a bridge, a subnet and a dnsmasq per seat and per host; a filter on each
card is one definition per host, works the same on every host of a class, and is enforced by the host,
out of the guest's reach (the rules live in the host's ebtables and iptables, not in the VM).

What the filter, `labctl-fence-1`, does on each card it is put on:
- libvirt's `clean-traffic-gateway`: frames only to and from the network's gateway (the host), never
  straight to another machine, and no spoofed MAC, IP or ARP (the card's own address is given, never
  learned: a seat cannot take another seat's address and have the host send it that seat's traffic);
  `allow-dhcp-server`: DHCP's broadcast out, and answers from the host's DHCP server alone;
- of the host, only the ports meant for machines (DNS, the package caches, the git daemon; `HOST_TCP`),
  and DHCP; every other address of the host is dropped (`HOST_ADDRESS`), and so is every libvirt
  network's subnet (`LIBVIRT_NET`/`LIBVIRT_MASK`): another machine on the same network reached through
  the host (libvirt forwards from a bridge back into it), and any machine of another lab;
- everything else (the internet, through the host's NAT) is let through.

Why the other labs' networks must be in the filter: libvirt refuses to route into a NAT network, but
for a filtered card it accepts whatever the filter let through before its own refusal is reached (its
`libvirt-in-post` chain), so a fenced machine would reach every other lab's lab network, which no
filter guards (a lab that is no classroom keeps it open between its own machines). A network made
after a card was fenced is added to that card's filter by the next fence on the host (every `up`):
`refreshed_interfaces`. Machines of one lab that is no classroom talk to each other on their lab
network freely (a controller and its computes): that card is not fenced.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labctl.names import MANAGEMENT_NETWORK

FILTER = "labctl-fence-2"  # the rules' version: a new version is a new name (see fences.py)
DNS_PORT = 53

FILTER_XML = f"""<filter name='{FILTER}' chain='root'>
  <filterref filter='clean-traffic-gateway'/>
  <filterref filter='allow-dhcp-server'/>
  <rule action='accept' direction='out' priority='50'>
    <all state='ESTABLISHED,RELATED'/>
  </rule>
  <rule action='accept' direction='out' priority='100'>
    <tcp dstipaddr='$GATEWAY_IP' dstportstart='$HOST_TCP[@1]'/>
  </rule>
  <rule action='accept' direction='out' priority='100'>
    <udp dstipaddr='$GATEWAY_IP' dstportstart='{DNS_PORT}'/>
  </rule>
  <rule action='accept' direction='out' priority='100'>
    <udp srcportstart='68' dstportstart='67'/>
  </rule>
  <rule action='accept' direction='out' priority='100'>
    <icmp dstipaddr='$GATEWAY_IP'/>
  </rule>
  <rule action='drop' direction='out' priority='200'>
    <all dstipaddr='$HOST_ADDRESS'/>
  </rule>
  <rule action='drop' direction='out' priority='200'>
    <all dstipaddr='$LIBVIRT_NET[@1]' dstipmask='$LIBVIRT_MASK[@1]'/>
  </rule>
  <rule action='accept' direction='out' priority='300'>
    <all/>
  </rule>
</filter>
"""


# A card that must carry nothing at all: a seat's own lab network, where it is alone and the host has no
# address (labctl.classroom.networks). The host still answers ARP there for its addresses on its other
# networks (Linux answers for any of its addresses on any card), and takes what the seat sends them:
# every frame is dropped, both ways. The seat's address stays its own inside (DevStack talks to itself).
SEAL = "labctl-seal-1"
SEAL_XML = f"""<filter name='{SEAL}' chain='root'>
  <rule action='drop' direction='inout' priority='100'>
    <mac/>
  </rule>
</filter>
"""


@dataclass(frozen=True)
class Fence:
    """One card of one machine to fence in: the network it is on and the machine's addresses there
    (none given: the addresses libvirt's DHCP server leased to that card). `sealed`: nothing passes."""

    network: str
    ips: tuple[str, ...] = ()
    sealed: bool = False


@dataclass(frozen=True)
class Gateway:
    """The host's side of one libvirt network."""

    mac: str
    address: str
    cidr: str


def gateway(network_xml: str) -> Gateway | None:
    """The host's MAC, address and subnet on a libvirt network; None for a network without them."""
    root = ET.fromstring(network_xml)  # noqa: S314 - libvirt's own XML about its network
    mac, ip = root.find("mac"), root.find("ip")
    if mac is None or ip is None or not mac.get("address") or not ip.get("address"):
        return None
    address = str(ip.get("address"))
    prefix = ip.get("prefix") or ip.get("netmask") or "24"
    net = ipaddress.IPv4Network(f"{address}/{prefix}", strict=False)
    return Gateway(str(mac.get("address")), address, str(net))


def filterref(fence: Fence, gw: Gateway, host_addresses: Iterable[str], host_tcp: Iterable[int],
              networks: Iterable[str]) -> ET.Element:
    """The <filterref> for one card: its own address, its gateway, the host's addresses and ports, and
    the subnet of every libvirt network on the host (its own among them)."""
    ref = ET.Element("filterref", {"filter": FILTER})
    params: list[tuple[str, str]] = [("IP", ip) for ip in fence.ips]
    params += [("GATEWAY_MAC", gw.mac), ("GATEWAY_IP", gw.address), ("DHCPSERVER", gw.address)]
    params += [("HOST_TCP", str(p)) for p in sorted(set(host_tcp) | {DNS_PORT})]
    params += _host_params(host_addresses, [gw.address], networks)
    for name, value in params:
        ET.SubElement(ref, "parameter", {"name": name, "value": value})
    return ref


# What a card's filter says of the host as a whole: it changes when a network comes or goes.
HOST_PARAMS = ("HOST_ADDRESS", "LIBVIRT_NET", "LIBVIRT_MASK")


def _host_params(host_addresses: Iterable[str], gateway_addresses: Iterable[str],
                 networks: Iterable[str]) -> list[tuple[str, str]]:
    """The host's addresses, and every libvirt network's subnet as two lists walked side by side
    (nwfilter's `$LIBVIRT_NET[@1]` with `$LIBVIRT_MASK[@1]`: one rule per network)."""
    nets = sorted({ipaddress.IPv4Network(n) for n in networks})
    return [*(("HOST_ADDRESS", a) for a in sorted(set(host_addresses) | set(gateway_addresses))),
            *(("LIBVIRT_NET", str(n.network_address)) for n in nets),
            *(("LIBVIRT_MASK", str(n.prefixlen)) for n in nets)]


def cards(domain_xml: str) -> dict[str, tuple[ET.Element, str]]:
    """The domain's cards on libvirt networks: network name -> (its <interface>, its MAC)."""
    root = ET.fromstring(domain_xml)  # noqa: S314 - libvirt's own XML about its domain
    found = {}
    for iface in root.iterfind("devices/interface"):
        source, mac = iface.find("source"), iface.find("mac")
        if source is not None and source.get("network") and mac is not None:
            found[str(source.get("network"))] = (iface, str(mac.get("address", "")).lower())
    return found


def fenced_interfaces(domain_xml: str, fences: Sequence[Fence], gateways: dict[str, Gateway],
                      host_addresses: Iterable[str], host_tcp: Iterable[int]) -> list[str]:
    """The domain's cards on the fenced networks, each with its filter (replacing any other): the XML
    to give libvirt's update-device. A card without an address to hold it to, or a fenced network the
    domain has no card on, is an error: an unfenced card is never taken for a fenced one."""
    by_network = cards(domain_xml)
    out = []
    addresses = list(host_addresses)
    for fence in fences:
        if fence.network not in by_network:
            raise ValueError(f"no card on network {fence.network}")
        if fence.sealed:
            iface = by_network[fence.network][0]
            for old in iface.findall("filterref"):
                iface.remove(old)
            ET.SubElement(iface, "filterref", {"filter": SEAL})
            out.append(ET.tostring(iface, encoding="unicode"))
            continue
        if not fence.ips:
            raise ValueError(f"no address for the card on network {fence.network}")
        if fence.network not in gateways:
            raise ValueError(f"network {fence.network} has no address and MAC of the host's to hold the card to")
        iface = by_network[fence.network][0]
        for old in iface.findall("filterref"):
            iface.remove(old)
        iface.append(filterref(fence, gateways[fence.network], addresses, host_tcp,
                               [g.cidr for g in gateways.values()]))
        out.append(ET.tostring(iface, encoding="unicode"))
    return out


def refreshed_interfaces(domain_xml: str, gateways: dict[str, Gateway], host_addresses: Iterable[str]) -> list[str]:
    """The domain's fenced cards whose view of the host is out of date, brought up to date: the XML to
    give libvirt's update-device (nothing when all are current). A card fenced before another lab's
    network existed would reach that lab's machines: libvirt accepts what a card's filter let through
    and never applies its own refusal to route into a NAT network (its `libvirt-in-post` chain)."""
    out = []
    addresses = list(host_addresses)
    for network, (iface, _mac) in cards(domain_xml).items():
        ref = iface.find("filterref")
        if ref is None or ref.get("filter") != FILTER or network not in gateways:
            continue
        before = [(str(p.get("name")), str(p.get("value"))) for p in ref.iterfind("parameter")]
        kept = [(n, v) for n, v in before if n not in HOST_PARAMS]
        wanted = kept + _host_params(addresses, [gateways[network].address], [g.cidr for g in gateways.values()])
        if wanted == before:
            continue
        for old in list(ref):
            ref.remove(old)
        for name, value in wanted:
            ET.SubElement(ref, "parameter", {"name": name, "value": value})
        out.append(ET.tostring(iface, encoding="unicode"))
    return out


def is_fenced(domain_xml: str, network: str) -> bool:
    """Whether the domain's card on `network` carries labctl's filter."""
    card = cards(domain_xml).get(network)
    ref = card[0].find("filterref") if card else None
    return ref is not None and ref.get("filter") == FILTER


def refenced(domain_xml: str, network: str, fenced_card: ET.Element) -> str:
    """The domain's card on `network` with the filter another version of it carried."""
    iface = cards(domain_xml)[network][0]
    for old in iface.findall("filterref"):
        iface.remove(old)
    ref = fenced_card.find("filterref")
    assert ref is not None
    iface.append(ref)
    return ET.tostring(iface, encoding="unicode")


def fences_for(lab_card: bool, network: str, lab_ip: str, alone: bool = False) -> list[Fence]:
    """A machine's cards to fence: the management card always (held to its DHCP leases), and, when
    `lab_card`, its card on its lab network `network` too (held to its address there): a classroom
    seat's, on a network it shares. A lab that is no classroom keeps its lab network open between its
    own machines (a controller and its computes). A seat `alone` on a network of its own with no address
    of the host (labctl.classroom.networks) has that card sealed: nothing passes it."""
    if alone:
        return [Fence(MANAGEMENT_NETWORK), Fence(network, sealed=True)]
    return [Fence(MANAGEMENT_NETWORK), *([Fence(network, (lab_ip,))] if lab_card else [])]


def host_ports(git_port: int, cache_ports: Iterable[int]) -> list[int]:
    """The host's TCP ports a machine may open: DNS, the git daemon and the package caches."""
    return sorted({DNS_PORT, git_port, *cache_ports})
