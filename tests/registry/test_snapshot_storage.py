"""Artifacts, attestations and foreign layers in Postgres: stored bytes, never images; foreign bytes apart."""

from __future__ import annotations

import json

import pytest

from analytics.ingest.snapshot import snapshot_ingest
from analytics.models import Manifest, ManifestLayer, Registry, Repository
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from tests.registry.fakes import BASE_URL, OCI_INDEX, OCI_MANIFEST, FakeRegistry, fixture, sha256
from workers.registry.snapshot import snapshot_repository

pytestmark = pytest.mark.django_db


def test_artifacts_and_foreign_layers_are_counted_as_what_they_are() -> None:
    reg = FakeRegistry()
    for name in (
        "oci_config_amd64.json",
        "attestation_config.json",
        "layers_config.json",
        "empty_config.json",
    ):
        reg.add_blob(fixture(name))
    for name in ("oci_manifest_amd64.json", "attestation_manifest.json"):
        reg.add_manifest("team/app", None, fixture(name), OCI_MANIFEST)
    reg.add_manifest("team/app", "multi", fixture("buildkit_attestation_index.json"), OCI_INDEX)
    reg.add_manifest("team/app", "sbom", fixture("oci_artifact_sbom.json"), OCI_MANIFEST)
    reg.add_manifest("team/app", "layers", fixture("layers_manifest.json"), OCI_MANIFEST)
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    registry = Registry.objects.create(name="r", url=BASE_URL)
    repo = Repository.objects.create(registry=registry, name="team/app")
    snapshot_ingest(repository=repo, snapshot=snapshot)

    kinds = dict(Manifest.objects.values_list("digest", "kind"))
    assert kinds[sha256(fixture("attestation_manifest.json"))] == "artifact"
    assert kinds[sha256(fixture("oci_artifact_sbom.json"))] == "artifact"
    sbom = Manifest.objects.get(digest=sha256(fixture("oci_artifact_sbom.json")))
    assert sbom.subject == sha256(fixture("oci_manifest_amd64.json"))
    assert sbom.artifact_type == "application/spdx+json"

    # expected figures straight from the fixture files: every manifest and every blob they name, once
    docs = {
        n: json.loads(fixture(n))
        for n in (
            "oci_manifest_amd64.json",
            "attestation_manifest.json",
            "oci_artifact_sbom.json",
            "layers_manifest.json",
        )
    }
    blobs: dict[str, int] = {}
    foreign: dict[str, int] = {}
    for doc in docs.values():
        for d in (doc["config"], *doc["layers"]):
            (foreign if "foreign" in d["mediaType"] else blobs)[d["digest"]] = d["size"]
    manifests = [*docs, "buildkit_attestation_index.json"]
    expected_stored = sum(len(fixture(n)) for n in manifests) + sum(blobs.values())
    summary = dedup_summary(scope=Scope(registry_id=registry.id))
    assert summary.images == 2  # the amd64 image and the layers image; no artifact, no index
    assert summary.stored_bytes == expected_stored
    assert summary.foreign_bytes == sum(foreign.values()) > 0

    layers = list(
        ManifestLayer.objects.filter(manifest__digest=sha256(fixture("layers_manifest.json"))).order_by(
            "position"
        )
    )
    raw = docs["layers_manifest.json"]["layers"]
    assert [(x.media_type, x.annotations, x.urls) for x in layers] == [
        (r["mediaType"], r.get("annotations", {}), r.get("urls", [])) for r in raw
    ]
