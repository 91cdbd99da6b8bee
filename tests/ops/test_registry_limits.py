"""Per-registry politeness limits set on the registry (API and admin), obeyed by real workers.

Three real registries behind slow proxies: one limited to one request at a time, one to a request
rate, one on the deployment's defaults. Each proxy counts what it
was sent (tests/support/slow_proxy.py): the limits are measured where the registry would see them.
"""

from __future__ import annotations

import time

import pytest

from analytics.admin.registries import RegistryForm
from analytics.models import Registry, Scan
from analytics.registries import registry_create
from analytics.scans.start import scan_start
from config.celery import app
from harness.celery_worker import CeleryWorker
from harness.pusher import Pusher
from harness.registry import RegistryServer
from tests.support.slow_proxy import SlowProxy

REPOSITORIES = ("limits/a", "limits/b")
TAGS = 8
DEFAULT_CONCURRENCY = 4
RATE = 8.0


def test_limits_are_written_and_read_through_the_api(admin_client, db):
    resp = admin_client.post(
        "/api/v1/registries/",
        {"url": "http://limits.example:5000", "max_concurrency": 2, "max_requests_per_second": 2.5},
        content_type="application/json",
    )
    assert resp.status_code == 201, resp.content
    registry = Registry.objects.get(url="http://limits.example:5000")
    assert (registry.max_concurrency, registry.max_requests_per_second) == (2, 2.5)
    assert resp.json()["max_concurrency"] == 2

    resp = admin_client.patch(
        f"/api/v1/registries/{registry.id}/",
        {"max_concurrency": None, "max_requests_per_second": 0.5},
        content_type="application/json",
    )
    assert resp.status_code == 200, resp.content
    registry.refresh_from_db()
    assert (registry.max_concurrency, registry.max_requests_per_second) == (None, 0.5)


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_concurrency", 0),
        ("max_concurrency", -1),
        ("max_concurrency", 257),
        ("max_requests_per_second", 0),
        ("max_requests_per_second", 0.01),
        ("max_requests_per_second", 20000),
    ],
)
def test_out_of_range_limits_are_refused_by_the_api_and_the_admin_form(admin_client, db, field, value):
    registry = Registry.objects.create(name="r", url="http://limits.example:5000")
    resp = admin_client.patch(
        f"/api/v1/registries/{registry.id}/", {field: value}, content_type="application/json"
    )
    assert resp.status_code == 400 and field in resp.json(), resp.content
    registry.refresh_from_db()
    assert getattr(registry, field) is None
    form = RegistryForm(data={"name": "r2", "url": "http://other.example:5000", field: value})
    assert not form.is_valid() and field in form.errors


@pytest.fixture(scope="module")
def limits_registries():
    """Three real registries with content of their own (manifests already recorded are not read again,
    so shared content would leave the last registry scanned with few requests to count)."""
    servers = [RegistryServer().start() for _ in range(3)]
    try:
        for i, server in enumerate(servers):
            with Pusher(server.url) as push:
                for name in REPOSITORIES:
                    push.repository(name, tags=TAGS, seed=f"limits-{i}")
        yield servers
    finally:
        for server in servers:
            server.cleanup()


@pytest.fixture
def proxies(limits_registries):
    made = [SlowProxy(server.url, delay=0.05).start() for server in limits_registries]
    yield made
    for proxy in made:
        proxy.stop()


@pytest.fixture
def two_workers(transactional_db, settings):
    app.control.purge()
    env = {
        "REGISTRY_CONCURRENCY_LIMIT": str(DEFAULT_CONCURRENCY),
        "REGISTRY_RATE_LIMIT": "0",
        "SCAN_TASK_BATCH": "1",
    }
    started = [
        CeleryWorker(
            database_name=settings.DATABASES["default"]["NAME"],
            broker_url=settings.CELERY_BROKER_URL,
            concurrency=2,
            env=env,
        ).start()
        for _ in range(2)
    ]
    yield started
    for worker in started:
        worker.stop()
    app.control.purge()


def max_in_window(starts: list[float], window: float) -> int:
    starts = sorted(starts)
    best, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.integration
def test_registry_limits_hold_across_workers_while_another_registry_keeps_the_default(proxies, two_workers):
    one_at_a_time, rated, default = proxies
    registry_create(url=one_at_a_time.url, name="one-at-a-time", max_concurrency=1)
    registry_create(url=rated.url, name="rated", max_requests_per_second=RATE)
    registry_create(url=default.url, name="default")
    scans = [scan_start(target=p.url) for p in proxies]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if Scan.objects.filter(id__in=[s.id for s in scans], finished_at__isnull=False).count() == 3:
            break
        time.sleep(0.2)
    statuses = list(Scan.objects.filter(id__in=[s.id for s in scans]).values_list("status", flat=True))
    assert statuses == [Scan.Status.SUCCEEDED] * 3, (statuses, two_workers[0].log_text()[-3000:])
    # Every repository was read through each proxy, by both workers' processes together.
    for proxy in proxies:
        assert {
            n for n in REPOSITORIES if any(f"/v2/{n}/manifests/" in s.path for s in proxy.state.seen)
        } == set(REPOSITORIES)

    assert one_at_a_time.state.max_in_flight == 1
    # The default registry was not held to either limit: several requests at once, up to the default.
    assert 2 <= default.state.max_in_flight <= DEFAULT_CONCURRENCY

    # A token bucket of RATE per second with a burst of RATE: no window of T seconds sees more than
    # RATE + RATE * T requests (one more for the clocks of the workers' Redis and this proxy).
    starts = [s.start for s in rated.state.seen]
    assert max_in_window(starts, 1.0) <= 2 * RATE + 1
    span = max(starts) - min(starts)
    assert len(starts) <= RATE + RATE * span + 1
    assert len(starts) > 2 * RATE + 1  # enough requests for the limit to bind
    # The default registry, with the same content, was read faster than the rate allowed: some window
    # holds more requests than the bucket lets through (any length: on a busy machine the burst may be
    # shorter than a second).
    default_starts = [s.start for s in default.state.seen]
    windows = (0.25, 0.5, 1.0, 2.0)
    assert any(max_in_window(default_starts, w) > RATE + RATE * w + 1 for w in windows), [
        max_in_window(default_starts, w) for w in windows
    ]
