"""Real processes for the fault tests: a scratch CNCF registry with generated images, a slow proxy in
front of it, and Celery workers that can be killed. Each test finishes in well under a minute."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from harness.celery_worker import CeleryWorker
from harness.pusher import PushedRepository, Pusher
from harness.registry import RegistryServer
from harness.tools import free_loopback_port
from tests.support.slow_proxy import SlowProxy
from tests.support.workers import workers_on_demand

REPOSITORIES = ("fault/alpha", "fault/beta", "fault/gamma")
TAGS = 16
# What the workers run with: short leases (a dead worker is noticed within seconds), quick retries,
# and a per-registry cap of 2 requests in flight shared by every worker (checked at the proxy).
WORKER_ENV = {
    "SCAN_LEASE_SECONDS": "3",
    "SCAN_BUSY_RETRY_SECONDS": "1",
    "SCAN_RETRY_BACKOFF_SECONDS": "1",
    "REGISTRY_CONCURRENCY_LIMIT": "2",
    "REGISTRY_RETRIES": "2",
    # A killed worker's request slots expire after twice this and 5 s (analytics/infra/politeness.py).
    "REGISTRY_TIMEOUT_SECONDS": "3",
    "LOG_FORMAT": "json",
}
CAP = 2


@pytest.fixture(scope="module")
def fault_registry():
    """A real registry (fixed port, so it can be restarted) holding generated images."""
    server = RegistryServer(port=free_loopback_port()).start()
    with Pusher(server.url) as push:
        pushed = {name: push.repository(name, tags=TAGS, seed="faults") for name in REPOSITORIES}
    try:
        yield server, pushed
    finally:
        server.cleanup()


@pytest.fixture
def slow_proxy(fault_registry):
    proxy = SlowProxy(fault_registry[0].url, delay=0.08).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def workers(transactional_db, settings):
    """Start workers on demand (`start(concurrency, **env)`: `WORKER_ENV` plus `env`); all are stopped
    at the end."""
    settings.SCAN_LEASE_SECONDS = 3
    settings.SCAN_REQUEUE_AFTER_SECONDS = 4
    with workers_on_demand(WORKER_ENV) as start:
        yield start


def scan_events(*workers: CeleryWorker) -> list[dict]:
    """The workers' JSON log lines about scans starting and finishing, with a parsed `at`."""
    events = []
    for worker in workers:
        for line in worker.log_text().splitlines():
            if not line.startswith("{"):
                continue
            doc = json.loads(line)
            if doc.get("event") in ("scan_started", "scan_finished"):
                doc["at"] = datetime.fromisoformat(doc["ts"]).timestamp()
                doc["worker"] = worker.name
                events.append(doc)
    return sorted(events, key=lambda d: d["at"])


def overlapping_scans(events: list[dict], killed_at: dict[str, float] | None = None) -> list[tuple]:
    """Pairs of scan runs of one repository whose [started, finished] intervals overlap.

    A run that never finished ends when its worker was killed (`killed_at` by worker name)."""
    killed_at = killed_at or {}
    runs: dict[tuple, list[float]] = {}
    for e in events:
        key = (e["worker"], e["pid"], e["scan_id"])
        if e["event"] == "scan_started":
            runs[key] = [e["at"], killed_at.get(e["worker"], float("inf")), e["repository_id"]]
        elif key in runs:
            runs[key][1] = e["at"]
    found = []
    items = sorted(runs.items(), key=lambda kv: kv[1][0])
    for i, (key_a, (_start_a, end_a, repo_a)) in enumerate(items):
        for key_b, (start_b, _end_b, repo_b) in items[i + 1 :]:
            if repo_a == repo_b and start_b < end_a:
                found.append((key_a, key_b))
    return found


def recorded(registry_url: str) -> dict[str, dict[str, str]]:
    """{repository: {tag: manifest digest}} as recorded for the registry (current tags only)."""
    from analytics.models import Tag

    out: dict[str, dict[str, str]] = {}
    rows = Tag.objects.filter(repository__registry__url=registry_url, removed_at__isnull=True).values_list(
        "repository__name", "name", "manifest__digest"
    )
    for repository, tag, digest in rows:
        out.setdefault(repository, {})[tag] = digest
    return out


def truth(pushed: dict[str, PushedRepository]) -> dict[str, dict[str, str]]:
    return {name: dict(p.tags) for name, p in pushed.items()}
