"""Strict manifest parsing: schema 1, artifacts, layer kinds, short histories, strict JSON, safe text.

Digests here are computed independently of the code under test (hashlib over bytes the test cuts
itself), and the expected layer pairings come from the fixture generator's own lists.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.registry.fakes import fixture, sha256
from workers.registry import ManifestError
from workers.registry.builders import build_image_record
from workers.registry.documents import MAX_JSON_DEPTH, clean_text
from workers.registry.image_config import history_records, parse_config
from workers.registry.manifests import ParsedImageManifest, ParsedIndex, is_attestation_entry, parse_manifest
from workers.registry.media_types import DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED, OCI_EMPTY
from workers.registry.schema1 import ParsedSchema1, manifest_digest, schema1_payload


def _payload_by_hand(body: bytes) -> bytes:
    """libtrust's framing undone without the code under test: cut at formatLength, add formatTail."""
    sig = json.loads(body)["signatures"][0]
    protected = json.loads(base64.urlsafe_b64decode(sig["protected"] + "=="))
    tail = base64.urlsafe_b64decode(protected["formatTail"] + "==")
    return body[: protected["formatLength"]] + tail


def test_signed_schema1_digest_is_over_the_payload_without_signatures() -> None:
    body = fixture("schema1_manifest.json")
    payload = _payload_by_hand(body)
    assert b"signatures" not in payload and json.loads(payload)["schemaVersion"] == 1
    expected = "sha256:" + hashlib.sha256(payload).hexdigest()
    assert expected != sha256(body)
    assert schema1_payload(body) == payload
    assert manifest_digest(body) == expected
    assert manifest_digest(body, "sha512") == "sha512:" + hashlib.sha512(payload).hexdigest()
    parsed = parse_manifest(body, DOCKER_MANIFEST_V1_SIGNED)
    assert isinstance(parsed, ParsedSchema1) and parsed.payload_digest == expected


def test_unsigned_schema1_digest_is_over_the_raw_bytes() -> None:
    body = fixture("schema1_unsigned.json")
    assert manifest_digest(body) == "sha256:" + hashlib.sha256(body).hexdigest()
    parsed = parse_manifest(body, "application/json")
    assert isinstance(parsed, ParsedSchema1) and parsed.media_type == DOCKER_MANIFEST_V1


def test_schema1_layers_and_history_run_oldest_first_and_throwaway_makes_no_layer() -> None:
    doc = json.loads(fixture("schema1_unsigned.json"))
    parsed = parse_manifest(fixture("schema1_unsigned.json"))
    assert isinstance(parsed, ParsedSchema1)
    # fsLayers[0] is the newest (a throwaway CMD on the empty tar); only the base layer is a layer.
    assert parsed.layers == (doc["fsLayers"][1]["blobSum"],)
    assert [(h.created_by, h.empty_layer, h.layer_position) for h in parsed.history] == [
        ("/bin/sh -c #(nop) ADD file:busybox in /", False, 0),
        ('/bin/sh -c #(nop) CMD ["sh"]', True, None),
    ]
    assert (parsed.platform.os, parsed.platform.architecture) == ("linux", "amd64")


def test_schema1_with_a_forged_format_length_is_rejected_not_a_crash() -> None:
    doc = json.loads(fixture("schema1_manifest.json"))
    bad = base64.urlsafe_b64encode(json.dumps({"formatLength": 10**9, "formatTail": "Cn0"}).encode())
    doc["signatures"][0]["protected"] = bad.decode().rstrip("=")
    with pytest.raises(ManifestError, match="formatLength"):
        parse_manifest(json.dumps(doc).encode())


def test_oci_artifact_with_subject_and_empty_config_is_an_artifact() -> None:
    parsed = parse_manifest(fixture("oci_artifact_sbom.json"))
    assert isinstance(parsed, ParsedImageManifest)
    assert parsed.kind == "artifact" and parsed.artifact_type == "application/spdx+json"
    assert parsed.subject == sha256(fixture("oci_manifest_amd64.json"))
    assert parsed.config.media_type == OCI_EMPTY and parsed.config.digest == sha256(b"{}")


def test_buildkit_attestation_entry_is_recognised_by_annotation_and_platform() -> None:
    index = parse_manifest(fixture("buildkit_attestation_index.json"))
    assert isinstance(index, ParsedIndex)
    image, attestation, unknown = index.children
    assert not is_attestation_entry(image) and is_attestation_entry(attestation)
    assert attestation.annotations["vnd.docker.reference.digest"] == image.digest
    assert unknown.media_type == "application/vnd.example.unknown+json"


def test_layer_media_types_annotations_and_foreign_urls_are_kept() -> None:
    parsed = parse_manifest(fixture("layers_manifest.json"))
    assert isinstance(parsed, ParsedImageManifest)
    raw = json.loads(fixture("layers_manifest.json"))["layers"]
    assert [layer.media_type for layer in parsed.layers] == [r["mediaType"] for r in raw]
    assert [layer.annotations for layer in parsed.layers] == [r.get("annotations", {}) for r in raw]
    foreign = [layer for layer in parsed.layers if layer.foreign]
    assert [layer.urls for layer in foreign] == [tuple(raw[5]["urls"])]
    assert "zstd" in parsed.layers[1].media_type
    assert "containerd.io/snapshot/stargz/toc.digest" in parsed.layers[3].annotations


def test_short_history_leaves_extra_layers_unmapped_and_never_shifts() -> None:
    manifest = parse_manifest(fixture("layers_manifest.json"))
    assert isinstance(manifest, ParsedImageManifest)
    config = parse_config(fixture("layers_config.json"))
    record = build_image_record(digest="sha256:" + "a" * 64, size=1, manifest=manifest, config=config)
    assert [h.layer_position for h in record.history] == [0, None, 1, 2]
    mapped = {h.layer_position for h in record.history} - {None}
    assert len(record.layers) == 6 and mapped == {0, 1, 2}  # layers 3..5 have no history line
    # more non-empty entries than layers: the extra ones get None, nothing shifts
    long = history_records(({"created_by": "a"}, {"created_by": "b"}, {"created_by": "c"}), layer_count=2)
    assert [h.layer_position for h in long] == [0, 1, None]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"schemaVersion": 2, "size": NaN, "layers": []}', "NaN"),
        (b'{"schemaVersion": 2, "size": Infinity, "layers": []}', "Infinity"),
        (b'{"schemaVersion": 2, "schemaVersion": 2, "layers": []}', "duplicate key 'schemaVersion'"),
        (b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), "nested"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
    ],
)
def test_strict_json_rejects_what_lenient_parsers_accept(body: bytes, match: str) -> None:
    with pytest.raises(ManifestError, match=match):
        parse_manifest(body)


def test_nul_and_lone_surrogates_never_reach_stored_text() -> None:
    config = json.loads(fixture("docker_v2_config.json"))
    config["history"][0]["created_by"] = "RUN echo a\u0000b"
    config["history"][0]["comment"] = "half \ud800 a pair"
    config["config"]["Labels"] = {"k\u0000": "v\udfff"}
    parsed = parse_config(json.dumps(config).encode())
    history = history_records(parsed.history, layer_count=3)
    assert history[0].created_by == "RUN echo ab" and history[0].comment == "half \ufffd a pair"
    assert parsed.labels == {"k": "v\ufffd"}
    for text in (history[0].created_by, history[0].comment, *parsed.labels, *parsed.labels.values()):
        text.encode("utf-8")  # would raise on a lone surrogate
    assert clean_text("\x00") == ""
