"""Who sent a request: the TCP peer, or the client that trusted proxies name (SPEC section 3).

Each proxy appends the address it got the connection from to ``X-Forwarded-For``, so the
header is a list of hops, oldest on the left. All lines of the header are one list, in the
order received (RFC 9110 section 5.3: a field sent on several lines means the same as one line
with the values joined by commas). Only what a trusted proxy appended can be believed, so the
list is read from the right, and each trusted hop vouches for the entry to its left::

    peer not in TRUSTED_PROXIES (or not an IP)      -> the peer
    peer trusted, walking the entries from the right:
        an entry that is not an IP address          -> the hop before it (its right-hand
                                                       neighbour, or the peer): the last
                                                       address a trusted hop vouched for
        an entry that is a trusted proxy            -> keep walking
        any other entry                             -> that entry
    every entry is a trusted proxy                  -> the left-most entry

Reading only the first line, or the right-most entry of one line, is the bug this replaces: a
client sends its own ``X-Forwarded-For: <any address>`` line, the proxy adds a second one, and
the client's choice becomes the source that ``bound_ips``, the failed-login limit and the audit
trail see.

``X-Forwarded-Proto`` (:meth:`TrustedProxies.came_over_tls`) says which scheme the client used
to reach the proxy. Only the trusted peer's word counts, and that is the right-most entry of
all its lines (an edge proxy replaces the header; one that appends puts its own last)::

    the connection to this server is TLS            -> TLS, whatever the headers say
    peer not in TRUSTED_PROXIES                     -> not TLS (the header is ignored)
    peer trusted, right-most entry is "https"       -> TLS (any other value, or none: not)

Addresses come back in one spelling (``ipaddress``'s, IPv4-mapped IPv6 as IPv4), so that
``bound_ips``, the failure counters and the audit trail never disagree about which address it
was. Nothing here does I/O; :meth:`TrustedProxies.trusts` is the test to reuse for any other
``X-Forwarded-*`` header (such as ``X-Forwarded-Proto``).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_FOR = b"x-forwarded-for"
FORWARDED_PROTO = b"x-forwarded-proto"
UNKNOWN_PEER = "unknown"
MAX_PEER_CHARS = 64  # the audit trail's source_ip column


def parse_address(unverified: str) -> IpAddress | None:
    """An IP address in ``unverified`` (surrounding blanks ignored), or None if it is not one.

    Refused as "not an address": ports (``1.2.3.4:80``), brackets, IPv6 zones (``fe80::1%eth0``,
    whose zone is free text), anything else ``ipaddress`` would not read. An IPv4-mapped IPv6
    address is its IPv4 address (a dual-stack listener reports IPv4 clients that way, and an
    IPv4 ``bound_ips`` must still match them).
    """
    text = unverified.strip(" \t")
    if not text or "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Every line of header ``name`` (lower case, as ASGI gives names), in order, as text."""
    return [value.decode("latin-1") for key, value in headers if key == name]


def normal_peer(peer: str | None) -> str:
    """The peer as the rest of the server sees it: one spelling of its address, else as given."""
    if peer is None:
        return UNKNOWN_PEER
    # A kernel's IPv4 text is already in normal form; skip the parse on the hot path.
    if ":" not in peer:
        return peer[:MAX_PEER_CHARS]
    address = parse_address(peer)
    return str(address) if address is not None else peer[:MAX_PEER_CHARS]


class TrustedProxies:
    """The proxies whose ``X-Forwarded-*`` headers are believed (``TRUSTED_PROXIES``)."""

    __slots__ = ("_networks", "_trusted_text")

    def __init__(self, networks: Sequence[IpNetwork] = ()) -> None:
        self._networks = tuple(networks)
        # Peers are few (the proxies themselves) and this runs on every request: remember
        # the answer per spelling. Bounded, so varied direct clients cannot grow it.
        self._trusted_text = functools.lru_cache(maxsize=1024)(self._trusts_text)

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> TrustedProxies:
        """Parse CIDRs or single addresses; raise ValueError naming the first bad entry."""
        networks: list[IpNetwork] = []
        for entry in cidrs:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)"
                ) from None
        return cls(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self._networks]!r})"

    def _trusts_address(self, address: IpAddress) -> bool:
        return any(address in network for network in self._networks)

    def _trusts_text(self, peer: str) -> bool:
        address = parse_address(peer)
        return address is not None and self._trusts_address(address)

    def trusts(self, peer: str | None) -> bool:
        """Whether the TCP peer ``peer`` is a trusted proxy (whose X-Forwarded-* to believe)."""
        if not self._networks or peer is None:
            return False
        return self._trusted_text(peer)

    def client_address(self, peer: str | None, forwarded_for: Iterable[str]) -> str:
        """The request's source address (see the module docstring for the walk).

        ``forwarded_for``: every ``X-Forwarded-For`` line, in the order received. Returns an
        address in normal form, or the peer (normalised) when nothing better can be believed.
        """
        if not self.trusts(peer):
            # Forged hops (source spoofing): only a trusted proxy's word counts.
            return normal_peer(peer)
        believed = normal_peer(peer)
        for line in reversed(list(forwarded_for)):
            for entry in reversed(line.split(",")):
                address = parse_address(entry)
                if address is None:
                    # A hop we cannot read: nothing to its left can be tied to a trusted hop.
                    return believed
                believed = str(address)
                if not self._trusts_address(address):
                    return believed
        return believed

    def came_over_tls(self, peer: str | None, scheme: str, forwarded_proto: Iterable[str]) -> bool:
        """Whether the client reached us over TLS (see the module docstring's second table).

        ``scheme``: the scheme of the connection to this server (ASGI's ``scope["scheme"]``);
        ``forwarded_proto``: every ``X-Forwarded-Proto`` line, in the order received.
        """
        if scheme == "https":
            return True
        if not self.trusts(peer):
            # A client claiming "https" for itself: only a trusted proxy's word counts.
            return False
        entries = [entry for line in forwarded_proto for entry in line.split(",")]
        return bool(entries) and entries[-1].strip(" \t").lower() == "https"
