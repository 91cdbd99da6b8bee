"""The client against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.support.hostile_registry import HostileRegistry, hostile_registry, start_hostile_registry
from workers.registry import ProtocolError, RegistryClient
from workers.registry.records import ImageRecord, IndexRecord
from workers.registry.snapshot import snapshot_repository


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileRegistry]:
    with hostile_registry() as reg:
        yield reg


def test_catalog_lists_every_repository_across_pages(hostile: HostileRegistry) -> None:
    with RegistryClient(hostile.base_url, page_size=1, allow_internal=True) as client:
        assert client.ping() == "registry/2.0"
        assert list(client.iter_repositories()) == ["good/app", "hostile/app", "loop/app"]


def test_good_tags_come_through_and_bad_ones_are_failures_of_the_right_kind(hostile: HostileRegistry) -> None:
    with RegistryClient(hostile.base_url, page_size=2, allow_internal=True) as client:
        snapshot = snapshot_repository(client, "hostile/app")
    assert list(snapshot.tags) == ["digest-mismatch", "good"]
    image = next(m for m in snapshot.manifests if m.digest == snapshot.tags["good"])
    assert isinstance(image, ImageRecord)
    # A wrong Docker-Content-Digest on a tag pull is logged, not trusted: the bytes decide
    # (distribution-spec: a legacy header clients SHOULD NOT depend on).
    served = httpx.get(f"{hostile.base_url}/v2/hostile/app/manifests/digest-mismatch")
    computed = "sha256:" + hashlib.sha256(served.content).hexdigest()
    assert snapshot.tags["digest-mismatch"] == computed != served.headers["Docker-Content-Digest"]
    assert {f.reference: f.kind for f in snapshot.failures} == {
        "bad-config": "DigestMismatchError",
        "error-500": "HTTPStatusError",
        "malformed": "ManifestError",
        "schema1": "ManifestError",
    }
    for failure in snapshot.failures:
        assert f"{hostile.base_url}/hostile/app" in failure.message


def test_good_repository_snapshot_has_image_index_and_children(hostile: HostileRegistry) -> None:
    with RegistryClient(hostile.base_url, allow_internal=True) as client:
        snapshot = snapshot_repository(client, "good/app")
    assert set(snapshot.tags) == {"v1", "multi"} and snapshot.failures == ()
    kinds = sorted(type(m).__name__ for m in snapshot.manifests)
    assert kinds == ["ImageRecord", "ImageRecord", "ImageRecord", "IndexRecord"]
    index = next(m for m in snapshot.manifests if isinstance(m, IndexRecord))
    assert [str(c.platform) for c in index.children] == ["linux/amd64", "linux/arm64/v8"]


def test_looping_tag_pagination_stops_with_an_error(hostile: HostileRegistry) -> None:
    before = len(hostile.requests)
    with (
        RegistryClient(hostile.base_url, allow_internal=True) as client,
        pytest.raises(ProtocolError, match="pagination loop"),
    ):
        snapshot_repository(client, "loop/app")
    assert len(hostile.requests) - before == 1  # the Link names a page already read: not asked again


def test_start_and_stop_function() -> None:
    base_url, stop = start_hostile_registry()
    try:
        assert base_url.startswith("http://127.0.0.1:")
        with RegistryClient(base_url, allow_internal=True) as client:
            assert list(client.iter_tags("good/app")) == ["multi", "v1"]
    finally:
        stop()
