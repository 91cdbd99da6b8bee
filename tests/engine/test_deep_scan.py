"""Deep scan: layers streamed from the registry measure what the engine measured for the same layers."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
import zstandard

from analytics import services
from analytics.deep_scan import repository_deep_scan
from analytics.models import Blob, ManifestLayer, Repository, Scan
from tests.support.registry import BLOBS_SUBPATH
from workers.registry.deep import BudgetExceeded, ByteBudget, measure_stream

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def scan_repo(test_registry, repo: str, tag: str) -> Repository:
    request = services.scan_request_resolve(target=f"{test_registry.host}/{repo}:{tag}")
    scan = services.scan_create(registry=request.registry, repository=request.repository, tag=request.tag)
    assert services.scan_run_inline(scan_id=scan.id).status == Scan.Status.SUCCEEDED
    return request.repository


def engine_layers(dockerd, ref: str) -> list[tuple[str, int]]:
    """(diff_id, size) per layer, bottom first, from the engine that built the image."""
    inspect = json.loads(dockerd.docker("image", "inspect", ref))[0]
    rows = dockerd.docker("image", "history", "--no-trunc", "--human=false", "--format", "{{json .}}", ref)
    sizes = [
        int(json.loads(r)["Size"]) for r in reversed(rows.splitlines()) if int(json.loads(r)["Size"]) > 0
    ]
    return list(zip(inspect["RootFS"]["Layers"], sizes, strict=True))


def test_deep_scan_sizes_and_diff_ids_equal_the_engines(test_registry, dockerd_server):
    repo = scan_repo(test_registry, "apps/api", "1.0")  # docker build + push: the engine holds it
    digest = test_registry.image("apps/api", "1.0").digest
    result = repository_deep_scan(repository=repo, budget_bytes=50_000_000)
    assert result.errors == [] and result.measured >= 3 and result.skipped_budget == 0
    layers = ManifestLayer.objects.filter(manifest__digest=digest).select_related("blob").order_by("position")
    measured = [(ml.blob.diff_id, ml.blob.uncompressed_size) for ml in layers]
    assert measured == engine_layers(dockerd_server, test_registry.ref("apps/api", "1.0"))


def test_deep_scan_stops_at_its_byte_budget(test_registry):
    repo = scan_repo(test_registry, "apps/web", "1.0")
    smallest = min(
        Blob.objects.filter(manifest_layers__manifest__holdings__repository=repo).values_list(
            "size", flat=True
        )
    )
    Blob.objects.filter(manifest_layers__manifest__holdings__repository=repo).update(uncompressed_size=None)
    result = repository_deep_scan(repository=repo, budget_bytes=smallest)
    assert result.measured == 1 and result.skipped_budget >= 1 and result.budget_left == 0
    assert Blob.objects.filter(
        manifest_layers__manifest__holdings__repository=repo, uncompressed_size__isnull=True
    ).exists()


def test_zstd_layer_measures_like_its_gzip_twin(test_registry, dockerd_server):
    """The same tar recompressed with zstd: same uncompressed size and diff_id as the engine's layer."""
    ref = test_registry.ref("apps/web", "1.0")
    diff_id, size = engine_layers(dockerd_server, ref)[-1]
    digest = test_registry.image("apps/web", "1.0").digest
    scan_repo(test_registry, "apps/web", "1.0")
    blob = ManifestLayer.objects.filter(manifest__digest=digest).order_by("-position").first().blob
    algo, hexd = blob.digest.split(":")
    tar = gzip.decompress(
        (Path(test_registry.registry.root) / BLOBS_SUBPATH / algo / hexd[:2] / hexd / "data").read_bytes()
    )
    zst = zstandard.ZstdCompressor().compress(tar)
    chunks = iter([zst[i : i + 1000] for i in range(0, len(zst), 1000)])
    m = measure_stream(
        chunks,
        digest="sha256:" + hashlib.sha256(zst).hexdigest(),
        media_type="application/vnd.oci.image.layer.v1.tar+zstd",
        budget=ByteBudget(len(zst)),
        expected_diff_id=diff_id,
    )
    assert (m.diff_id, m.uncompressed_size, m.diff_id_verified) == (diff_id, size, True)
    assert m.tar_bytes == len(tar) > m.uncompressed_size
    with pytest.raises(BudgetExceeded):
        measure_stream(
            iter([zst]),
            digest="sha256:" + hashlib.sha256(zst).hexdigest(),
            media_type="application/vnd.oci.image.layer.v1.tar+zstd",
            budget=ByteBudget(len(zst) - 1),
        )
