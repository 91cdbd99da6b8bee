"""Pull-through: a registry image pulled by the engine gains uncompressed sizes on its Blob rows."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import pytest

from analytics.engines import services as engine_services
from analytics.models import Blob, EngineImage, ManifestLayer, Scan
from analytics.scans.start import scan_create, scan_request_resolve, scan_run_inline
from harness.registry import BLOBS_SUBPATH

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def unpacked_size(registry_root: Path, digest: str) -> int:
    """What an engine's layer store counts for a layer: the sum of its tar entries' sizes, read from
    the registry's own blob file (the independent source)."""
    algo, hexd = digest.split(":")
    data = Path(registry_root) / BLOBS_SUBPATH / algo / hexd[:2] / hexd / "data"
    with gzip.open(data) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        return sum(member.size for member in tar)


def test_registry_image_pulled_through_the_engine_gains_uncompressed_sizes(test_registry, dockerd_server):
    ref = test_registry.ref("oci/tool", "1")  # built by umoci + skopeo: never in the engine before
    request = scan_request_resolve(target=f"{test_registry.host}/oci/tool:1")
    scan = scan_create(registry=request.registry, repository=request.repository, tag=request.tag)
    assert scan_run_inline(scan_id=scan.id).status == Scan.Status.SUCCEEDED
    digest = test_registry.image("oci/tool", "1").digest
    layers = list(
        ManifestLayer.objects.filter(manifest__digest=digest).select_related("blob").order_by("position")
    )
    assert layers and all(ml.blob.uncompressed_size is None for ml in layers)

    engine_scan = engine_services.engine_scan_start(endpoint=dockerd_server.host, pull=[ref], inline=True)
    assert engine_scan.status == Scan.Status.SUCCEEDED, engine_scan.errors
    assert engine_scan.pulled_count == 1 and engine_scan.linked_blobs_count >= len(layers)

    # the engine's own word on the pulled image: its layers and the history rows that made them
    inspect = json.loads(dockerd_server.docker("image", "inspect", ref))[0]
    history = [
        json.loads(line)
        for line in dockerd_server.docker(
            "image", "history", "--no-trunc", "--human=false", "--format", "{{json .}}", ref
        ).splitlines()
    ]
    engine_sizes = [int(r["Size"]) for r in reversed(history) if int(r["Size"]) > 0]
    assert all(r["ID"] == "<missing>" for r in history[1:])  # pulled: no local parents
    img = EngineImage.objects.get(engine=engine_scan.engine, image_id=inspect["Id"])
    assert f"{test_registry.host}/oci/tool@{digest}" in img.repo_digests

    blobs = [Blob.objects.get(id=ml.blob_id) for ml in layers]
    assert [b.diff_id for b in blobs] == inspect["RootFS"]["Layers"]
    assert [b.uncompressed_size for b in blobs] == engine_sizes
    assert [b.uncompressed_size for b in blobs] == [
        unpacked_size(test_registry.registry.root, b.digest) for b in blobs
    ]
    assert all(b.uncompressed_size != b.size for b in blobs)  # compressed and uncompressed both kept


def test_registry_summary_gains_uncompressed_figures_equal_to_the_engines_layers(
    test_registry, dockerd_server
):
    from analytics.selectors.scope import Scope
    from analytics.selectors.summary import dedup_summary, dedup_summary_computed

    ref = test_registry.ref("oci/tool", "1")
    request = scan_request_resolve(target=f"{test_registry.host}/oci/tool:1")
    scan = scan_create(registry=request.registry, repository=request.repository, tag=request.tag)
    assert scan_run_inline(scan_id=scan.id).status == Scan.Status.SUCCEEDED
    registry_scope = Scope(registry_id=request.registry.id)
    before = dedup_summary(scope=registry_scope)
    assert before.uncompressed_known_layers == 0 and before.uncompressed_stored_bytes is None

    engine_scan = engine_services.engine_scan_start(endpoint=dockerd_server.host, pull=[ref], inline=True)
    assert engine_scan.status == Scan.Status.SUCCEEDED, engine_scan.errors
    rows = dockerd_server.docker(
        "image", "history", "--no-trunc", "--human=false", "--format", "{{json .}}", ref
    ).splitlines()
    engine_sizes = [int(json.loads(r)["Size"]) for r in rows if int(json.loads(r)["Size"]) > 0]
    diff_ids = json.loads(dockerd_server.docker("image", "inspect", ref))[0]["RootFS"]["Layers"]
    assert len(set(diff_ids)) == len(diff_ids)  # distinct layers: stored = logical for one image

    maintained = dedup_summary(scope=registry_scope)  # the ScopeFigures row and RegistryBlob counts
    computed = dedup_summary_computed(scope=registry_scope)  # the holdings
    repo = dedup_summary(scope=Scope(repository_id=request.repository.id))
    for summary in (maintained, computed, repo):
        assert summary.uncompressed_stored_bytes == sum(engine_sizes)
        assert summary.uncompressed_logical_bytes == sum(engine_sizes)
        assert summary.uncompressed_known_layers == len(diff_ids) == summary.distinct_layers
        assert summary.uncompressed_coverage == 1.0
        # the compressed figures are untouched, and the known layers' compressed bytes are theirs
        assert summary.layers_stored_bytes == before.layers_stored_bytes
        assert summary.uncompressed_known_compressed_bytes == before.layers_stored_bytes
        assert summary.stored_bytes == before.stored_bytes
    assert maintained.as_dict() == computed.as_dict()
