"""Transport: redirects, retries, Retry-After, rate limits and the SSRF policy (httpx.MockTransport)."""

from __future__ import annotations

import base64
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.registry.fakes import FakeRegistry, fixture, sha256
from workers.registry import HTTPStatusError, RegistryClient, TransportError, UnauthorizedError
from workers.registry.errors import PolicyError
from workers.registry.policy import NetworkPolicy, parse_networks
from workers.registry.snapshot import snapshot_repository
from workers.registry.transport import RateLimit, parse_retry_after, redact_url

CONFIG = fixture("docker_v2_config.json")


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "v1")
    return reg


# -- redirects ---------------------------------------------------------------------------------


def test_cross_origin_redirect_drops_authorization_and_redacts_the_query(registry: FakeRegistry) -> None:
    digest = sha256(CONFIG)
    signed = "https://storage.example.test/blob?X-Amz-Signature=SECRETSIG&X-Amz-Expires=60"
    registry.routes[f"/v2/team/app/blobs/{digest}"] = lambda r: httpx.Response(
        307, headers={"Location": signed}
    )
    registry.routes["/blob"] = lambda r: httpx.Response(200, content=CONFIG)
    with registry.client(username="alice", password="pw") as client:
        assert client.get_blob("team/app", digest) == CONFIG
    first, second = registry.requests
    assert first.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:pw").decode()
    assert second.url.host == "storage.example.test" and "Authorization" not in second.headers
    # Blobs are asked for as stored: the bytes hashed are the bytes the registry keeps.
    assert first.headers["Accept-Encoding"] == "identity" and second.headers["Accept-Encoding"] == "identity"


def test_same_origin_redirect_keeps_authorization(registry: FakeRegistry) -> None:
    digest = sha256(CONFIG)
    registry.routes[f"/v2/team/app/blobs/{digest}"] = lambda r: httpx.Response(
        302, headers={"Location": "/storage/blob"}
    )
    registry.routes["/storage/blob"] = lambda r: httpx.Response(200, content=CONFIG)
    with registry.client(username="alice", password="pw") as client:
        client.get_blob("team/app", digest)
    assert registry.requests[1].url.path == "/storage/blob"
    assert registry.requests[1].headers["Authorization"].startswith("Basic ")


def test_https_to_http_redirect_is_refused_and_not_followed() -> None:
    reg = FakeRegistry("https://registry.test")
    reg.add_docker_image("team/app", "v1")
    digest = sha256(CONFIG)
    reg.routes[f"/v2/team/app/blobs/{digest}"] = lambda r: httpx.Response(
        302, headers={"Location": "http://storage.example.test/blob?sig=SECRET"}
    )
    with reg.client() as client, pytest.raises(PolicyError) as info:
        client.get_blob("team/app", digest)
    assert "leaves HTTPS" in str(info.value) and "SECRET" not in str(info.value)
    assert len(reg.requests) == 1


def test_redirect_loop_stops_after_the_hop_limit(registry: FakeRegistry) -> None:
    digest = sha256(CONFIG)
    registry.routes[f"/v2/team/app/blobs/{digest}"] = lambda r: httpx.Response(
        302, headers={"Location": f"/v2/team/app/blobs/{digest}"}
    )
    with registry.client() as client, pytest.raises(PolicyError, match="more than 5 redirects"):
        client.get_blob("team/app", digest)
    assert len(registry.requests) == 6


def test_redact_url_drops_userinfo_and_query() -> None:
    assert (
        redact_url("https://u:p@s3.test:8443/b/k?X-Amz-Signature=abc")
        == "https://s3.test:8443/b/k?<redacted>"
    )
    assert redact_url("http://r.test/v2/") == "http://r.test/v2/"


# -- retries -----------------------------------------------------------------------------------


def test_429_with_retry_after_seconds_is_retried_after_that_long(registry: FakeRegistry) -> None:
    waits: list[float] = []
    replies = iter([httpx.Response(429, headers={"Retry-After": "2"})])
    inner = registry.handle
    registry.routes["/v2/team/app/manifests/v1"] = lambda r: next(replies, None) or inner_manifest(r)

    def inner_manifest(r: httpx.Request) -> httpx.Response:
        del registry.routes["/v2/team/app/manifests/v1"]
        return inner(r)

    with registry.client(sleep=waits.append) as client:
        client.get_manifest("team/app", "v1")
    assert waits == [2.0]


def test_retry_after_http_date_and_the_cap() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after("") is None

    reg = FakeRegistry()
    reg.routes["/v2/"] = lambda r: httpx.Response(429, headers={"Retry-After": "3600"})
    waits: list[float] = []
    with reg.client(sleep=waits.append, max_retry_wait=60) as client, pytest.raises(HTTPStatusError) as info:
        client.ping()
    # Longer than the cap: not waited for inside the client; transient, for the task's own retry.
    assert waits == [] and len(reg.requests) == 1
    assert info.value.transient and info.value.retry_after == 3600


