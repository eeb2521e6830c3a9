"""DHCP leases: the address each of a domain's cards holds now.

A card that asks DHCP again under another client id leaves its first lease behind in libvirt's lease
list until it expires (an hour on vagrant-libvirt's network): a seat made anew from its class's base
(labctl.stacking.remake) boots once from the box, then from the base with another DHCP client id,
and libvirt's own answer (virDomainInterfaceAddresses) lists the old address first, where nothing
answers any more. Only the newest lease of each card is its address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import libvirt


def newest(leases: Iterable[Mapping[str, object]]) -> str | None:
    """The IPv4 address of the lease granted last (libvirt's `DHCPLeases` entries of one card); a lease
    that never expires (expiry 0) counts as the newest. Pure."""
    best: tuple[float, str] | None = None
    for lease in leases:
        address = lease.get("ipaddr")
        if lease.get("type") != libvirt.VIR_IP_ADDR_TYPE_IPV4 or not isinstance(address, str):
            continue
        at = _expiry(lease)
        if best is None or at > best[0]:
            best = (at, address)
    return best[1] if best else None


def _expiry(lease: Mapping[str, object]) -> float:
    """When a lease expires; one that never does (0) expires last."""
    expiry = lease.get("expirytime")
    return float("inf") if not expiry else float(expiry) if isinstance(expiry, int | float) else 0.0


def _card_leases(dom: libvirt.virDomain) -> dict[str, list[Mapping[str, object]]] | None:
    """Each card's MAC -> its IPv4 DHCP leases, for cards on libvirt networks (a network gone meanwhile
    leases nothing); None when the driver cannot list a network's leases (libvirt's test driver)."""
    from labctl import isolation

    found: dict[str, list[Mapping[str, object]]] = {}
    try:
        for network, (_iface, mac) in isolation.cards(dom.XMLDesc()).items():
            try:
                leases = dom.connect().networkLookupByName(network).DHCPLeases(mac)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                    return None
                continue
            v4 = [lease for lease in leases if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4]
            if v4:
                found[mac] = v4
    except libvirt.libvirtError:
        return {}
    return found


def expiries(dom: libvirt.virDomain) -> dict[str, float] | None:
    """Each card's MAC -> when its newest DHCP lease expires (a lease granted or renewed later expires
    later; one that never expires counts as the latest), for cards with a lease; None when the driver
    cannot list a network's leases."""
    by_card = _card_leases(dom)
    return None if by_card is None else {mac: max(map(_expiry, leases)) for mac, leases in by_card.items()}


def current(dom: libvirt.virDomain) -> dict[str, str]:
    """Each card's MAC -> the address of its newest DHCP lease, for cards on libvirt networks that lease
    one. A driver that cannot list a network's leases (libvirt's test driver) gets libvirt's own
    answer per domain instead, its first address for each card."""
    by_card = _card_leases(dom)
    if by_card is None:
        return _per_domain(dom)
    return {mac: address for mac, leases in by_card.items() if (address := newest(leases))}


def _per_domain(dom: libvirt.virDomain) -> dict[str, str]:
    try:
        ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
    except libvirt.libvirtError:
        return {}
    found: dict[str, str] = {}
    for iface in ifaces.values():
        for addr in iface.get("addrs") or ():
            if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                found.setdefault(str(iface.get("hwaddr", "")).lower(), addr["addr"])
    return found
