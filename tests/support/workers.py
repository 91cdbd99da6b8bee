"""Real Celery workers started on demand by a test, on its broker and database, all stopped at its end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings

from config.celery import app
from harness.celery_worker import CeleryWorker


@contextmanager
def workers_on_demand(worker_env: dict[str, str]) -> Iterator[Callable[..., CeleryWorker]]:
    """`start(concurrency=1, **env)` a worker with `worker_env` plus `env`; the queues are purged before
    and after, and every worker started is stopped."""
    app.control.purge()
    started: list[CeleryWorker] = []

    def start(concurrency: int = 1, **env: str) -> CeleryWorker:
        worker = CeleryWorker(
            database_name=settings.DATABASES["default"]["NAME"],
            broker_url=settings.CELERY_BROKER_URL,
            concurrency=concurrency,
            env={**worker_env, **env},
        ).start()
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
        app.control.purge()
