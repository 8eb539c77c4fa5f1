"""Which addresses the image fetcher may connect to, and how it resolves a host name."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

import trio

__all__ = ["AddressCheck", "IPAddress", "Resolver", "forbidden_reason", "resolve_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
AddressCheck = Callable[[IPAddress], str | None]

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 or NAT64 address routes to, if any."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why a fetch may not connect to ``address`` (e.g. "a loopback address"); None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # A dual-stack socket connects to the IPv4 address itself: judge that one.
            return forbidden_reason(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        if embedded is not None and (reason := forbidden_reason(embedded)) is not None:
            return f"{reason} behind a 6to4/NAT64 prefix"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if address in _SITE_LOCAL:
        return "a site-local address"
    # Catch-all for special-purpose ranges the named checks above miss (their coverage differs
    # between Python patch releases).
    if not address.is_global:
        return "not a public address"
    return None


async def resolve_host(host: str, port: int) -> list[str]:
    """All A and AAAA addresses of ``host``, through the system resolver (getaddrinfo)."""
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    addresses: list[str] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (trio.socket.AF_INET, trio.socket.AF_INET6):
            address = str(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
    return addresses
