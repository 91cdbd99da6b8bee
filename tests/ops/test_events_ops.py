"""The events inbox in `/metrics` and `/readyz`, from inbox rows made directly and counters pushed to
Redis as any process pushes them: per registry for operators, summed (and no host) for anyone else; ready
until the oldest pending event has waited past EVENTS_READY_MAX_AGE_SECONDS."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.infra import telemetry
from analytics.infra.politeness import shared_redis
from analytics.models import Registry, RegistryEvent

pytestmark = pytest.mark.django_db
FOLLOWED = "events.corp.example:5000"
QUIET = "quiet.corp.example"
UNFOLLOWED = "plain.corp.example"
TOKEN = {"HTTP_AUTHORIZATION": "Bearer ops-token"}


@pytest.fixture
def inbox(settings):
    """FOLLOWED: two events pending (received 400 s and 10 s ago) and an old one applied; QUIET: followed,
    nothing pending; UNFOLLOWED: not followed, one event pending 50 s (sent before its secret was cleared).
    Counters as the receiver and the worker push them."""
    redis = shared_redis(settings.LAYERLENS_REDIS_URL)
    redis.delete(telemetry.METRICS_KEY)
    now = timezone.now()
    rows = {}
    for host, secret in ((FOLLOWED, "s" * 20), (QUIET, "q" * 20), (UNFOLLOWED, "")):
        registry = Registry(name=host, url=f"https://{host}")
        registry.set_events_secret(secret)
        registry.save()
        rows[host] = registry

    def event(host: str, key: str, age: float, *, applied: bool = False) -> None:
        RegistryEvent.objects.create(
            registry=rows[host],
            source="distribution",
            key=key,
            action="push",
            repository="team/app",
            received_at=now - timedelta(seconds=age),
            applied_at=now if applied else None,
        )

    event(FOLLOWED, "old", 4000, applied=True)
    event(FOLLOWED, "p1", 400)
    event(FOLLOWED, "p2", 10)
    event(UNFOLLOWED, "p3", 50)
    sink = telemetry.MetricsSink(redis)
    sink.add(telemetry.EVENTS_RECEIVED, {"registry": FOLLOWED}, 3)
    sink.add(telemetry.EVENTS_RECEIVED, {"registry": UNFOLLOWED}, 1)
    sink.add(telemetry.EVENTS_APPLIED, {"registry": FOLLOWED}, 1)
    sink.add(telemetry.EVENTS_DUPLICATE, {"registry": FOLLOWED}, 2)
    sink.add(telemetry.EVENTS_REFUSED, {"registry": FOLLOWED, "reason": "unauthorized"}, 5)
    sink.add(telemetry.EVENTS_REFUSED, {"registry": QUIET, "reason": "malformed"}, 1)
    sink.flush()
    yield rows
    redis.delete(telemetry.METRICS_KEY)


def _sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def test_metrics_show_the_inbox_and_the_events_counters_per_registry_to_operators(
    client, admin_client, inbox, settings
):
    settings.LAYERLENS_METRICS_TOKEN = "ops-token"
    for resp in (client.get("/metrics", **TOKEN), admin_client.get("/metrics")):
        text = resp.content.decode()
        assert resp.status_code == 200
        assert _sample(text, "layerlens_events_pending", f'{{registry="{FOLLOWED}"}}') == 2
        assert _sample(text, "layerlens_events_pending", f'{{registry="{QUIET}"}}') == 0
        assert _sample(text, "layerlens_events_pending", f'{{registry="{UNFOLLOWED}"}}') == 1
        age = "layerlens_events_oldest_pending_age_seconds"
        assert 400 <= _sample(text, age, f'{{registry="{FOLLOWED}"}}') < 460
        assert _sample(text, age, f'{{registry="{QUIET}"}}') == 0
        assert 50 <= _sample(text, age, f'{{registry="{UNFOLLOWED}"}}') < 110
        assert _sample(text, "layerlens_events_received_total", f'{{registry="{FOLLOWED}"}}') == 3
        assert _sample(text, "layerlens_events_applied_total", f'{{registry="{FOLLOWED}"}}') == 1
        assert _sample(text, "layerlens_events_duplicate_total", f'{{registry="{FOLLOWED}"}}') == 2
        refused = "layerlens_events_refused_total"
        assert _sample(text, refused, f'{{reason="unauthorized",registry="{FOLLOWED}"}}') == 5
        assert _sample(text, refused, f'{{reason="malformed",registry="{QUIET}"}}') == 1
        assert "# TYPE layerlens_events_refused_total counter" in text


def test_metrics_for_anyone_are_summed_over_registries(client, inbox, settings):
    settings.LAYERLENS_METRICS_TOKEN = ""
    text = client.get("/metrics").content.decode()
    assert not any(host in text for host in (FOLLOWED, QUIET, UNFOLLOWED)) and "registry=" not in text
    assert _sample(text, "layerlens_events_pending") == 3
    assert 400 <= _sample(text, "layerlens_events_oldest_pending_age_seconds") < 460  # the oldest of all
    assert _sample(text, "layerlens_events_received_total") == 4
    assert _sample(text, "layerlens_events_refused_total", '{reason="unauthorized"}') == 5


def test_an_empty_inbox_is_zero_not_missing(client, db, settings):
    settings.LAYERLENS_METRICS_TOKEN = ""
    text = client.get("/metrics").content.decode()
    assert _sample(text, "layerlens_events_pending") == 0
    assert _sample(text, "layerlens_events_oldest_pending_age_seconds") == 0


def test_readyz_fails_when_the_oldest_pending_event_is_too_old(client, admin_client, inbox, settings):
    settings.EVENTS_READY_MAX_AGE_SECONDS = 300  # FOLLOWED's oldest pending event waited 400 s
    settings.LAYERLENS_METRICS_TOKEN = "ops-token"
    stranger = client.get("/readyz")
    body = stranger.json()
    assert stranger.status_code == 503 and body["ready"] is False
    assert body["database"]["ok"] and body["broker"]["ok"] and body["events"]["ok"] is False
    assert 400 <= body["events"]["oldest_age_seconds"] < 460
    assert "more than EVENTS_READY_MAX_AGE_SECONDS (300 s)" in body["events"]["error"]
    assert not any(host in stranger.content.decode() for host in (FOLLOWED, QUIET, UNFOLLOWED))

    for resp in (client.get("/readyz", **TOKEN), admin_client.get("/readyz")):
        detail = resp.json()["events"]
        assert resp.status_code == 503 and detail["max_age_seconds"] == 300
        by_name = {r["registry"]: r for r in detail["registries"]}
        assert (by_name[FOLLOWED]["pending"], by_name[QUIET]["pending"], by_name[UNFOLLOWED]["pending"]) == (
            2,
            0,
            1,
        )
        assert by_name[QUIET]["oldest_age_seconds"] is None and by_name[UNFOLLOWED]["followed"] is False


@pytest.mark.parametrize("limit", [600, 0])
def test_readyz_is_ready_under_the_threshold_or_with_the_check_off(client, inbox, settings, limit):
    settings.EVENTS_READY_MAX_AGE_SECONDS = limit
    resp = client.get("/readyz")
    assert resp.status_code == 200 and resp.json()["events"] == {
        "ok": True,
        "oldest_age_seconds": resp.json()["events"]["oldest_age_seconds"],
    }
    assert resp.json()["events"]["oldest_age_seconds"] >= 400


def test_applied_events_however_old_do_not_fail_readiness(client, inbox, settings):
    settings.EVENTS_READY_MAX_AGE_SECONDS = 300
    RegistryEvent.objects.filter(applied_at__isnull=True).update(applied_at=timezone.now())
    body = client.get("/readyz").json()
    assert body["ready"] is True and body["events"] == {"ok": True, "oldest_age_seconds": None}
