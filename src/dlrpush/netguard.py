"""Where callbacks may go: the SSRF guard for customer-supplied URLs.

A callback may only reach public unicast addresses unless the operator allows a range
(``DLRPUSH_CALLBACK_ALLOW``). The check runs when an endpoint is created and again on
the resolved addresses of every new connection (``dlrpush.pushclient``), so a DNS name
that later resolves to an internal address does not get through. Redirects are never
followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from dlrpush.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedDestination(OSError):
    """The destination resolves only to addresses callbacks may not reach."""


# NAT64 (RFC 6052, RFC 8215): a gateway turns these into the IPv4 address they embed, so
# they are judged as that address. The local-use prefix may embed it anywhere; it is only
# reachable where an operator allows it.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for on the way out, if any."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]  # the client's address
    return None


def address_allowed(ip: str | Address, allow: Sequence[Network]) -> bool:
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address):
        if any(addr in net for net in allow):
            return True
        if addr in _NAT64_LOCAL_USE:
            return False
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            addr = embedded
    if any(addr in net for net in allow):
        return True
    # is_global excludes loopback, RFC 1918, link-local (cloud metadata 169.254.169.254),
    # carrier-grade NAT, documentation and reserved ranges.
    return addr.is_global and not addr.is_multicast


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a callback, judged on its form alone."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "the URL must start with http:// or https://"
    if not parts.hostname:
        return "the URL has no host"
    if port == 0:
        return "port 0 is not a destination"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed; use the endpoint's credentials"
    return None


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_callback_url(url: str, allow: Sequence[Network]) -> None:
    """Raise ``InvalidInput`` (field ``url``) when callbacks may not go to ``url``."""
    problem = url_problem(url)
    if problem:
        raise InvalidInput(problem, "url")
    host = urlsplit(url).hostname or ""
    literal = literal_address(host)
    if literal is not None:
        addresses: list[str] = [str(literal)]
    else:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):  # IDNA refuses empty or over-long labels
            raise InvalidInput(f"the host {host!r} does not resolve", "url") from None
        addresses = [str(info[4][0]) for info in infos]
    blocked = [a for a in addresses if not address_allowed(a, allow)]
    if blocked:
        raise InvalidInput(
            f"callbacks may not reach {blocked[0]} (private, loopback, link-local or"
            " reserved); an operator can allow a range with DLRPUSH_CALLBACK_ALLOW",
            "url",
        )
