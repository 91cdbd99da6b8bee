"""Celery tasks: thin wrappers that handle retries and fan-out, then call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_process_shutdown
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from analytics.engine_services import engine_scan_fail, engine_scan_run
from analytics.services import (
    RepositoryBusy,
    due_scans_enqueue,
    registry_clients_close,
    scan_fail,
    scan_readers_close,
    scan_registry_run,
    scan_repositories_run,
    scan_repository_run,
    stuck_scans_requeue,
)
from workers.engine import EngineError
from workers.registry.errors import RegistryError

logger = logging.getLogger(__name__)

# Transient registry errors (timeouts, 429, 5xx) are retried with backoff; permanent ones are recorded
# on the scan by the service and never reach here.
RETRY = dict(max_retries=5)


def retry_countdown(retries: int, exc: Exception) -> float:
    """Exponential backoff with full jitter (`SCAN_RETRY_BACKOFF_SECONDS` * 2^retries, capped at 300 s),
    and never sooner than the registry's own `Retry-After`. (`retry_backoff` only applies to
    `autoretry_for`, not to a `self.retry()` call, which would wait `default_retry_delay`: 3 minutes.)
    """
    backoff = get_exponential_backoff_interval(
        factor=settings.SCAN_RETRY_BACKOFF_SECONDS, retries=retries, maximum=300, full_jitter=True
    )
    return max(float(backoff), float(getattr(exc, "retry_after", None) or 0), 1.0)


@shared_task(bind=True, acks_late=True, **RETRY)
def scan_registry(self, scan_id: int) -> None:
    def enqueue(child_ids: list[int]) -> None:
        # Sent while the catalog is still being listed, so workers start at once; several
        # repositories per task, so a worker reads some while it ingests others.
        size = max(1, settings.SCAN_TASK_BATCH)
        for i in range(0, len(child_ids), size):
            scan_repositories.delay(child_ids[i : i + size])

    try:
        scan_registry_run(scan_id=scan_id, on_children=enqueue)
    except RegistryError as exc:
        if self.request.retries >= self.max_retries:
            scan_fail(scan_id=scan_id, message=f"gave up after {self.request.retries} retries: {exc}")
            return
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries, exc)) from exc


@shared_task(bind=True, acks_late=True, **RETRY)
def scan_repository(self, scan_id: int) -> None:
    try:
        scan_repository_run(scan_id=scan_id)
    except RepositoryBusy as exc:
        # Another worker holds this repository; come back when its scan is likely done.
        raise self.retry(exc=exc, countdown=settings.SCAN_BUSY_RETRY_SECONDS, max_retries=120) from exc
    except RegistryError as exc:
        if self.request.retries >= self.max_retries:
            scan_fail(scan_id=scan_id, message=f"gave up after {self.request.retries} retries: {exc}")
            return
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries, exc)) from exc


@shared_task(bind=True, acks_late=True)
def scan_repositories(self, scan_ids: list[int]) -> None:
    """A batch of a registry scan's children. One that cannot run now (its repository busy, a
    transient registry error) is sent again on its own as `scan_repository`, with that task's retries;
    a redelivered batch skips the scans already finished."""

    def retry(scan_id: int, exc: Exception) -> None:
        countdown = (
            settings.SCAN_BUSY_RETRY_SECONDS if isinstance(exc, RepositoryBusy) else retry_countdown(0, exc)
        )
        scan_repository.apply_async(args=[scan_id], countdown=countdown)

    scan_repositories_run(scan_ids=scan_ids, retry=retry)


@shared_task
def enqueue_due_scans() -> list[int]:
    return due_scans_enqueue()


@shared_task
def requeue_stuck_scans() -> list[int]:
    return stuck_scans_requeue()


@worker_process_shutdown.connect
def close_registry_clients(**_: object) -> None:
    """A pool process keeps one client per registry across scans, and its reader threads with their
    database connections; close them when it stops."""
    registry_clients_close()
    scan_readers_close()


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(EngineError,),
    max_retries=5,
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
)
def scan_engine(self, engine_scan_id: int) -> None:
    """Pull-through, read and ingest one Docker Engine; an unreachable engine is retried, then failed."""
    try:
        engine_scan_run(scan_id=engine_scan_id)
    except EngineError as exc:
        if self.request.retries >= self.max_retries:
            engine_scan_fail(
                scan_id=engine_scan_id, message=f"gave up after {self.request.retries} retries: {exc}"
            )
            return
        raise
