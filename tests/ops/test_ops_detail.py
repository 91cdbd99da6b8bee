"""What `/readyz` and `/metrics` tell a stranger: no registry host and no failure reason. The detail is
for a caller with the metrics token, or a logged-in staff user; without a token set, `/metrics` is still
scraped by anyone, summed over registries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.infra import telemetry
from analytics.infra.politeness import shared_redis
from analytics.models import Registry, Scan, SummarySnapshot
from workers.registry.transport import RequestEvent

pytestmark = pytest.mark.django_db
HOSTS = ("registry.corp.example:5000", "mirror.corp.example")
TOKEN = {"HTTP_AUTHORIZATION": "Bearer ops-token"}


@pytest.fixture
def registries(settings):
    redis = shared_redis(settings.LAYERLENS_REDIS_URL)
    redis.delete(telemetry.METRICS_KEY)
    sink = telemetry.MetricsSink(redis)
    for i, host in enumerate(HOSTS):
        registry = Registry.objects.create(
            name=host, url=f"https://{host}", tracked=True, scan_interval=timedelta(hours=1)
        )
        Scan.objects.create(
            kind="registry", registry=registry, status="succeeded", finished_at=timezone.now()
        )
        SummarySnapshot.objects.create(
            taken_at=timezone.now(),
            registry=registry,
            images=2 + i,
            manifests=3,
            distinct_layers=3,
            logical_bytes=300,
            stored_bytes=100,
            saved_bytes=200,
        )
        sink.request(RequestEvent(f"https://{host}", "GET", "manifest", 200, None, 0.02), registry=host)
    sink.flush()
    yield
    redis.delete(telemetry.METRICS_KEY)


def named(text: str) -> bool:
    return any(host in text for host in HOSTS)


def test_readyz_tells_a_stranger_only_its_status(client, registries, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # down: its error would name it
    for token in ("", "ops-token"):  # no token set, or a wrong one given
        settings.LAYERLENS_METRICS_TOKEN = token
        resp = client.get("/readyz", HTTP_AUTHORIZATION="Bearer wrong")
        body = resp.json()
        assert resp.status_code == 503 and body["ready"] is False
        assert set(body) == {"ready", "database", "broker", "events"}
        assert set(body["broker"]) == {"ok", "seconds"} and body["broker"]["ok"] is False
        assert not named(resp.content.decode()) and "127.0.0.1" not in resp.content.decode()


def test_readyz_detail_for_the_token_or_staff(client, admin_client, registries, settings):
    settings.LAYERLENS_METRICS_TOKEN = "ops-token"
    detail = client.get("/readyz", **TOKEN).json()
    assert detail["ready"] is True and {r["registry"] for r in detail["registries"]} == set(HOSTS)
    assert {r["registry"] for r in admin_client.get("/readyz").json()["registries"]} == set(HOSTS)


def test_metrics_without_a_token_set_are_scraped_by_anyone_summed_over_registries(
    client, registries, settings
):
    settings.LAYERLENS_METRICS_TOKEN = ""
    resp = client.get("/metrics")
    text = resp.content.decode()
    assert resp.status_code == 200 and not named(text) and "registry=" not in text
    assert "layerlens_registry_images 5.0" in text and "layerlens_registry_saved_bytes 400.0" in text
    assert "layerlens_registry_dedup_ratio 3.0" in text
    assert 'layerlens_registry_requests_total{code="200",route="manifest"} 2.0' in text
    assert 'layerlens_registry_request_seconds_count{route="manifest"} 2.0' in text
    assert 'layerlens_scans{kind="registry",status="running"} 0.0' in text


def test_metrics_with_a_token_set_answer_only_the_token_or_staff_by_registry(
    client, admin_client, registries, settings
):
    settings.LAYERLENS_METRICS_TOKEN = "ops-token"
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert not named(refused.content.decode())
    for resp in (client.get("/metrics", **TOKEN), admin_client.get("/metrics")):
        text = resp.content.decode()
        assert resp.status_code == 200
        assert f'layerlens_registry_images{{registry="{HOSTS[0]}"}} 2.0' in text
        assert (
            f'layerlens_registry_requests_total{{code="200",registry="{HOSTS[1]}",route="manifest"}} 1.0'
            in text
        )
