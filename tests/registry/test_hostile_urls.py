"""URLs httpx cannot parse, whether an operator or a registry hands them over, become the client's own
errors: a `ReferenceError` before any request, a `ProtocolError` or `PolicyError` for one reply."""

from __future__ import annotations

import httpx
import pytest

from workers.registry import RegistryClient
from workers.registry.errors import (
    PolicyError,
    ProtocolError,
    ReferenceError,
    RegistryError,
    UnauthorizedError,
)
from workers.registry.reference import parse_scan_target, validate_host

from .fakes import FakeRegistry

UNPARSEABLE = [
    "0177.0.0.1:8100",
    "01.02.03.04",
    "999.1.1.1",
    "127.1:5000",
    "2130706433",
    "1.2.3.4.5",
    "xn--abc",
]


@pytest.mark.parametrize("host", UNPARSEABLE)
def test_hosts_read_as_ipv4_or_bad_idna_are_refused_by_the_grammar(host: str) -> None:
    with pytest.raises(ReferenceError, match="invalid registry host"):
        validate_host(host)
    with pytest.raises(ReferenceError):
        parse_scan_target(f"http://{host}")


@pytest.mark.parametrize(
    "host", ["127.0.0.1:5000", "10.0.0.1", "255.255.255.255", "registry.example", "a1.b2"]
)
def test_real_hosts_still_pass(host: str) -> None:
    assert validate_host(host) == host


@pytest.mark.parametrize("host", UNPARSEABLE)
def test_client_refuses_an_unparseable_base_url_with_its_own_error(host: str) -> None:
    with pytest.raises(RegistryError):
        RegistryClient(f"http://{host}", allow_internal=True)


def test_userinfo_is_never_repeated_in_the_error() -> None:
    with pytest.raises(ReferenceError) as info:
        parse_scan_target("ftp://robot:s3cret@127.0.0.1:5000")
    assert "s3cret" not in str(info.value) and "user:password@" in str(info.value)


def test_link_to_an_unparseable_url_is_a_protocol_error() -> None:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "v1")
    reg.routes["/v2/team/app/tags/list"] = lambda r: httpx.Response(
        200, json={"name": "team/app", "tags": ["v1"]}, headers={"Link": '<http://xn--abc/v2/x>; rel="next"'}
    )
    with pytest.raises(ProtocolError, match="invalid Link"):
        list(reg.client().iter_tags("team/app"))


def test_redirect_to_an_unparseable_url_is_a_policy_error_for_that_request() -> None:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "v1")
    reg.routes["/v2/team/app/manifests/v1"] = lambda r: httpx.Response(
        302, headers={"Location": "http://0177.0.0.1:8100/x"}
    )
    with pytest.raises(PolicyError, match="invalid URL"):
        reg.client().get_manifest("team/app", "v1")


def test_token_realm_that_is_no_url_is_an_unauthorized_error() -> None:
    reg = FakeRegistry()
    challenge = 'Bearer realm="http://xn--abc/token",service="s"'
    reg.routes["/v2/"] = lambda r: httpx.Response(401, headers={"WWW-Authenticate": challenge})
    with pytest.raises(UnauthorizedError, match="not a usable URL"):
        reg.client().ping()
