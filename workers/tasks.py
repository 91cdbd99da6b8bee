"""Celery tasks: thin wrappers that handle retries and fan-out, then call a service."""

from __future__ import annotations

import logging

from celery import shared_task

from analytics.services import (
    RepositoryBusy,
    due_scans_enqueue,
    scan_fail,
    scan_registry_run,
    scan_repository_run,
)
from workers.registry.errors import RegistryError

logger = logging.getLogger(__name__)

# Transient registry errors (timeouts, 429, 5xx) are retried with backoff; permanent ones are recorded
# on the scan by the service and never reach here.
RETRY = dict(max_retries=5, retry_backoff=5, retry_backoff_max=300, retry_jitter=True)


@shared_task(bind=True, acks_late=True, **RETRY)
def scan_registry(self, scan_id: int) -> None:
    try:
        child_ids = scan_registry_run(scan_id=scan_id)
    except RegistryError as exc:
        if self.request.retries >= self.max_retries:
            scan_fail(scan_id=scan_id, message=f"gave up after {self.request.retries} retries: {exc}")
            return
        raise self.retry(exc=exc) from exc
    for child_id in child_ids:
        scan_repository.delay(child_id)


@shared_task(bind=True, acks_late=True, **RETRY)
def scan_repository(self, scan_id: int) -> None:
    try:
        scan_repository_run(scan_id=scan_id)
    except RepositoryBusy as exc:
        # Another worker holds this repository; come back when its scan is likely done.
        raise self.retry(exc=exc, countdown=30, max_retries=120) from exc
    except RegistryError as exc:
        if self.request.retries >= self.max_retries:
            scan_fail(scan_id=scan_id, message=f"gave up after {self.request.retries} retries: {exc}")
            return
        raise self.retry(exc=exc) from exc


@shared_task
def enqueue_due_scans() -> list[int]:
    return due_scans_enqueue()
