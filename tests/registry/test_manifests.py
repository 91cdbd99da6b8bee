"""Pure parsing of manifests and configs, driven by the fixture files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.registry.fakes import fixture, sha256
from workers.registry import ManifestError
from workers.registry.builders import build_image_record
from workers.registry.documents import parse_rfc3339
from workers.registry.image_config import history_records, parse_config
from workers.registry.manifests import ParsedImageManifest, ParsedIndex, parse_manifest
from workers.registry.media_types import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_V2,
    OCI_INDEX,
    OCI_MANIFEST,
)
from workers.registry.records import Platform
from workers.registry.schema1 import ParsedSchema1


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def docker_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(fixture("docker_v2_manifest.json"))
    return doc


def test_docker_schema2_manifest_parses_with_its_config_descriptor_and_layers() -> None:
    parsed = parse_manifest(fixture("docker_v2_manifest.json"), DOCKER_MANIFEST_V2)
    assert isinstance(parsed, ParsedImageManifest)
    assert parsed.media_type == DOCKER_MANIFEST_V2
    assert parsed.config.media_type == DOCKER_CONFIG
    assert parsed.config.digest == sha256(fixture("docker_v2_config.json"))
    assert [layer.size for layer in parsed.layers] == [29_126_484, 18_342_101, 4_812]


def test_oci_index_lists_two_platforms() -> None:
    parsed = parse_manifest(fixture("oci_index.json"), OCI_INDEX)
    assert isinstance(parsed, ParsedIndex)
    assert [str(c.platform) for c in parsed.children] == ["linux/amd64", "linux/arm64/v8"]
    assert parsed.children[0].digest == sha256(fixture("oci_manifest_amd64.json"))
    assert parsed.children[1].size == len(fixture("oci_manifest_arm64.json"))


def test_schema1_is_recognised_whatever_the_content_type() -> None:
    for content_type in (
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/json",
        None,
    ):
        parsed = parse_manifest(fixture("schema1_manifest.json"), content_type)
        assert isinstance(parsed, ParsedSchema1)
        assert parsed.media_type == "application/vnd.docker.distribution.manifest.v1+prettyjws"


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/json", "text/plain; charset=utf-8", "application/octet-stream", OCI_MANIFEST],
)
def test_body_media_type_decides_when_the_content_type_is_missing_generic_or_wrong(
    content_type: str | None,
) -> None:
    parsed = parse_manifest(fixture("docker_v2_manifest.json"), content_type)
    assert parsed.media_type == DOCKER_MANIFEST_V2


def test_shape_decides_when_there_is_no_media_type_anywhere() -> None:
    doc = json.loads(fixture("oci_index.json"))
    del doc["mediaType"]
    assert parse_manifest(dumps(doc), "application/json").media_type == OCI_INDEX
    image = json.loads(fixture("oci_manifest_amd64.json"))
    del image["mediaType"]
    assert parse_manifest(dumps(image), None).media_type == OCI_MANIFEST
    assert parse_manifest(dumps(image), OCI_MANIFEST).media_type == OCI_MANIFEST


def test_body_contradicting_its_media_type_is_rejected() -> None:
    doc = json.loads(fixture("oci_index.json"))
    doc["mediaType"] = OCI_MANIFEST  # says manifest, carries `manifests`
    with pytest.raises(ManifestError, match="contradicts its mediaType"):
        parse_manifest(dumps(doc), OCI_MANIFEST)
    image = docker_doc()
    image["mediaType"] = DOCKER_MANIFEST_LIST  # says list, carries config and layers
    with pytest.raises(ManifestError, match="contradicts"):
        parse_manifest(dumps(image), None)


def test_body_without_media_type_contradicting_its_content_type_is_rejected() -> None:
    image = json.loads(fixture("oci_manifest_amd64.json"))
    del image["mediaType"]
    with pytest.raises(ManifestError, match="contradicts its Content-Type"):
        parse_manifest(dumps(image), OCI_INDEX)


def test_index_that_also_has_layers_is_rejected() -> None:
    doc = json.loads(fixture("oci_index.json"))
    doc["layers"] = []
    with pytest.raises(ManifestError, match="contradicts"):
        parse_manifest(dumps(doc), OCI_INDEX)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not an object"),
        (b'{"schemaVersion": 3, "layers": [], "config": {}}', "schemaVersion 3"),
        (b'{"schemaVersion": 2}', "neither layers nor manifests"),
        (b'{"schemaVersion": 2, "mediaType": 7, "layers": []}', "mediaType is not a string"),
        (
            b'{"schemaVersion": 2, "mediaType": "application/vnd.example+json", "layers": []}',
            "unsupported manifest",
        ),
    ],
)
def test_malformed_manifests(body: bytes, complaint: str) -> None:
    with pytest.raises(ManifestError, match=complaint):
        parse_manifest(body, "application/json")


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [
        (lambda d: d["layers"][0].update(digest="sha256:short"), r"layers\[0\] digest"),
        (lambda d: d["layers"][1].update(size=-1), r"layers\[1\] size"),
        (lambda d: d["layers"][1].update(size=True), r"layers\[1\] size"),
        (lambda d: d["layers"][2].pop("mediaType"), r"layers\[2\] has no mediaType"),
        (lambda d: d.update(layers={}), "layers is not a list"),
        (lambda d: d.update(config="x"), "config is not an object"),
    ],
)
def test_bad_descriptors_are_rejected(mutate: Any, complaint: str) -> None:
    doc = docker_doc()
    mutate(doc)
    with pytest.raises(ManifestError, match=complaint):
        parse_manifest(dumps(doc), DOCKER_MANIFEST_V2)


def test_non_image_config_or_artifact_type_makes_an_artifact_not_a_crash() -> None:
    doc = json.loads(fixture("oci_manifest_amd64.json"))
    doc["config"]["mediaType"] = "application/vnd.in-toto+json"
    parsed = parse_manifest(dumps(doc), OCI_MANIFEST)
    assert isinstance(parsed, ParsedImageManifest)
    assert (parsed.kind, parsed.artifact_type) == ("artifact", "application/vnd.in-toto+json")
    doc = json.loads(fixture("oci_manifest_amd64.json"))
    doc["artifactType"] = "application/vnd.example.sbom"
    parsed = parse_manifest(dumps(doc), OCI_MANIFEST)
    assert isinstance(parsed, ParsedImageManifest)
    assert (parsed.kind, parsed.artifact_type) == ("artifact", "application/vnd.example.sbom")


def test_config_history_positions_skip_empty_layers_like_docker_history() -> None:
    config = parse_config(fixture("docker_v2_config.json"))
    history = history_records(config.history, layer_count=3)
    assert [(h.empty_layer, h.layer_position) for h in history] == [
        (False, 0),  # ADD rootfs
        (True, None),  # CMD
        (True, None),  # ENV
        (False, 1),  # RUN apt-get
        (True, None),  # WORKDIR
        (False, 2),  # COPY
        (True, None),  # CMD
    ]
    assert history[3].created_by.startswith("RUN /bin/sh -c apt-get update")
    assert history[3].comment == "buildkit.dockerfile.v0"
    assert history[3].created == datetime(2024, 5, 20, 9, 14, 6, 991027, tzinfo=UTC)


def test_history_with_more_layer_entries_than_layers_leaves_the_extra_ones_unplaced() -> None:
    history = history_records(({"created_by": "a"}, {"created_by": "b"}), layer_count=1)
    assert [h.layer_position for h in history] == [0, None]


def test_image_record_zips_diff_ids_onto_layers_and_takes_platform_and_labels_from_config() -> None:
    manifest = parse_manifest(fixture("docker_v2_manifest.json"), DOCKER_MANIFEST_V2)
    assert isinstance(manifest, ParsedImageManifest)
    config = parse_config(fixture("docker_v2_config.json"))
    record = build_image_record(digest="sha256:" + "0" * 64, size=949, manifest=manifest, config=config)
    assert [layer.diff_id for layer in record.layers] == list(config.diff_ids)
    assert record.platform == Platform(os="linux", architecture="amd64")
    assert record.created == datetime(2024, 5, 20, 9, 14, 7, 123456, tzinfo=UTC)
    assert record.labels == {
        "org.opencontainers.image.source": "https://git.example.test/team/app",
        "team": "core",
    }
    assert len(record.history) == 7


def test_diff_ids_are_not_guessed_when_counts_differ() -> None:
    manifest = parse_manifest(fixture("docker_v2_manifest.json"), DOCKER_MANIFEST_V2)
    assert isinstance(manifest, ParsedImageManifest)
    doc = json.loads(fixture("docker_v2_config.json"))
    doc["rootfs"]["diff_ids"] = doc["rootfs"]["diff_ids"][:2]
    record = build_image_record(
        digest="sha256:" + "0" * 64, size=1, manifest=manifest, config=parse_config(dumps(doc))
    )
    assert all(layer.diff_id is None for layer in record.layers)


def test_index_platform_wins_over_config_field_by_field() -> None:
    manifest = parse_manifest(fixture("oci_manifest_arm64.json"), OCI_MANIFEST)
    assert isinstance(manifest, ParsedImageManifest)
    doc = json.loads(fixture("oci_config_arm64.json"))
    doc["os.version"] = "10.0.17763.1"
    config = parse_config(dumps(doc))
    record = build_image_record(
        digest="sha256:" + "0" * 64,
        size=1,
        manifest=manifest,
        config=config,
        platform=Platform(os="linux", architecture="arm64"),
    )
    assert record.platform == Platform(
        os="linux", architecture="arm64", variant="v8", os_version="10.0.17763.1"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-20T09:14:07.123456789Z", datetime(2024, 5, 20, 9, 14, 7, 123456, tzinfo=UTC)),
        ("2024-05-20T09:14:07Z", datetime(2024, 5, 20, 9, 14, 7, tzinfo=UTC)),
        ("2024-05-20t09:14:07.5z", datetime(2024, 5, 20, 9, 14, 7, 500000, tzinfo=UTC)),
        (
            "2024-05-20T11:14:07.1+02:00",
            datetime(2024, 5, 20, 11, 14, 7, 100000, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),  # SOURCE_DATE_EPOCH=0 builds
        ("0001-01-01T00:00:00Z", None),  # Go's zero time: never set
        ("2024-05-20T09:14:07", None),  # no offset: not RFC 3339
        ("2024-13-01T00:00:00Z", None),
        ("yesterday", None),
        (12345, None),
        (None, None),
    ],
)
def test_rfc3339_timestamps(value: Any, expected: datetime | None) -> None:
    parsed = parse_rfc3339(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("doc", "complaint"),
    [
        (b"nope", "not JSON"),
        (b'{"rootfs": []}', "rootfs is not an object"),
        (b'{"rootfs": {"diff_ids": [1]}}', "diff_ids"),
        (b'{"history": {}}', "history is not a list"),
    ],
)
def test_malformed_configs(doc: bytes, complaint: str) -> None:
    with pytest.raises(ManifestError, match=complaint):
        parse_config(doc)


def test_minimal_config_parses_to_defaults() -> None:
    config = parse_config(b'{"architecture": "amd64", "os": "linux", "config": {"Labels": null}}')
    assert config.platform == Platform(os="linux", architecture="amd64")
    assert config.created is None and config.history == () and config.labels == {} and config.diff_ids == ()
