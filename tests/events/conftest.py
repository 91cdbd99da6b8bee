"""A followed registry: a real docker-registry whose `notifications:` endpoint is this test run's live
web server, its row with an events secret, a real Celery worker applying what it sends, and a
reference: the same registry behind a loopback proxy, scanned in full into a row of its own."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from analytics.models import Registry
from analytics.registries import registry_upsert
from harness.celery_worker import CeleryWorker
from harness.registry import Notify, RegistryServer
from harness.tools import free_loopback_port
from tests.support.slow_proxy import SlowProxy
from tests.support.workers import workers_on_demand

# The worker's scan lease (the repository lease events are applied under) is short, so a killed
# worker's repository is free again within seconds, as a test can wait for.
WORKER_ENV = {"SCAN_LEASE_SECONDS": "6", "SCAN_BUSY_RETRY_SECONDS": "1", "EVENTS_SWEEP_AFTER_SECONDS": "2"}


@dataclass
class Followed:
    server: RegistryServer
    row: Registry
    proxy: SlowProxy  # the same registry under another URL, for the reference scan's row
    secret: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host


@pytest.fixture
def followed(live_server, transactional_db) -> Iterator[Followed]:
    port = free_loopback_port()
    row = registry_upsert(url=f"http://127.0.0.1:{port}", name="followed")
    secret = secrets.token_urlsafe(24)
    row.set_events_secret(secret)
    row.save()
    notify = Notify(
        f"{live_server.url}/api/v1/registries/{row.id}/events/",
        headers={"Authorization": f"Bearer {secret}"},
        timeout="5s",
        backoff="500ms",
    )
    with RegistryServer(port=port, notify=notify) as server:
        proxy = SlowProxy(server.url, delay=0).start()
        try:
            yield Followed(server, row, proxy, secret)
        finally:
            proxy.stop()


@pytest.fixture
def start_worker(transactional_db) -> Iterator[Callable[..., CeleryWorker]]:
    """`start(**env)` a real worker on the test broker and database; all are stopped at the end."""
    with workers_on_demand(WORKER_ENV) as start:
        yield start
