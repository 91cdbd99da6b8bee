"""Snapshots of what is no plain image: artifacts, attestations, schema 1, odd indexes."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from tests.registry.fakes import OCI_INDEX, OCI_MANIFEST, SCHEMA1_SIGNED, FakeRegistry, fixture, sha256
from workers.registry import DigestMismatchError
from workers.registry.content import MAX_MANIFEST_BYTES
from workers.registry.records import ImageRecord, IndexRecord
from workers.registry.snapshot import MAX_INDEX_DEPTH, classify_tag, snapshot_repository


def _buildkit(reg: FakeRegistry, tag: str) -> str:
    reg.add_blob(fixture("oci_config_amd64.json"))
    reg.add_manifest("team/app", None, fixture("oci_manifest_amd64.json"), OCI_MANIFEST)
    reg.add_blob(fixture("attestation_config.json"))
    reg.add_manifest("team/app", None, fixture("attestation_manifest.json"), OCI_MANIFEST)
    return reg.add_manifest("team/app", tag, fixture("buildkit_attestation_index.json"), OCI_INDEX)


def test_buildkit_attestation_is_an_artifact_linked_to_its_image_and_unknown_children_are_skipped() -> None:
    reg = FakeRegistry()
    index = _buildkit(reg, "v1")
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    by_digest = {r.digest: r for r in snapshot.manifests}
    image = by_digest[sha256(fixture("oci_manifest_amd64.json"))]
    attestation = by_digest[sha256(fixture("attestation_manifest.json"))]
    assert isinstance(image, ImageRecord) and image.kind == "image"
    assert isinstance(attestation, ImageRecord) and attestation.kind == "artifact"
    assert attestation.subject == image.digest and attestation.artifact_type == "attestation-manifest"
    assert attestation.config is not None and attestation.config.digest == sha256(
        fixture("attestation_config.json")
    )
    assert isinstance(by_digest[index], IndexRecord)
    assert snapshot.failures == ()
    (skipped,) = snapshot.skipped
    assert skipped.kind == "Skipped" and skipped.reference == sha256(fixture("unknown_child.json"))
    # the attestation's config is not fetched: it is no image config to read
    assert f"/v2/team/app/blobs/{sha256(fixture('attestation_config.json'))}" not in reg.paths()


def test_nested_index_is_read_to_the_bottom() -> None:
    reg = FakeRegistry()
    _buildkit(reg, "inner")
    outer = reg.add_manifest("team/app", "outer", fixture("nested_index.json"), OCI_INDEX)
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app", tags=["outer"])
    assert snapshot.tags == {"outer": outer}
    kinds = sorted((type(r).__name__, getattr(r, "kind", "")) for r in snapshot.manifests)
    assert kinds == [
        ("ImageRecord", "artifact"),
        ("ImageRecord", "image"),
        ("IndexRecord", ""),
        ("IndexRecord", ""),
    ]


def test_index_deeper_than_the_cap_fails_at_the_cap() -> None:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "good")
    child = reg.add_manifest("team/app", None, fixture("oci_index.json"), OCI_INDEX)
    body = b""
    for _ in range(MAX_INDEX_DEPTH + 1):
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {"mediaType": OCI_INDEX, "digest": child, "size": len(reg.manifests[child][0])}
                ],
            }
        ).encode()
        child = reg.add_manifest("team/app", None, body, OCI_INDEX)
    reg.tags["team/app"]["deep"] = child
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    # the tag's own index is read; the level past the cap is the failure, and nothing below it is fetched
    assert set(snapshot.tags) == {"good", "deep"}
    (failure,) = snapshot.failures
    assert f"deeper than {MAX_INDEX_DEPTH}" in failure.message
    assert f"/v2/team/app/manifests/{sha256(fixture('oci_index.json'))}" not in reg.paths()


def test_index_that_names_itself_is_a_digest_mismatch_not_a_hang() -> None:
    # A real cycle cannot hash; a lying registry serves the index again for the digest it names.
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "good")
    fake = "sha256:" + "1" * 64
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_INDEX, "digest": fake, "size": 0}],
        }
    ).encode()
    body = body.replace(b'"size": 0', b'"size": %d' % (len(body) + 0))
    loop = reg.add_manifest("team/app", "loop", body, OCI_INDEX)
    reg.manifests[fake] = reg.manifests[loop]
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    assert snapshot.tags == {"good": sha256(fixture("docker_v2_manifest.json")), "loop": loop}
    (failure,) = snapshot.failures
    assert failure.reference == fake and failure.kind == "DigestMismatchError"


def test_oci_artifact_and_cosign_style_tags_are_artifacts_linked_to_their_subject() -> None:
    reg = FakeRegistry()
    subject = reg.add_docker_image("team/app", "v1")
    reg.add_blob(b"{}")
    artifact = reg.add_manifest("team/app", None, fixture("oci_artifact_sbom.json"), OCI_MANIFEST)
    sig_tag = subject.replace(":", "-") + ".sig"
    reg.tags["team/app"][sig_tag] = sha256(fixture("docker_v2_manifest.json"))  # content says image
    reg.tags["team/app"]["sbom"] = artifact
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    assert snapshot.artifact_tags == {sig_tag: "signature"}
    assert snapshot.tags[sig_tag] == subject  # still held: its bytes are stored
    by_digest = {r.digest: r for r in snapshot.manifests}
    sbom = by_digest[artifact]
    assert isinstance(sbom, ImageRecord) and sbom.kind == "artifact"
    assert sbom.subject == sha256(fixture("oci_manifest_amd64.json"))
    assert f"/v2/team/app/blobs/{sha256(b'{}')}" not in reg.paths()  # an empty config is not read


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("sha256-" + "a" * 64, ("referrers", "sha256:" + "a" * 64)),
        ("sha256-" + "a" * 64 + ".sig", ("signature", "sha256:" + "a" * 64)),
        ("sha256-" + "a" * 64 + ".att", ("attestation", "sha256:" + "a" * 64)),
        ("sha256-" + "a" * 64 + ".sbom", ("sbom", "sha256:" + "a" * 64)),
        ("sha512-" + "b" * 128 + ".foo", ("artifact", "sha512:" + "b" * 128)),
        ("v1.sig", None),
        ("sha256-" + "a" * 63, None),
        ("latest", None),
    ],
)
def test_classify_tag(tag: str, expected: tuple[str, str] | None) -> None:
    assert classify_tag(tag) == expected


def test_schema1_gets_layer_sizes_from_blob_heads() -> None:
    reg = FakeRegistry()
    body = fixture("schema1_manifest.json")
    layer = b"busybox layer bytes"
    base_blob = json.loads(body)["fsLayers"][1]["blobSum"]
    reg.blobs[base_blob] = layer  # served as-is: a HEAD only reads the length
    reg.add_manifest("team/app", "legacy", body, SCHEMA1_SIGNED)
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    (record,) = snapshot.manifests
    assert isinstance(record, ImageRecord) and record.config is None
    assert record.digest == "sha256:" + hashlib.sha256(fixture("schema1_unsigned.json")).hexdigest()
    assert [(b.digest, b.size) for b in record.layers] == [(base_blob, len(layer))]
    assert record.media_type == SCHEMA1_SIGNED and record.kind == "image"


def test_schema1_without_readable_blobs_is_unsupported_on_that_tag_only() -> None:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "good")
    reg.add_manifest("team/app", "legacy", fixture("schema1_manifest.json"), SCHEMA1_SIGNED)
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    assert set(snapshot.tags) == {"good"}
    (failure,) = snapshot.failures
    assert failure.reference == "legacy" and "unsupported: Docker schema 1" in failure.message


def test_oversize_manifest_stops_reading_and_fails_that_tag_only() -> None:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "good")
    big = b'{"schemaVersion": 2, "layers": [], "x": "' + b"a" * MAX_MANIFEST_BYTES + b'"}'

    def stream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]))

    reg.routes["/v2/team/app/manifests/big"] = stream
    reg.tags["team/app"]["big"] = sha256(big)
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    assert set(snapshot.tags) == {"good"}
    (failure,) = snapshot.failures
    assert failure.reference == "big" and "limit" in failure.message


def test_index_child_whose_size_disagrees_with_its_descriptor_fails() -> None:
    reg = FakeRegistry()
    reg.add_oci_index("team/app")
    doc = json.loads(fixture("oci_index.json"))
    doc["manifests"][0]["size"] += 1
    reg.add_manifest("team/app", "lying", json.dumps(doc).encode(), OCI_INDEX)
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    messages = {f.reference: f.message for f in snapshot.failures}
    assert "the index entry says" in messages[doc["manifests"][0]["digest"]]


def test_pull_by_sha512_digest_is_verified_with_sha512() -> None:
    reg = FakeRegistry()
    body = fixture("docker_v2_manifest.json")
    digest = "sha512:" + hashlib.sha512(body).hexdigest()
    reg.routes[f"/v2/team/app/manifests/{digest}"] = lambda r: httpx.Response(200, content=body)
    wrong = "sha512:" + "0" * 128
    reg.routes[f"/v2/team/app/manifests/{wrong}"] = lambda r: httpx.Response(200, content=body)
    with reg.client() as client:
        assert client.get_manifest("team/app", digest).digest == digest
        with pytest.raises(DigestMismatchError):
            client.get_manifest("team/app", wrong)


def test_head_manifest_uses_the_header_and_falls_back_to_get() -> None:
    reg = FakeRegistry()
    digest = reg.add_docker_image("team/app", "v1")
    with reg.client() as client:
        assert client.head_manifest("team/app", "v1") == digest
    heads = []

    def no_head(request: httpx.Request) -> httpx.Response:
        heads.append(request.method)
        if request.method == "HEAD":
            return httpx.Response(405)
        return httpx.Response(200, content=fixture("docker_v2_manifest.json"))

    reg.routes["/v2/team/app/manifests/v2"] = no_head
    with reg.client() as client:
        assert client.head_manifest("team/app", "v2") == digest
    assert heads == ["HEAD", "GET"]
    accept = []

    def no_header(request: httpx.Request) -> httpx.Response:
        accept.append(request.headers["Accept"])
        return httpx.Response(
            200, content=b"" if request.method == "HEAD" else fixture("docker_v2_manifest.json")
        )

    reg.routes["/v2/team/app/manifests/v3"] = no_header
    with reg.client() as client:
        assert client.head_manifest("team/app", "v3") == digest
    assert len(accept) == 2 and all("application/vnd.oci.image.index.v1+json" in a for a in accept)
    assert all("prettyjws" in a for a in accept)
