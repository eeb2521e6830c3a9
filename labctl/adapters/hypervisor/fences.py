"""Fences: labctl's network filter on a machine's cards (labctl.isolation says why and what passes)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import libvirt

from labctl.adapters.hypervisor import leases
from labctl.adapters.hypervisor.connection import Connected, is_local, libvirt_errors
from labctl.errors import LabctlError
from labctl.host import local_ipv4

if TYPE_CHECKING:
    from labctl import isolation


class NotFenced(LabctlError):
    """A machine's card could not be fenced in (labctl.isolation): the machine is not handed out."""


class Fences(Connected):
    @libvirt_errors
    def fence(self, domain: str, fences: list[isolation.Fence], host_tcp: list[int]) -> None:
        """Put labctl's filter on the domain's cards (running and as defined). A card without its own
        address (`Fence.ips`) is held to its DHCP leases. The host's addresses dropped: its side of every
        libvirt network, and all of its own when it is this machine (libvirt does not say a remote host's)."""
        from labctl import isolation  # here: `labctl status` fences nothing

        # Defined once per host: the name carries the rules' version, and redefining a filter makes
        # libvirt rebuild the rules of every card using it (each seat's up would churn every other seat).
        for name, xml in ((isolation.FILTER, isolation.FILTER_XML), (isolation.SEAL, isolation.SEAL_XML)):
            try:
                self.conn.nwfilterLookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_NWFILTER:
                    raise
                self.conn.nwfilterDefineXML(xml)
        gateways = self._gateways()
        dom = self._domain(domain)
        held = [f if f.ips or f.sealed else isolation.Fence(f.network, _leased(dom, f.network)) for f in fences]
        addresses = [*(local_ipv4() if is_local(self.conn.getURI()) else []), *(g.address for g in gateways.values())]
        try:
            if dom.isActive():
                for xml in isolation.fenced_interfaces(dom.XMLDesc(), held, gateways, addresses, host_tcp):
                    dom.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            if dom.isPersistent():
                inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                for xml in isolation.fenced_interfaces(inactive, held, gateways, addresses, host_tcp):
                    dom.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        except ValueError as exc:
            raise NotFenced(f"{domain}: {exc}", hint=f"virsh domiflist {domain}; labctl status shows its addresses;"
                            " a machine whose card cannot be fenced is not handed out") from None
        self._refresh(gateways, addresses)

    @libvirt_errors
    def refresh_fences(self) -> None:
        """Every fenced card on this host learns of the networks made since it was fenced (another lab's);
        fence() does it for every other card each time it fences one."""
        gateways = self._gateways()
        self._refresh(gateways, [*(local_ipv4() if is_local(self.conn.getURI()) else []),
                                 *(g.address for g in gateways.values())])

    def _gateways(self) -> dict[str, isolation.Gateway]:
        from labctl import isolation

        gateways = {}
        for net in self.conn.listAllNetworks():
            gw = isolation.gateway(net.XMLDesc())
            if gw is not None:
                gateways[net.name()] = gw
        return gateways

    def _refresh(self, gateways: dict[str, isolation.Gateway], addresses: list[str]) -> None:
        from labctl import isolation

        for dom in self.conn.listAllDomains():
            with contextlib.suppress(libvirt.libvirtError):  # a domain gone meanwhile has nothing to refresh
                if dom.isActive():
                    for xml in isolation.refreshed_interfaces(dom.XMLDesc(), gateways, addresses):
                        dom.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                if dom.isPersistent():
                    inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                    for xml in isolation.refreshed_interfaces(inactive, gateways, addresses):
                        dom.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def _leased(dom: libvirt.virDomain, network: str) -> tuple[str, ...]:
    """The IPv4 address libvirt's DHCP server leased last to the domain's card on `network`."""
    from labctl import isolation

    card = isolation.cards(dom.XMLDesc()).get(network)
    address = leases.current(dom).get(card[1]) if card is not None else None
    return (address,) if address else ()