def test_5xx_is_retried_with_growing_backoff_then_raised(registry: FakeRegistry) -> None:
    registry.routes["/v2/"] = lambda r: httpx.Response(503)
    waits: list[float] = []
    with registry.client(sleep=waits.append, retries=3, retry_base_delay=1.0) as client:
        with pytest.raises(HTTPStatusError) as info:
            client.ping()
    assert len(registry.requests) == 4 and info.value.status == 503 and info.value.transient
    # Equal jitter: each wait is in [ceiling/2, ceiling] of 1, 2, 4 seconds.
    assert [0.5 <= waits[0] <= 1, 1 <= waits[1] <= 2, 2 <= waits[2] <= 4] == [True, True, True]


def test_501_and_404_are_not_retried(registry: FakeRegistry) -> None:
    registry.routes["/v2/"] = lambda r: httpx.Response(501)
    with registry.client() as client, pytest.raises(HTTPStatusError):
        client.ping()
    assert len(registry.requests) == 1


def test_connection_reset_is_retried_then_succeeds(registry: FakeRegistry) -> None:
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return registry.handle(request)

    waits: list[float] = []
    with RegistryClient(
        registry.base_url, transport=httpx.MockTransport(flaky), sleep=waits.append, allow_plain_http=True
    ) as client:
        assert client.ping() == "registry/2.0"
    assert len(calls) == 2 and len(waits) == 1


def test_reset_every_time_is_a_transient_transport_error(registry: FakeRegistry) -> None:
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("Connection reset by peer", request=request)

    with (
        RegistryClient(
            registry.base_url,
            transport=httpx.MockTransport(reset),
            sleep=lambda s: None,
            allow_plain_http=True,
        ) as client,
        pytest.raises(TransportError) as info,
    ):
        client.ping()
    assert info.value.transient and "reset" in str(info.value)


def test_rate_limit_headers_are_recorded_and_an_exhausted_limit_waits(registry: FakeRegistry) -> None:
    headers = {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "0;w=21600", "RateLimit-Reset": "7"}
    registry.routes["/v2/"] = lambda r: httpx.Response(200, json={}, headers=headers)
    waits: list[float] = []
    with registry.client(sleep=waits.append) as client:
        client.ping()
        assert client.rate_limit == RateLimit(limit=100, remaining=0, window=21600, reset=7.0)
        client.ping()
    assert waits == [7.0]


def test_401_from_another_origin_is_not_answered_with_credentials(registry: FakeRegistry) -> None:
    digest = sha256(CONFIG)
    registry.routes[f"/v2/team/app/blobs/{digest}"] = lambda r: httpx.Response(
        307, headers={"Location": "https://storage.example.test/blob?sig=SECRET"}
    )
    registry.routes["/blob"] = lambda r: httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="s3"'})
    with registry.client(username="alice", password="pw") as client, pytest.raises(UnauthorizedError) as info:
        client.get_blob("team/app", digest)
    assert len(registry.requests) == 2 and "SECRET" not in str(info.value)


# -- SSRF policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "127.0.0.1", "0.0.0.0",
     "224.0.0.1", "::1", "::", "fe80::1", "fd00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
     "2002:7f00:1::"],
)  # fmt: skip
def test_internal_addresses_are_refused(address: str) -> None:
    assert NetworkPolicy().refusal(address) is not None
    assert NetworkPolicy(allow_internal=True).refusal(address) is None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111", "8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert NetworkPolicy().refusal(address) is None


def test_allowed_networks_allow_only_those() -> None:
    policy = NetworkPolicy(allowed_networks=parse_networks("127.0.0.0/8, ::1/128"))
    assert policy.refusal("127.0.0.1") is None and policy.refusal("::ffff:127.0.0.1") is None
    assert policy.refusal("::1") is None
    assert policy.refusal("10.0.0.1") is not None and policy.refusal("169.254.169.254") is not None


def test_registry_on_a_metadata_address_is_refused_before_any_request() -> None:
    reg = FakeRegistry("http://169.254.169.254")
    with reg.client() as client, pytest.raises(PolicyError) as info:
        client.ping()
    assert reg.requests == [] and "link-local" in str(info.value) and not info.value.transient


