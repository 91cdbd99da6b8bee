"""IPv6 addresses that carry an internal IPv4 address through a translator or a tunnel are judged by
it (NAT64 RFC 6052, Teredo RFC 4380, besides mapped, compatible and 6to4); names are checked before
anything is stored with a short resolution timeout."""

from __future__ import annotations

import socket
import time

import pytest

from workers.registry.errors import PolicyError
from workers.registry.policy import NetworkPolicy, parse_networks

TEREDO_METADATA = "2001:0:a9fe:a9fe::1"  # Teredo server 169.254.169.254


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("64:ff9b::7f00:1", "127.0.0.1"),
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("64:ff9b::c0a8:101", "192.168.1.1"),
        (TEREDO_METADATA, "169.254.169.254"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),  # Teredo client 127.0.0.1 (obfuscated)
    ],
)
def test_translated_and_tunnelled_internal_addresses_are_refused(address: str, carried: str) -> None:
    why = NetworkPolicy().refusal(address)
    assert why is not None and carried in why
    with pytest.raises(PolicyError, match="allow-internal"):
        NetworkPolicy().check_address(address, host="registry.example")


@pytest.mark.parametrize(
    "address", ["64:ff9b::808:808", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2606:4700::1"]
)
def test_translated_public_addresses_pass(address: str) -> None:
    assert NetworkPolicy().refusal(address) is None


def test_allowed_networks_and_allow_internal_lift_it() -> None:
    assert NetworkPolicy(allowed_networks=parse_networks("127.0.0.0/8")).refusal("64:ff9b::7f00:1") is None
    assert NetworkPolicy(allowed_networks=parse_networks("64:ff9b::/96")).refusal("64:ff9b::7f00:1") is None
    assert NetworkPolicy(allow_internal=True).refusal(TEREDO_METADATA) is None


def test_host_refusal_checks_literals_and_resolved_names() -> None:
    policy = NetworkPolicy()
    assert "loopback" in (policy.host_refusal("[::1]") or "")
    assert "loopback" in (policy.host_refusal("localhost", 5000) or "")
    assert "carries 169.254.169.254" in (policy.host_refusal("[64:ff9b::a9fe:a9fe]") or "")
    assert policy.host_refusal("8.8.8.8") is None
    assert policy.host_refusal("no-such-host.invalid") is None  # unknown: the connection decides


def test_host_refusal_waits_for_a_hanging_resolver_only_as_long_as_its_timeout(monkeypatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(3) or [])
    t0 = time.monotonic()
    assert NetworkPolicy().host_refusal("slow.example", 443, timeout=0.2) is None
    assert time.monotonic() - t0 < 1
