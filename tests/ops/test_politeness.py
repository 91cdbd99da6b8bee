"""The per-registry gate against the real Redis: a concurrency cap and a token bucket shared by clients."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
from django.conf import settings

from analytics.infra.politeness import RedisGate, shared_redis
from workers.registry import RegistryClient
from workers.registry.transport import RequestEvent


@pytest.fixture
def redis_client():
    return shared_redis(settings.CELERY_BROKER_URL)


def gate(redis_client, **kwargs) -> RedisGate:
    return RedisGate(redis_client, key=f"test-{uuid.uuid4().hex}", **kwargs)


def test_concurrency_cap_holds_across_separate_gates(redis_client):
    key = f"test-{uuid.uuid4().hex}"
    in_flight = peak = 0
    lock = threading.Lock()

    def work():
        nonlocal in_flight, peak
        g = RedisGate(redis_client, key=key, concurrency=3, rate=0)  # one gate per "worker"
        for _ in range(5):
            with g.admit():
                with lock:
                    in_flight += 1
                    peak = max(peak, in_flight)
                time.sleep(0.01)
                with lock:
                    in_flight -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 3


def test_slot_of_a_dead_holder_expires(redis_client):
    g = gate(redis_client, concurrency=1, rate=0, slot_ttl=0.3)
    g._try("dead-worker")  # taken and never given back
    t0 = time.monotonic()
    with g.admit():
        waited = time.monotonic() - t0
    assert 0.2 <= waited < 2.0


def test_token_bucket_spaces_requests_at_the_rate(redis_client):
    g = gate(redis_client, concurrency=0, rate=20, burst=1)
    t0 = time.monotonic()
    for _ in range(11):
        with g.admit():
            pass
    elapsed = time.monotonic() - t0
    assert 0.45 <= elapsed < 1.5  # 10 intervals of 50 ms after the first token


def test_gate_gives_up_with_a_transient_error(redis_client):
    from workers.registry.errors import TransportError

    g = gate(redis_client, concurrency=1, rate=0, max_wait=0.2)
    g._try("holder")
    with pytest.raises(TransportError) as info, g.admit():
        pass
    assert info.value.transient and "no request slot" in str(info.value)


def test_client_passes_every_attempt_through_the_gate_and_observer(redis_client):
    g = gate(redis_client, concurrency=1, rate=0)
    events: list[RequestEvent] = []
    held: list[int] = []
    calls = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        held.append(g.in_flight())
        return httpx.Response(
            next(calls), json={}, headers={"Docker-Distribution-API-Version": "registry/2.0"}
        )

    with RegistryClient(
        "http://registry.test:5000",
        transport=httpx.MockTransport(handler),
        allow_plain_http=True,
        gate=g,
        observer=events.append,
        sleep=lambda s: None,
    ) as client:
        client.ping()
    assert held == [1, 1]  # a slot was held during each attempt
    assert g.in_flight() == 0  # and given back
    assert [(e.route, e.status) for e in events] == [("base", 503), ("base", 200)]
