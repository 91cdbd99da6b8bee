"""Deep scan: layers streamed from the registry measure what the engine measured for the same layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import pytest
import zstandard

from analytics.models import Blob, ManifestLayer, Repository, Scan
from analytics.scans.deep import repository_deep_scan
from analytics.scans.start import scan_create, scan_request_resolve, scan_run_inline
from harness.registry import BLOBS_SUBPATH
from workers.registry.deep import BudgetExceeded, ByteBudget, measure_stream

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def scan_repo(test_registry, repo: str, tag: str) -> Repository:
    request = scan_request_resolve(target=f"{test_registry.host}/{repo}:{tag}")
    scan = scan_create(registry=request.registry, repository=request.repository, tag=request.tag)
    assert scan_run_inline(scan_id=scan.id).status == Scan.Status.SUCCEEDED
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


def test_scan_command_deep_measures_each_layer_like_the_engine(test_registry, dockerd_server):
    from django.core.management import call_command

    ref = test_registry.ref("apps/api", "1.0")
    call_command("scan", f"{test_registry.host}/apps/api:1.0", "--inline", "--deep", stdout=io.StringIO())
    scan = Scan.objects.get(repository__name="apps/api", tag="1.0")
    expected = engine_layers(dockerd_server, ref)
    assert scan.status == Scan.Status.SUCCEEDED and scan.deep_budget_bytes == 1024**3
    assert scan.deep_measured_count == len({d for d, _ in expected})
    digest = test_registry.image("apps/api", "1.0").digest
    layers = ManifestLayer.objects.filter(manifest__digest=digest).select_related("blob").order_by("position")
    assert [(ml.blob.diff_id, ml.blob.uncompressed_size) for ml in layers] == expected


def test_scan_command_deep_budget_too_small_measures_nothing_and_is_no_error(test_registry):
    from django.core.management import call_command

    call_command(
        "scan",
        f"{test_registry.host}/apps/web:1.0",
        "--inline",
        "--deep",
        "--deep-budget",
        "1",
        stdout=io.StringIO(),
    )
    scan = Scan.objects.get(repository__name="apps/web", tag="1.0")
    assert (scan.status, scan.deep_measured_count, scan.errors_count) == (Scan.Status.SUCCEEDED, 0, 0)
    assert not Blob.objects.filter(
        manifest_layers__manifest__holdings__repository=scan.repository, uncompressed_size__isnull=False
    ).exists()


def test_api_deep_scan_option_runs_the_deep_scan_in_the_task(
    test_registry, dockerd_server, monkeypatch, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    from config.celery import app
    from workers import tasks

    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **kw: sent.append((name, args)))
    client = APIClient()
    client.force_authenticate(User.objects.create_user("ops", is_staff=True))
    with django_capture_on_commit_callbacks(execute=True):  # the task is sent on commit
        response = client.post(
            "/api/v1/scans/",
            {"target": f"{test_registry.host}/apps/api:1.0", "deep": True, "deep_budget": 50_000_000},
            format="json",
        )
    assert response.status_code == 202, response.content
    assert response.json()["deep_budget_bytes"] == 50_000_000
    ((name, args),) = sent
    tasks.scan_repository.apply(args=args)  # the task body, in this process
    scan = Scan.objects.get(id=args[0])
    expected = engine_layers(dockerd_server, test_registry.ref("apps/api", "1.0"))
    assert scan.status == Scan.Status.SUCCEEDED and scan.deep_measured_count == len(expected)
    assert client.get(f"/api/v1/scans/{scan.id}/").json()["deep_measured_count"] == len(expected)
