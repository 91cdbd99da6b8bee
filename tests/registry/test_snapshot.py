"""`snapshot_repository` (workers/registry/snapshot.py): what one scan of one repository records, and
what it survives."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.registry.fakes import DOCKER_V2, OCI_INDEX, SCHEMA1_SIGNED, FakeRegistry, fixture, sha256
from workers.registry import NotFoundError, TransportError
from workers.registry.records import ImageRecord, IndexRecord, Platform
from workers.registry.snapshot import snapshot_repository


def test_image_under_two_tags_is_one_record_with_its_config_read_once() -> None:
    reg = FakeRegistry()
    digest = reg.add_docker_image("team/app", "v1", "latest")
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    assert snapshot.registry_url == reg.base_url and snapshot.repository == "team/app"
    assert snapshot.tags == {"latest": digest, "v1": digest}
    (image,) = snapshot.manifests
    assert isinstance(image, ImageRecord)
    assert image.digest == digest and image.size == len(fixture("docker_v2_manifest.json"))
    assert image.platform == Platform(os="linux", architecture="amd64")
    assert [h.layer_position for h in image.history] == [0, None, None, 1, None, 2, None]
    assert all(layer.diff_id for layer in image.layers)
    assert snapshot.failures == ()
    config_path = f"/v2/team/app/blobs/{sha256(fixture('docker_v2_config.json'))}"
    assert reg.paths().count(config_path) == 1


def test_index_records_itself_and_each_child_with_the_index_platform() -> None:
    reg = FakeRegistry()
    index_digest = reg.add_oci_index("team/site", "1.4.2", "latest")
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/site")
    assert snapshot.tags == {"1.4.2": index_digest, "latest": index_digest}
    index = next(m for m in snapshot.manifests if isinstance(m, IndexRecord))
    images = [m for m in snapshot.manifests if isinstance(m, ImageRecord)]
    assert index.digest == index_digest and index.media_type == OCI_INDEX and len(index.children) == 2
    assert {str(i.platform) for i in images} == {"linux/amd64", "linux/arm64/v8"}
    assert {i.digest for i in images} == {c.digest for c in index.children}
    shared = {layer.digest for layer in images[0].layers} & {layer.digest for layer in images[1].layers}
    assert len(shared) == 1  # the COPY layer both platforms share
    for child in index.children:  # each child fetched once, by digest
        assert reg.paths().count(f"/v2/team/site/manifests/{child.digest}") == 1


def test_child_platform_comes_from_the_config_when_the_index_entry_has_none() -> None:
    reg = FakeRegistry()
    reg.add_oci_index("team/site")
    doc = json.loads(fixture("oci_index.json"))
    for entry in doc["manifests"]:
        del entry["platform"]
    reg.add_manifest("team/site", "bare", json.dumps(doc).encode(), OCI_INDEX)
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/site")
    assert {str(m.platform) for m in snapshot.manifests if isinstance(m, ImageRecord)} == {
        "linux/amd64",
        "linux/arm64/v8",
    }


def test_one_bad_tag_becomes_a_failure_and_the_others_come_through() -> None:
    reg = FakeRegistry()
    good = reg.add_docker_image("team/app", "good")
    reg.add_manifest("team/app", "legacy", fixture("schema1_manifest.json"), SCHEMA1_SIGNED)
    reg.add_manifest("team/app", "broken", b'{"schemaVersion": 2, "layers": [', DOCKER_V2)
    reg.tags["team/app"]["gone"] = "sha256:" + "0" * 64  # listed, but its manifest is not there
    reg.routes["/v2/team/app/manifests/flaky"] = lambda r: httpx.Response(503, text="upstream down")
    reg.tags["team/app"]["flaky"] = good
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    assert snapshot.tags == {"good": good}
    kinds = {f.reference: f.kind for f in snapshot.failures}
    assert kinds == {
        "legacy": "ManifestError",
        "broken": "ManifestError",
        "gone": "NotFoundError",
        "flaky": "HTTPStatusError",
    }
    messages = {f.reference: f.message for f in snapshot.failures}
    assert "unsupported: Docker schema 1" in messages["legacy"]
    assert "team/app:broken" in messages["broken"] and "not JSON" in messages["broken"]


def test_config_that_does_not_match_its_digest_fails_the_tag() -> None:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "v1")
    reg.blobs[sha256(fixture("docker_v2_config.json"))] = b'{"os": "linux"}'
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    assert snapshot.tags == {} and snapshot.manifests == ()
    (failure,) = snapshot.failures
    assert failure.reference == "v1" and failure.kind == "DigestMismatchError"


def test_config_whose_size_contradicts_its_descriptor_fails_the_tag() -> None:
    reg = FakeRegistry()
    reg.add_blob(fixture("docker_v2_config.json"))
    doc = json.loads(fixture("docker_v2_manifest.json"))
    doc["config"]["size"] += 1
    reg.add_manifest("team/app", "v1", json.dumps(doc).encode(), DOCKER_V2)
    with reg.client() as client:
        (failure,) = snapshot_repository(client, "team/app").failures
    assert failure.kind == "ManifestError" and "descriptor says" in failure.message


def test_two_tags_on_one_bad_manifest_are_two_failures_from_one_read() -> None:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "a", "b")
    config_digest = sha256(fixture("docker_v2_config.json"))
    del reg.blobs[config_digest]
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    assert [(f.reference, f.kind) for f in snapshot.failures] == [
        ("a", "NotFoundError"),
        ("b", "NotFoundError"),
    ]
    assert reg.paths().count(f"/v2/team/app/blobs/{config_digest}") == 1


def test_bad_index_child_is_a_failure_and_the_index_and_other_child_stay() -> None:
    reg = FakeRegistry()
    index_digest = reg.add_oci_index("team/site", "latest")
    arm = sha256(fixture("oci_manifest_arm64.json"))
    del reg.manifests[arm]
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/site")
    assert snapshot.tags == {"latest": index_digest}
    assert sorted(type(m).__name__ for m in snapshot.manifests) == ["ImageRecord", "IndexRecord"]
    (failure,) = snapshot.failures
    assert failure.reference == arm and failure.kind == "NotFoundError"


def test_index_child_whose_size_or_type_contradicts_the_entry_is_a_failure() -> None:
    reg = FakeRegistry()
    reg.add_oci_index("team/site")
    doc = json.loads(fixture("oci_index.json"))
    doc["manifests"][0]["size"] += 3
    doc["manifests"][1]["mediaType"] = DOCKER_V2
    reg.add_manifest("team/site", "odd", json.dumps(doc).encode(), OCI_INDEX)
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/site")
    messages = sorted(f.message for f in snapshot.failures)
    assert len(messages) == 2
    assert "index entry says" in messages[0] and "application/vnd.docker" in messages[0]
    assert "bytes, the index entry says" in messages[1]
    assert "odd" in snapshot.tags


def test_config_cache_spans_snapshots_of_the_same_client() -> None:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "v1")
    reg.add_docker_image("team/copy", "v1")
    with reg.client() as client:
        snapshot_repository(client, "team/app")
        snapshot_repository(client, "team/copy")
    assert sum("/blobs/" in p for p in reg.paths()) == 1


def test_given_tags_are_used_deduplicated_without_listing() -> None:
    reg = FakeRegistry()
    digest = reg.add_docker_image("team/app", "v1", "v2")
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app", tags=["v1", "v1", "bad tag!"])
    assert snapshot.tags == {"v1": digest}
    assert [(f.reference, f.kind) for f in snapshot.failures] == [("bad tag!", "ReferenceError")]
    assert not any(p.endswith("/tags/list") for p in reg.paths())


def test_failure_to_list_tags_raises() -> None:
    reg = FakeRegistry()
    with reg.client() as client, pytest.raises(NotFoundError):
        snapshot_repository(client, "team/missing")


def test_transport_failure_mid_snapshot_raises_for_a_retry() -> None:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "v1")

    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    reg.routes["/v2/team/app/manifests/v1"] = reset
    with reg.client() as client, pytest.raises(TransportError):
        snapshot_repository(client, "team/app")


def test_digest_among_given_tags_is_recorded_but_is_not_a_tag() -> None:
    reg = FakeRegistry()
    index_digest = reg.add_oci_index("team/site", "latest")
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/site", tags=[index_digest, "sha256:" + "0" * 64])
    assert snapshot.tags == {}
    assert index_digest in {m.digest for m in snapshot.manifests} and len(snapshot.manifests) == 3
    assert [(f.reference, f.kind) for f in snapshot.failures] == [("sha256:" + "0" * 64, "NotFoundError")]
