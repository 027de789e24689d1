"""The SSRF guard: which callback destinations are allowed."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlrpush.errors import InvalidInput
from dlrpush.netguard import address_allowed, check_callback_url, url_problem
from dlrpush.settings import parse_networks

BLOCKED = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "ff02::1",
    "fe80::1",
    "fc00::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "192.0.2.1",
    "240.0.0.1",
    # IPv6 forms a gateway turns into an internal IPv4 address: NAT64 (well-known and
    # local-use prefixes), 6to4, Teredo.
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::7f00:1",
    "64:ff9b:1::808:808",
    "2002:7f00:1::1",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",
]


@pytest.mark.parametrize("ip", BLOCKED)
def test_internal_addresses_are_refused_by_default(ip: str) -> None:
    assert not address_allowed(ip, ())


@pytest.mark.parametrize(
    "ip",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_are_allowed(ip: str) -> None:
    assert address_allowed(ip, ())


def test_the_allow_list_opens_exactly_its_ranges() -> None:
    allow = parse_networks("127.0.0.0/8, 10.20.0.0/16")
    assert address_allowed("127.0.0.1", allow)
    assert address_allowed("10.20.5.5", allow)
    assert not address_allowed("10.21.0.1", allow)
    assert not address_allowed("169.254.169.254", allow)


@given(st.ip_addresses(v=4))
def test_every_private_ipv4_is_refused(ip: ipaddress.IPv4Address) -> None:
    if not ip.is_global or ip.is_multicast:
        assert not address_allowed(ip, ())


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/x", "http"),
        ("http:///path", "no host"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com:0/", "port 0"),
        ("http://example.com:99999/", "valid URL"),
        ("not a url", "http"),
    ],
)
def test_malformed_urls_are_named(url: str, words: str) -> None:
    problem = url_problem(url)
    assert problem is not None and words in problem


def test_names_are_resolved_and_checked() -> None:
    with pytest.raises(InvalidInput) as err:
        check_callback_url("http://localhost:9000/cb", ())
    assert err.value.field == "url"
    assert "127.0.0.1" in err.value.message or "::1" in err.value.message
    check_callback_url("http://localhost:9000/cb", parse_networks("127.0.0.0/8,::1/128"))


def test_literal_addresses_are_checked_without_resolving() -> None:
    with pytest.raises(InvalidInput):
        check_callback_url("http://[::1]:9000/", ())
    check_callback_url("http://93.184.216.34/cb", ())
