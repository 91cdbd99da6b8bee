"""The stuck-scan sweeper, leases on registry scans, /healthz, /readyz, /metrics and JSON logs."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.infra import telemetry
from analytics.infra.logs import JsonFormatter, log_context
from analytics.infra.politeness import shared_redis
from analytics.models import Registry, Repository, Scan, ScanError, SummarySnapshot
from analytics.scans.schedule import stuck_scans_requeue
from analytics.scans.state import scan_claim
from config.celery import app

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch, django_capture_on_commit_callbacks):
    """Task names and ids sent to the broker (captured, not sent)."""
    out: list[tuple[str, int]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args: out.append((name, args[0])))
    return out


@pytest.fixture
def registry():
    return Registry.objects.create(name="reg", url="http://127.0.0.1:5999")


def test_running_scan_with_expired_lease_is_queued_again_and_counted(registry, sent, settings):
    repo = Repository.objects.create(registry=registry, name="a")
    past = timezone.now() - timedelta(seconds=5)
    dead = Scan.objects.create(
        kind="repository", registry=registry, repository=repo, status="running", lease_until=past
    )
    live = Scan.objects.create(
        kind="repository",
        registry=registry,
        repository=Repository.objects.create(registry=registry, name="b"),
        status="running",
        lease_until=timezone.now() + timedelta(seconds=60),
    )
    waiting_parent = Scan.objects.create(
        kind="registry", registry=registry, status="running", lease_until=None
    )
    assert stuck_scans_requeue() == [dead.id]
    dead.refresh_from_db()
    assert (dead.status, dead.takeovers, dead.lease_until) == ("queued", 1, None)
    assert dead.enqueued_at is not None
    live.refresh_from_db()
    waiting_parent.refresh_from_db()
    assert live.status == waiting_parent.status == "running"


def test_queued_scan_whose_task_was_lost_is_sent_again(
    registry, sent, settings, django_capture_on_commit_callbacks
):
    settings.SCAN_REQUEUE_AFTER_SECONDS = 60
    old = Scan.objects.create(
        kind="registry", registry=registry, enqueued_at=timezone.now() - timedelta(minutes=5)
    )
    fresh = Scan.objects.create(kind="registry", registry=registry, enqueued_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert stuck_scans_requeue() == [old.id]
    assert sent == [("workers.tasks.scan_registry", old.id)]
    fresh.refresh_from_db()
    assert fresh.status == "queued"


def test_scan_whose_workers_keep_dying_is_failed_with_the_reason(
    registry, sent, settings, django_capture_on_commit_callbacks
):
    settings.SCAN_MAX_ATTEMPTS = 3
    repo = Repository.objects.create(registry=registry, name="a")
    scan = Scan.objects.create(
        kind="repository",
        registry=registry,
        repository=repo,
        status="running",
        takeovers=2,
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert stuck_scans_requeue() == []
    scan.refresh_from_db()
    assert scan.status == "failed" and "stopped 3 times" in scan.message
    assert ScanError.objects.get(scan=scan).kind == "WorkerLost"
    assert sent == []


def test_registry_scan_left_running_by_a_dead_worker_is_taken_over_once_its_lease_expires(registry):
    scan = Scan.objects.create(
        kind="registry",
        registry=registry,
        status="running",
        lease_until=timezone.now() + timedelta(seconds=60),
    )
    assert scan_claim(scan.id) is None  # its worker may still be alive
    Scan.objects.filter(id=scan.id).update(lease_until=timezone.now() - timedelta(seconds=1))
    claimed = scan_claim(scan.id)
    assert claimed is not None and claimed.takeovers == 1 and claimed.lease_until > timezone.now()


def test_healthz_and_readyz(client, registry, settings):
    settings.LAYERLENS_METRICS_TOKEN = "ops-token"  # the registries' freshness is for operators
    assert client.get("/healthz").json() == {"status": "ok"}
    registry.tracked, registry.scan_interval = True, timedelta(hours=1)
    registry.save()
    Scan.objects.create(
        kind="registry",
        registry=registry,
        status="succeeded",
        finished_at=timezone.now() - timedelta(hours=3),
    )
    resp = client.get("/readyz", HTTP_AUTHORIZATION="Bearer ops-token")
    body = resp.json()
    assert resp.status_code == 200 and body["ready"] is True
    assert body["database"]["ok"] and body["broker"]["ok"]
    (fresh,) = body["registries"]
    assert (
        fresh["registry"] == "reg"
        and fresh["ok"] is False
        and 3 * 3600 - 60 < fresh["age_seconds"] < 3 * 3600 + 60
    )


def test_readyz_is_503_when_the_broker_is_down_or_scans_are_stale_and_required(client, registry, settings):
    settings.LAYERLENS_READY_REQUIRES_FRESH_SCANS = True
    settings.LAYERLENS_METRICS_TOKEN = "ops-token"
    registry.tracked, registry.scan_interval = True, timedelta(minutes=1)
    registry.save()
    Registry.objects.filter(id=registry.id).update(created_at=timezone.now() - timedelta(hours=1))
    resp = client.get("/readyz", HTTP_AUTHORIZATION="Bearer ops-token")
    assert resp.status_code == 503 and resp.json()["registries"][0]["ok"] is False

    settings.LAYERLENS_READY_REQUIRES_FRESH_SCANS = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.json()["broker"]["ok"] is False


def test_metrics_expose_scans_worker_counters_and_dedup_gauges(client, registry, settings):
    settings.LAYERLENS_METRICS_TOKEN = "ops-token"  # per-registry series are for operators
    redis = shared_redis(settings.LAYERLENS_REDIS_URL)
    redis.delete(telemetry.METRICS_KEY)
    Scan.objects.create(kind="repository", registry=registry, status="running")
    SummarySnapshot.objects.create(
        taken_at=timezone.now(),
        registry=registry,
        images=4,
        manifests=5,
        distinct_layers=3,
        logical_bytes=300,
        stored_bytes=100,
        saved_bytes=200,
    )
    sink = telemetry.MetricsSink(redis)
    from workers.registry.transport import RequestEvent

    for status, seconds in ((200, 0.02), (200, 0.2), (503, 1.5)):
        sink.request(RequestEvent("http://x", "GET", "manifest", status, None, seconds), registry="reg")
    sink.request(RequestEvent("http://x", "GET", "blob", None, "ConnectError", 0.001), registry="reg")
    sink.flush()
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ops-token").content.decode()
    assert 'layerlens_scans{kind="repository",status="running"} 1.0' in text
    assert 'layerlens_registry_requests_total{code="200",registry="reg",route="manifest"} 2.0' in text
    assert 'layerlens_registry_request_errors_total{kind="http_503",registry="reg"} 1.0' in text
    assert 'layerlens_registry_request_errors_total{kind="ConnectError",registry="reg"} 1.0' in text
    assert 'layerlens_registry_request_seconds_bucket{le="0.25",registry="reg",route="manifest"} 2.0' in text
    assert 'layerlens_registry_request_seconds_count{registry="reg",route="manifest"} 3.0' in text
    assert 'layerlens_registry_saved_bytes{registry="reg"} 200.0' in text
    assert 'layerlens_registry_dedup_ratio{registry="reg"} 3.0' in text


def test_metrics_token(client, settings):
    settings.LAYERLENS_METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_json_log_line_carries_the_bound_scan_and_repository_ids():
    from analytics.infra.logs import ContextFilter

    record = logging.LogRecord("analytics.services", logging.INFO, __file__, 1, "scan %s started", (7,), None)
    with log_context(scan_id=7, repository_id=3):
        ContextFilter().filter(record)
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "scan 7 started" and doc["scan_id"] == 7 and doc["repository_id"] == 3
    assert doc["level"] == "INFO" and "\n" not in JsonFormatter().format(record)


def test_progress_is_written_to_the_scan_and_its_parent_and_taken_back_on_a_rerun(registry, admin_client):
    from analytics.scans.runtime import Progress

    parent = Scan.objects.create(kind="registry", registry=registry, status="running", repositories_total=2)
    repo = Repository.objects.create(registry=registry, name="a")
    child = Scan.objects.create(kind="repository", registry=registry, repository=repo, parent=parent)
    progress = Progress.restart(child)
    progress(256, 256)  # within the first second: kept for the finishing transaction or a flush
    child.refresh_from_db()
    assert (child.tags_done, child.tags_total) == (0, 0)
    progress.flush()
    child.refresh_from_db()
    assert (child.tags_done, child.tags_total) == (256, 256)
    progress(300, 300)  # within the second after that flush: kept for the next one
    child.refresh_from_db()
    assert (child.tags_done, child.tags_total) == (256, 256)
    progress.flush()
    body = admin_client.get(f"/api/v1/scans/{parent.id}/").json()
    assert (body["tags_done"], body["tags_total"], body["repositories_total"]) == (300, 300, 2)

    child.refresh_from_db()
    Progress.restart(child)  # the worker died; the next run starts from zero
    parent.refresh_from_db()
    child.refresh_from_db()
    assert (parent.tags_done, child.tags_done) == (0, 0)