def test_realm_on_a_metadata_address_is_refused(registry: FakeRegistry) -> None:
    registry.routes["/v2/team/app/manifests/v1"] = lambda r: httpx.Response(
        401,
        headers={"WWW-Authenticate": 'Bearer realm="http://169.254.169.254/latest/meta-data/",service="x"'},
    )
    with registry.client() as client, pytest.raises(PolicyError) as info:
        client.get_manifest("team/app", "v1")
    assert "169.254.169.254" in str(info.value) and "team/app:v1" in str(info.value)
    assert all(r.url.host != "169.254.169.254" for r in registry.requests)


def test_redirect_to_a_private_address_is_refused(registry: FakeRegistry) -> None:
    digest = sha256(CONFIG)
    registry.routes[f"/v2/team/app/blobs/{digest}"] = lambda r: httpx.Response(
        302, headers={"Location": "http://10.0.0.5/blob"}
    )
    with registry.client() as client, pytest.raises(PolicyError, match="private"):
        client.get_blob("team/app", digest)
    assert all(r.url.host != "10.0.0.5" for r in registry.requests)


def test_ipv4_mapped_loopback_registry_is_refused() -> None:
    reg = FakeRegistry("http://[::ffff:7f00:1]:5000")  # ::ffff:127.0.0.1
    with reg.client() as client, pytest.raises(PolicyError, match="loopback"):
        client.ping()
    assert reg.requests == []
    # The same address in its dotted form, handed over in a redirect.
    other = FakeRegistry()
    digest = sha256(CONFIG)
    other.routes[f"/v2/team/app/blobs/{digest}"] = lambda r: httpx.Response(
        302, headers={"Location": "http://[::ffff:127.0.0.1]/blob"}
    )
    with other.client() as client, pytest.raises(PolicyError, match="loopback"):
        client.get_blob("team/app", digest)
    assert len(other.requests) == 1


def test_hostname_resolving_to_loopback_is_refused_at_connect() -> None:
    # The real transport: `localhost` passes the URL check (a name), then resolves to loopback,
    # which the connection backend refuses without opening a socket to it.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with RegistryClient(f"http://localhost:{port}", sleep=lambda s: None) as client:
            with pytest.raises(PolicyError, match="loopback"):
                client.ping()
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connected


# --- connection failures and timeouts are retried with jittered backoff -----------------------------------


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout, httpx.ConnectTimeout])
def test_connection_failures_and_timeouts_are_retried_with_jitter(error) -> None:
    attempts: list[int] = []
    waits: list[float] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) < 3:
            raise error("registry restarting", request=request)
        return httpx.Response(200, json={}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    with RegistryClient(
        "http://registry.test:5000",
        transport=httpx.MockTransport(flaky),
        sleep=waits.append,
        allow_plain_http=True,
        retries=3,
        retry_base_delay=1.0,
    ) as client:
        assert client.ping() == "registry/2.0"
    assert len(attempts) == 3
    # Equal jitter: attempt n waits between half and all of base * 2^n.
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0


# -- a refusal of the registry as a whole, inside a repository snapshot ---------------------------


def test_snapshot_stops_when_the_token_realm_is_refused(registry: FakeRegistry) -> None:
    registry.add_docker_image("team/app", "v2")
    challenge = 'Bearer realm="http://169.254.169.254/token",service="x"'
    for tag in ("v1", "v2"):
        registry.routes[f"/v2/team/app/manifests/{tag}"] = lambda r: httpx.Response(
            401, headers={"WWW-Authenticate": challenge}
        )
    # Tags given (a one-tag scan lists nothing): the refusal must still end the snapshot, not each tag.
    with registry.client() as client, pytest.raises(PolicyError) as info:
        snapshot_repository(client, "team/app", tags=["v1", "v2"])
    assert info.value.registry_wide and "169.254.169.254" in str(info.value)
    assert all(r.url.host != "169.254.169.254" for r in registry.requests)


def test_snapshot_stops_when_the_registry_address_is_refused() -> None:
    reg = FakeRegistry("http://10.1.2.3")
    reg.add_docker_image("team/app", "v1")
    with reg.client() as client, pytest.raises(PolicyError) as info:
        snapshot_repository(client, "team/app", tags=["v1"])
    assert info.value.registry_wide and "private" in str(info.value) and reg.requests == []


def test_snapshot_fails_only_the_tag_whose_redirect_target_is_refused(registry: FakeRegistry) -> None:
    registry.add_docker_image("team/app", "v2")
    registry.routes["/v2/team/app/manifests/v2"] = lambda r: httpx.Response(
        302, headers={"Location": "http://10.0.0.5/manifest"}
    )
    with registry.client() as client:
        snapshot = snapshot_repository(client, "team/app", tags=["v1", "v2"])
    assert set(snapshot.tags) == {"v1"}
    (failure,) = snapshot.failures
    assert failure.reference == "v2" and "10.0.0.5" in failure.message and "private" in failure.message
