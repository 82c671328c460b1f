"""The source address behind proxies (kit/forwarded.py), as a table: peer, X-Forwarded-For
lines, trusted proxies → the address bound_ips, the failure counters and the audit trail see."""

from __future__ import annotations

import pytest

from strongroom.kit.forwarded import (
    FORWARDED_FOR,
    TrustedProxies,
    header_values,
    normal_peer,
    parse_address,
)

PROXY = "127.0.0.1"
CLIENT = "203.0.113.50"
SPOOFED = "198.51.100.7"
TRUSTED = TrustedProxies.from_cidrs(["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"])


@pytest.mark.parametrize(
    ("peer", "lines", "expected"),
    [
        # No proxy in between: the peer, whatever the client writes.
        (SPOOFED, [], SPOOFED),
        (SPOOFED, [CLIENT], SPOOFED),  # forged hop from an untrusted peer: ignored
        ("10.9.9.9:nope", [CLIENT], "10.9.9.9:nope"),  # a peer that is no IP is no proxy
        (None, [CLIENT], "unknown"),
        # A trusted proxy with one line: the right-most entry it appended.
        (PROXY, [CLIENT], CLIENT),
        (PROXY, [f"{SPOOFED}, {CLIENT}"], CLIENT),
        (PROXY, [], PROXY),  # the proxy itself made the request
        # The attack: the client sends its own first line, the proxy appends a second one.
        # Reading only the first line believed the client's choice.
        (PROXY, [SPOOFED, CLIENT], CLIENT),
        (PROXY, [f"{SPOOFED}, 192.0.2.1", CLIENT], CLIENT),
        # Trusted hops are skipped, from the right, across lines.
        (PROXY, [CLIENT, "10.0.0.2"], CLIENT),
        (PROXY, [f"{SPOOFED}, {CLIENT}, 10.0.0.3", "10.0.0.2"], CLIENT),
        (PROXY, ["10.0.0.4, 10.0.0.3", "10.0.0.2"], "10.0.0.4"),  # all trusted: left-most
        # An entry that is not an IP address ends the walk at the hop before it.
        (PROXY, [f"{CLIENT}, not-an-ip"], PROXY),
        (PROXY, [f"{SPOOFED}, not-an-ip, {CLIENT}"], CLIENT),
        (PROXY, ["not-an-ip, 10.0.0.2"], "10.0.0.2"),
        (PROXY, [f"{CLIENT}, unknown", "10.0.0.2"], "10.0.0.2"),
        (PROXY, [f"{CLIENT},"], PROXY),  # an empty entry is not an address
        (PROXY, [""], PROXY),
        (PROXY, [f"{CLIENT}:4711"], PROXY),  # a port makes it no plain address
        (PROXY, ["[2001:db8::1]"], PROXY),
        (PROXY, ["fe80::1%eth0"], PROXY),  # a zone is free text
        (PROXY, ["01.2.3.4"], PROXY),  # leading zeros: octal to some parsers
        # Blanks around entries are not part of them; spellings are normalised.
        (PROXY, [f"  {CLIENT}\t"], CLIENT),
        (PROXY, ["2001:DB8:0:0::1"], "2001:db8::1"),
        (PROXY, [f"::ffff:{CLIENT}"], CLIENT),  # IPv4-mapped: the IPv4 address
        ("::ffff:127.0.0.1", [CLIENT], CLIENT),  # a dual-stack listener's peer
        ("2001:db8:ffff::9", ["2001:db8::7"], "2001:db8::7"),
        ("2001:db8:fffe::9", ["2001:db8::7"], "2001:db8:fffe::9"),
    ],
)
def test_the_source_is_the_right_most_untrusted_hop(
    peer: str | None, lines: list[str], expected: str
) -> None:
    assert TRUSTED.client_address(peer, lines) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    nobody = TrustedProxies.from_cidrs([])
    assert not nobody
    assert nobody.client_address(PROXY, [SPOOFED]) == PROXY
    assert not nobody.trusts(PROXY)


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("10.200.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("2001:db8:ffff:1::1", True),
        ("2001:db8:fffe::1", False),
        ("not-an-ip", False),
        (None, False),
    ],
)
def test_trusts_says_whether_a_peer_is_a_proxy(peer: str | None, trusted: bool) -> None:
    """The test that X-Forwarded-Proto (the console cookie's Secure flag) reuses."""
    assert TRUSTED.trusts(peer) is trusted


def test_every_header_line_is_read_in_order() -> None:
    headers = [
        (b"host", b"x"),
        (FORWARDED_FOR, SPOOFED.encode()),
        (b"x-forwarded-proto", b"https"),
        (FORWARDED_FOR, CLIENT.encode()),
    ]
    assert header_values(headers, FORWARDED_FOR) == [SPOOFED, CLIENT]
    assert TRUSTED.client_address(PROXY, header_values(headers, FORWARDED_FOR)) == CLIENT


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "proxy.example", "", "1.2.3"])
def test_a_bad_trusted_proxy_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or CIDR"):
        TrustedProxies.from_cidrs(["127.0.0.1", entry])


def test_addresses_are_read_strictly_and_spelled_one_way() -> None:
    assert str(parse_address(" 192.0.2.1 ")) == "192.0.2.1"
    assert parse_address("192.0.2.1:80") is None
    assert str(parse_address("::FFFF:192.0.2.1")) == "192.0.2.1"
    assert normal_peer("::ffff:192.0.2.1") == "192.0.2.1"
    assert normal_peer("192.0.2.1") == "192.0.2.1"
    assert normal_peer(None) == "unknown"
    assert normal_peer("x" * 100) == "x" * 64


@pytest.mark.parametrize(
    ("peer", "scheme", "lines", "expected"),
    [
        # TLS to this server itself: whatever a header says.
        (SPOOFED, "https", [], True),
        (SPOOFED, "https", ["http"], True),
        # Plain HTTP from a client that is no proxy: its own claim counts for nothing.
        (SPOOFED, "http", [], False),
        (SPOOFED, "http", ["https"], False),
        (None, "http", ["https"], False),
        # A trusted proxy's word: the right-most entry of all its lines.
        (PROXY, "http", ["https"], True),
        (PROXY, "http", [" HTTPS "], True),
        (PROXY, "http", ["http"], False),
        (PROXY, "http", [], False),
        (PROXY, "http", [""], False),
        (PROXY, "http", ["https, http"], False),  # the proxy's own hop was plain HTTP
        (PROXY, "http", ["http", "https"], True),  # a client's own line first, then the proxy's
        (PROXY, "http", ["https", "http"], False),
        (PROXY, "http", ["wss"], False),
    ],
)
def test_came_over_tls(peer: str | None, scheme: str, lines: list[str], expected: bool) -> None:
    assert TRUSTED.came_over_tls(peer, scheme, lines) is expected
