from collections.abc import Iterator

import pytest
from django.conf import settings

from config.celery import app
from harness.celery_worker import CeleryWorker


@pytest.fixture
def celery_worker(transactional_db):
    """A real worker on the test broker database, reading and writing the test database."""
    app.control.purge()  # leftovers of an earlier, interrupted run
    worker = CeleryWorker(
        database_name=settings.DATABASES["default"]["NAME"], broker_url=settings.CELERY_BROKER_URL
    ).start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def workers(transactional_db) -> Iterator:
    """`start(concurrency, queues, **env)`; every worker started is stopped at the end."""
    app.control.purge()
    started: list[CeleryWorker] = []

    def start(concurrency: int = 2, queues: tuple[str, ...] = ("control", "interactive", "bulk"), **env: str):
        worker = CeleryWorker(
            database_name=settings.DATABASES["default"]["NAME"],
            broker_url=settings.CELERY_BROKER_URL,
            concurrency=concurrency,
            queues=queues,
            env=env,
        ).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    app.control.purge()
