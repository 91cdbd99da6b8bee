"""The client against odd and hostile replies, through `httpx.MockTransport` (tests/registry/fakes.py)."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from tests.registry.fakes import BASE_URL, DOCKER_V2, FakeRegistry, error_body, fixture, sha256
from workers.registry import (
    DigestMismatchError,
    ForbiddenError,
    HTTPStatusError,
    NotFoundError,
    PolicyError,
    ProtocolError,
    ReferenceError,
    RegistryClient,
    TransportError,
    UnauthorizedError,
)
from workers.registry.media_types import DOCKER_MANIFEST_V2
from workers.registry.snapshot import snapshot_repository


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "v1", "latest")
    return reg


# -- construction, ping, auth ------------------------------------------------------------------


def test_bare_host_port_base_url_is_normalised() -> None:
    with RegistryClient("127.0.0.1:5000") as client:
        assert client.base_url == "http://127.0.0.1:5000"
    with pytest.raises(ReferenceError, match="must not have a path"):
        RegistryClient("http://127.0.0.1:5000/team/app")


def test_page_size_is_capped_at_1000() -> None:
    with RegistryClient("http://127.0.0.1:5000", page_size=5000) as client:
        assert client.page_size == 1000


def test_ping_returns_api_version_and_sends_user_agent(registry: FakeRegistry) -> None:
    with registry.client(user_agent="layerlens-test/9") as client:
        assert client.ping() == "registry/2.0"
    assert registry.requests[0].headers["User-Agent"] == "layerlens-test/9"


def test_basic_auth_header_is_sent_preemptively(registry: FakeRegistry) -> None:
    with registry.client(username="alice", password="s3cret") as client:
        client.ping()
        client.get_manifest("team/app", "v1")
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert [r.headers.get("Authorization") for r in registry.requests] == [expected, expected]


def test_401_without_credentials_says_credentials_are_required(registry: FakeRegistry) -> None:
    registry.routes["/v2/"] = lambda r: httpx.Response(
        401,
        content=error_body("UNAUTHORIZED", "authentication required"),
        headers={"WWW-Authenticate": 'Basic realm="Registry Realm"'},
    )
    with registry.client() as client, pytest.raises(UnauthorizedError) as info:
        client.ping()
    assert info.value.status == 401 and info.value.code == "UNAUTHORIZED" and not info.value.transient
    assert "requires credentials" in str(info.value)


def test_401_with_credentials_says_they_were_rejected(registry: FakeRegistry) -> None:
    registry.routes["/v2/"] = lambda r: httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
    with (
        registry.client(username="alice", password="wrong") as client,
        pytest.raises(UnauthorizedError) as info,
    ):
        client.ping()
    assert "'alice' rejected" in str(info.value)
    assert BASE_URL in str(info.value)


def test_bearer_challenge_whose_realm_gives_no_token_fails_clearly(registry: FakeRegistry) -> None:
    challenge = (
        'Bearer realm="https://auth.example.test/token",service="registry",scope="repository:team/app:pull"'
    )
    registry.routes["/v2/team/app/manifests/v1"] = lambda r: httpx.Response(
        401, headers={"WWW-Authenticate": challenge}
    )
    with registry.client() as client, pytest.raises(UnauthorizedError) as info:
        client.get_manifest("team/app", "v1")
    # The fake answers the realm's /token with 404: no token, a clear permanent 401.
    assert "token server https://auth.example.test/token answered HTTP 404" in str(info.value)
    assert "team/app:v1" in str(info.value) and not info.value.transient


def test_403_is_forbidden(registry: FakeRegistry) -> None:
    registry.routes["/v2/_catalog"] = lambda r: httpx.Response(
        403, content=error_body("DENIED", "no catalog for you")
    )
    with registry.client() as client, pytest.raises(ForbiddenError) as info:
        list(client.iter_repositories())
    assert info.value.code == "DENIED" and "no catalog for you" in str(info.value)


def test_404_name_unknown_is_not_found_with_code(registry: FakeRegistry) -> None:
    with registry.client() as client, pytest.raises(NotFoundError) as info:
        list(client.iter_tags("team/nope"))
    assert info.value.status == 404 and info.value.code == "NAME_UNKNOWN" and not info.value.transient
    assert "team/nope" in str(info.value)


def test_404_manifest_unknown_names_registry_repository_and_tag(registry: FakeRegistry) -> None:
    with registry.client() as client, pytest.raises(NotFoundError) as info:
        client.get_manifest("team/app", "v9")
    assert info.value.code == "MANIFEST_UNKNOWN"
    assert str(info.value).startswith(f"{BASE_URL}/team/app:v9: HTTP 404 MANIFEST_UNKNOWN")


@pytest.mark.parametrize(
    ("status", "transient"), [(500, True), (502, True), (503, True), (429, True), (400, False)]
)
def test_error_statuses_are_transient_or_not(registry: FakeRegistry, status: int, transient: bool) -> None:
    registry.routes["/v2/team/app/manifests/v1"] = lambda r: httpx.Response(
        status, text="<html>oops</html>", headers={"Retry-After": "7"}
    )
    with registry.client() as client, pytest.raises(HTTPStatusError) as info:
        client.get_manifest("team/app", "v1")
    assert type(info.value) is HTTPStatusError
    assert info.value.status == status and info.value.code is None and info.value.transient is transient
    assert info.value.retry_after == 7.0


def test_connection_failure_is_a_transient_transport_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with (
        RegistryClient(BASE_URL, transport=httpx.MockTransport(refuse), allow_plain_http=True) as client,
        pytest.raises(TransportError) as info,
    ):
        client.ping()
    assert info.value.transient and "connection refused" in str(info.value)


def test_timeout_is_a_transient_transport_error() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with (
        RegistryClient(BASE_URL, transport=httpx.MockTransport(slow), allow_plain_http=True) as client,
        pytest.raises(TransportError) as info,
    ):
        client.get_manifest("team/app", "v1")
    assert info.value.transient and "timed out" in str(info.value)


def test_bad_reference_raises_before_any_request(registry: FakeRegistry) -> None:
    with registry.client() as client:
        with pytest.raises(ReferenceError):
            client.get_manifest("Team/App", "v1")
        with pytest.raises(ReferenceError):
            client.get_manifest("team/app", "bad tag")
        with pytest.raises(ReferenceError):
            client.get_manifest("team/app", "sha256:1234")
        with pytest.raises(ReferenceError):
            client.get_blob("team/app", "sha256:" + "A" * 64)
    assert registry.requests == []


# -- pagination ----------------------------------------------------------------------------------


def test_catalog_follows_relative_link_pages_to_the_end() -> None:
    reg = FakeRegistry()
    names = [f"team/app{i:02d}" for i in range(25)]
    for name in names:
        reg.add_docker_image(name, "v1")
    with reg.client(page_size=10) as client:
        assert list(client.iter_repositories()) == names
    assert [r.url.params.get("last") for r in reg.requests] == [None, "team/app09", "team/app19"]
    assert all(r.url.params["n"] == "10" for r in reg.requests)


def test_tags_follow_an_absolute_same_origin_link() -> None:
    reg = FakeRegistry()
    pages = {None: (["a", "b"], f"{BASE_URL}/v2/team/app/tags/list?n=2&last=b"), "b": (["c"], None)}

    def tags(request: httpx.Request) -> httpx.Response:
        items, link = pages[request.url.params.get("last")]
        headers = {"Link": f'<{link}>; rel="next"'} if link else {}
        return httpx.Response(200, json={"name": "team/app", "tags": items}, headers=headers)

    reg.routes["/v2/team/app/tags/list"] = tags
    with reg.client(page_size=2) as client:
        assert list(client.iter_tags("team/app")) == ["a", "b", "c"]


def test_link_to_another_origin_is_refused() -> None:
    reg = FakeRegistry()
    reg.routes["/v2/_catalog"] = lambda r: httpx.Response(
        200,
        json={"repositories": ["a"]},
        headers={"Link": '<http://evil.test/v2/_catalog?n=1&last=a>; rel="next"'},
    )
    with reg.client() as client, pytest.raises(ProtocolError, match="another origin"):
        list(client.iter_repositories())
    assert len(reg.requests) == 1


def test_link_to_another_port_or_scheme_is_refused() -> None:
    reg = FakeRegistry()
    reg.routes["/v2/_catalog"] = lambda r: httpx.Response(
        200,
        json={"repositories": ["a"]},
        headers={"Link": '<https://registry.test:5000/v2/_catalog?last=a>; rel="next"'},
    )
    with reg.client() as client, pytest.raises(ProtocolError, match="another origin"):
        list(client.iter_repositories())


def test_pagination_number_invalid_halves_the_page_size_and_retries() -> None:
    reg = FakeRegistry(max_page_size=300)
    for i in range(700):
        reg.add_manifest(f"r{i:03d}", None, b"{}", "application/json")
    with reg.client(page_size=1000) as client:
        names = list(client.iter_repositories())
    assert len(names) == 700 and len(set(names)) == 700
    sizes = [r.url.params["n"] for r in reg.requests]
    assert sizes[:3] == ["1000", "500", "250"] and set(sizes[2:]) == {"250"}


def test_400_that_is_not_about_pagination_is_raised(registry: FakeRegistry) -> None:
    registry.routes["/v2/_catalog"] = lambda r: httpx.Response(400, content=error_body("UNSUPPORTED", "no"))
    with registry.client() as client, pytest.raises(HTTPStatusError) as info:
        list(client.iter_repositories())
    assert info.value.status == 400 and info.value.code == "UNSUPPORTED"
    assert len(registry.requests) == 1


def test_null_tags_is_an_empty_list_and_duplicates_are_dropped() -> None:
    reg = FakeRegistry()
    reg.routes["/v2/empty/tags/list"] = lambda r: httpx.Response(200, json={"name": "empty", "tags": None})
    pages = {None: (["v1", "v2"], '</v2/dup/tags/list?n=2&last=v2>; rel="next"'), "v2": (["v2", "v3"], None)}

    def dup(request: httpx.Request) -> httpx.Response:
        items, link = pages[request.url.params.get("last")]
        return httpx.Response(200, json={"tags": items}, headers={"Link": link} if link else {})

    reg.routes["/v2/dup/tags/list"] = dup
    with reg.client() as client:
        assert list(client.iter_tags("empty")) == []
        assert list(client.iter_tags("dup")) == ["v1", "v2", "v3"]


def test_link_pointing_back_at_the_same_page_is_a_loop_not_a_spin() -> None:
    reg = FakeRegistry()
    reg.routes["/v2/_catalog"] = lambda r: httpx.Response(
        200, json={"repositories": ["a", "b"]}, headers={"Link": f'<{r.url.raw_path.decode()}>; rel="next"'}
    )
    with reg.client() as client, pytest.raises(ProtocolError, match="pagination loop"):
        list(client.iter_repositories())
    assert len(reg.requests) == 1


def test_link_with_ever_new_urls_but_no_new_names_is_a_loop() -> None:
    reg = FakeRegistry()
    reg.routes["/v2/_catalog"] = lambda r: httpx.Response(
        200,
        json={"repositories": ["a"]},
        headers={"Link": f'</v2/_catalog?n=1&last={int(r.url.params.get("last", "0")) + 1}>; rel="next"'},
    )
    with reg.client() as client, pytest.raises(ProtocolError, match="nothing new"):
        list(client.iter_repositories())
    assert len(reg.requests) == 4


def test_list_reply_that_is_not_the_documented_json_is_a_protocol_error() -> None:
    reg = FakeRegistry()
    reg.routes["/v2/_catalog"] = lambda r: httpx.Response(200, text="<html>proxy login</html>")
    reg.routes["/v2/x/tags/list"] = lambda r: httpx.Response(200, json={"tags": [1, 2]})
    with reg.client() as client:
        with pytest.raises(ProtocolError, match="not a JSON object"):
            list(client.iter_repositories())
        with pytest.raises(ProtocolError, match="not a list of strings"):
            list(client.iter_tags("x"))


# -- manifests and blobs -------------------------------------------------------------------------


def test_get_manifest_by_tag_and_by_digest(registry: FakeRegistry) -> None:
    digest = sha256(fixture("docker_v2_manifest.json"))
    with registry.client() as client:
        by_tag = client.get_manifest("team/app", "v1")
        by_digest = client.get_manifest("team/app", digest)
    assert by_tag == by_digest
    assert by_tag.digest == digest and by_tag.media_type == DOCKER_MANIFEST_V2 and by_tag.size == 949
    accept = registry.requests[0].headers["Accept"]
    for media_type in (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ):
        assert media_type in accept


def test_wrong_docker_content_digest_on_a_tag_pull_is_logged_and_the_computed_digest_wins(
    registry: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    # distribution-spec: Docker-Content-Digest is a legacy header clients SHOULD NOT depend on.
    other = "sha256:" + "f" * 64
    registry.routes["/v2/team/app/manifests/v1"] = lambda r: httpx.Response(
        200,
        content=fixture("docker_v2_manifest.json"),
        headers={"Content-Type": DOCKER_V2, "Docker-Content-Digest": other},
    )
    with registry.client() as client, caplog.at_level("WARNING", logger="workers.registry.content"):
        fetched = client.get_manifest("team/app", "v1")
    assert fetched.digest == sha256(fixture("docker_v2_manifest.json")) != other
    assert any("Docker-Content-Digest" in r.getMessage() and other in r.getMessage() for r in caplog.records)


def test_wrong_docker_content_digest_on_a_digest_pull_is_a_mismatch(registry: FakeRegistry) -> None:
    body = fixture("docker_v2_manifest.json")
    other = "sha256:" + "f" * 64
    registry.routes[f"/v2/team/app/manifests/{sha256(body)}"] = lambda r: httpx.Response(
        200, content=body, headers={"Content-Type": DOCKER_V2, "Docker-Content-Digest": other}
    )
    with registry.client() as client, pytest.raises(DigestMismatchError, match="Docker-Content-Digest"):
        client.get_manifest("team/app", sha256(body))


def test_manifest_not_matching_the_digest_asked_for_is_a_mismatch(registry: FakeRegistry) -> None:
    asked = "sha256:" + "e" * 64
    registry.routes[f"/v2/team/app/manifests/{asked}"] = lambda r: httpx.Response(
        200, content=fixture("docker_v2_manifest.json"), headers={"Content-Type": DOCKER_V2}
    )
    with registry.client() as client, pytest.raises(DigestMismatchError, match="the digest asked for"):
        client.get_manifest("team/app", asked)


def test_manifest_without_docker_content_digest_gets_the_computed_one(registry: FakeRegistry) -> None:
    registry.routes["/v2/team/app/manifests/v1"] = lambda r: httpx.Response(
        200, content=fixture("docker_v2_manifest.json"), headers={"Content-Type": "application/json"}
    )
    with registry.client() as client:
        fetched = client.get_manifest("team/app", "v1")
    assert (
        fetched.digest == sha256(fixture("docker_v2_manifest.json"))
        and fetched.media_type == "application/json"
    )


def test_oversized_manifest_is_refused(registry: FakeRegistry) -> None:
    registry.routes["/v2/team/app/manifests/v1"] = lambda r: httpx.Response(
        200, content=b" " * (4 * 1024 * 1024 + 1)
    )
    with registry.client() as client, pytest.raises(ProtocolError, match="limit"):
        client.get_manifest("team/app", "v1")


def test_blob_is_verified_and_redirects_are_followed(registry: FakeRegistry) -> None:
    config = fixture("docker_v2_config.json")
    digest = sha256(config)
    registry.routes[f"/v2/team/app/blobs/{digest}"] = lambda r: httpx.Response(
        307, headers={"Location": f"http://storage.test/data/{digest}?sig=abc"}
    )
    registry.routes[f"/data/{digest}"] = lambda r: httpx.Response(200, content=config)
    with registry.client(username="alice", password="pw") as client:
        assert client.get_blob("team/app", digest) == config
    assert "Authorization" in registry.requests[0].headers
    assert "Authorization" not in registry.requests[1].headers  # credentials stay on the registry


def test_blob_not_matching_its_digest_is_a_mismatch(registry: FakeRegistry) -> None:
    digest = sha256(fixture("docker_v2_config.json"))
    registry.blobs[digest] = b'{"architecture": "amd64", "os": "linux"}'
    with registry.client() as client, pytest.raises(DigestMismatchError) as info:
        client.get_blob("team/app", digest)
    assert info.value.expected == digest and digest in str(info.value)


def test_blob_over_max_bytes_is_refused(registry: FakeRegistry) -> None:
    digest = sha256(fixture("docker_v2_config.json"))
    with registry.client() as client, pytest.raises(ProtocolError, match="100-byte limit"):
        client.get_blob("team/app", digest, max_bytes=100)


def test_content_type_wrong_but_body_says_media_type_is_read_by_the_body(registry: FakeRegistry) -> None:
    registry.routes["/v2/team/app/manifests/v1"] = lambda r: httpx.Response(
        200, content=fixture("docker_v2_manifest.json"), headers={"Content-Type": "text/plain"}
    )
    with registry.client() as client:
        snapshot = snapshot_repository(client, "team/app", tags=["v1"])
    assert snapshot.failures == ()
    assert snapshot.manifests[0].media_type == DOCKER_MANIFEST_V2


def test_body_contradicting_its_declared_type_is_a_failure(registry: FakeRegistry) -> None:
    doc = json.loads(fixture("oci_index.json"))
    doc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    registry.add_manifest(
        "team/app", "liar", json.dumps(doc).encode(), "application/vnd.oci.image.manifest.v1+json"
    )
    with registry.client() as client:
        snapshot = snapshot_repository(client, "team/app", tags=["liar", "v1"])
    assert list(snapshot.tags) == ["v1"]
    (failure,) = snapshot.failures
    assert (
        failure.reference == "liar" and failure.kind == "ManifestError" and "contradicts" in failure.message
    )


def test_plain_http_registry_needs_to_be_marked_insecure_unless_on_loopback() -> None:
    with pytest.raises(PolicyError, match="plain HTTP"):
        RegistryClient("http://registry.example.com")
    RegistryClient("http://registry.example.com", allow_plain_http=True).close()
    RegistryClient("http://127.0.0.1:5000").close()  # as dockerd: loopback registries may be plain HTTP
    RegistryClient("https://registry.example.com").close()


def test_reply_trickling_in_under_the_read_timeout_hits_the_total_time_limit() -> None:
    class Trickle(httpx.SyncByteStream):
        def __iter__(self):
            for _ in range(6):
                time.sleep(0.05)
                yield b"{}"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, stream=Trickle(), headers={"Docker-Distribution-API-Version": "registry/2.0"}
        )

    with (
        RegistryClient(
            BASE_URL,
            transport=httpx.MockTransport(handler),
            allow_plain_http=True,
            total_timeout=0.1,
            sleep=lambda s: None,
            retries=0,
        ) as client,
        pytest.raises(TransportError, match="total time limit"),
    ):
        client.iter_tags("team/app").__next__()
