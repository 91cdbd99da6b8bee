"""Celery tasks: thin wrappers that handle retries and fan-out, then call a service."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from celery.signals import worker_process_shutdown
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from analytics.engines.services import engine_due_scans_enqueue, engine_scan_fail, engine_scan_run
from analytics.errors import RepositoryBusy
from analytics.events.apply import (
    events_forget,
    events_pending,
    events_pending_until,
    registries_waiting,
    registry_events_apply,
)
from analytics.events.inbox import events_apply_claim, events_apply_idle, events_apply_started
from analytics.jobs import whatif_job_run
from analytics.policies.evaluate import saved_policy_evaluate
from analytics.scans.clients import registry_clients_close
from analytics.scans.crawl import crawl_continue, crawl_send_next
from analytics.scans.registry_run import scan_registry_run
from analytics.scans.repository_run import scan_readers_close, scan_repositories_run, scan_repository_run
from analytics.scans.schedule import due_scans_enqueue, stuck_scans_requeue
from analytics.scans.state import scan_fail
from workers.engine import EngineError
from workers.registry.errors import RegistryError

logger = logging.getLogger(__name__)

# Transient registry errors (timeouts, 429, 5xx) are retried with backoff; permanent ones are recorded
# on the scan by the service and never reach here.
RETRY = dict(max_retries=5)
# The database dropping a connection (restart, failover, `pg_terminate_backend`; also a deadlock or a
# cancelled statement) is transient too: the broken connection is closed and the task retried. Ingest
# is one transaction keyed on digests, so the retry rewrites the same rows; a repository scan cut short
# is taken over (leases).
DATABASE_LOST = (OperationalError, InterfaceError)


def database_lost_retry(task, exc: Exception, countdown: float) -> Exception:
    """Close this process's broken connections (this thread's, and the reader threads' with their pool)
    and return the retry to raise; the error itself once the retries are spent (the sweeper requeues
    what is left running when its lease expires)."""
    close_old_connections()
    scan_readers_close()  # their connections died too, unnoticed until their next read fails
    logger.warning("database error (%s); retrying on new connections in %gs", exc, countdown)
    if task.request.retries >= RETRY["max_retries"]:
        return exc
    return task.retry(exc=exc, countdown=countdown, max_retries=RETRY["max_retries"])


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
    def send(_child_ids: list[int]) -> None:
        # Sent while the catalog is still being listed, so workers start at once, but only the
        # crawl's window of them: the batches that end send the rest (`scans.crawl`).
        crawl_send_next(scan_id)

    try:
        scan_registry_run(scan_id=scan_id, on_children=send)
        crawl_send_next(scan_id)  # a take-over that listed nothing new still starts its children
    except DATABASE_LOST as exc:
        # Claimed under a lease nobody renews now: the retry can claim it once that has expired.
        raise database_lost_retry(self, exc, settings.SCAN_LEASE_SECONDS + 1) from exc
    except RegistryError as exc:
        if self.request.retries >= self.max_retries:
            scan_fail(scan_id=scan_id, message=f"gave up after {self.request.retries} retries: {exc}")
            return
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries, exc)) from exc


@shared_task(bind=True, acks_late=True, **RETRY)
def scan_repository(self, scan_id: int) -> None:
    """One repository or tag; or a registry crawl's child sent again on its own (in the bulk queue,
    where its retries stay: a retry goes back to the queue it came from)."""
    try:
        scan_repository_run(scan_id=scan_id)
    except RepositoryBusy as exc:
        # Another worker holds this repository; come back when its scan is likely done.
        raise self.retry(exc=exc, countdown=settings.SCAN_BUSY_RETRY_SECONDS, max_retries=120) from exc
    except DATABASE_LOST as exc:
        raise database_lost_retry(self, exc, settings.SCAN_BUSY_RETRY_SECONDS) from exc
    except RegistryError as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries, exc)) from exc
        scan_fail(scan_id=scan_id, message=f"gave up after {self.request.retries} retries: {exc}")
    crawl_continue([scan_id])  # a crawl's child: one fewer out, its crawl may send more


@shared_task(bind=True, acks_late=True)
def scan_repositories(self, scan_ids: list[int]) -> None:
    """A batch of a registry scan's children. One that cannot run now (its repository busy, a
    transient registry error) is sent again on its own as `scan_repository`, with that task's retries;
    a redelivered batch skips the scans already finished, which is how a lost database connection is
    retried: the whole batch again, its unfinished repositories taken over."""

    def retry(scan_id: int, exc: Exception) -> None:
        countdown = (
            settings.SCAN_BUSY_RETRY_SECONDS if isinstance(exc, RepositoryBusy) else retry_countdown(0, exc)
        )
        # Still the crawl's: bulk, not the interactive queue `scan_repository` is routed to.
        scan_repository.apply_async(args=[scan_id], countdown=countdown, queue=settings.QUEUE_BULK)

    try:
        scan_repositories_run(scan_ids=scan_ids, retry=retry)
    except DATABASE_LOST as exc:
        raise database_lost_retry(self, exc, settings.SCAN_BUSY_RETRY_SECONDS) from exc
    crawl_continue(scan_ids)  # this batch is done: its crawl's next ones go out


@shared_task
def enqueue_due_scans() -> list[int]:
    """Scan the tracked registries, repositories and Docker Engines whose time has come; returns the
    registry scans' ids (engine scans are `EngineScan` rows, another table's ids)."""
    now = timezone.now()
    created = due_scans_enqueue(now=now)
    engine_due_scans_enqueue(now=now)
    return created


@shared_task
def requeue_stuck_scans() -> list[int]:
    return stuck_scans_requeue()


@shared_task(bind=True, acks_late=True)
def apply_registry_events(self, registry_id: int) -> None:
    """Apply a registry's pending events, round after round while more come in (a burst is one task,
    not one per request; `inbox.events_apply_soon` says how the pending-task key keeps it so), for at
    most `EVENTS_APPLY_ROUND_SECONDS`, then sent again behind other tasks. Repositories left for later
    (busy with a scan, the registry not answering) bring the task back; if it is lost, the sweeper
    resends."""
    deadline = time.monotonic() + settings.EVENTS_APPLY_ROUND_SECONDS
    while True:
        hold = events_apply_started(registry_id=registry_id)  # events stored meanwhile are this task's
        try:
            result = registry_events_apply(registry_id=registry_id)
        except DATABASE_LOST as exc:
            raise database_lost_retry(self, exc, 1) from exc  # the key stays: the retry is the task
        except BaseException:
            events_apply_idle(registry_id=registry_id)
            raise
        if result.later:
            # events stored from now on send another task (another repository's need not wait); those
            # stored by senders that trusted this task's hold are the sent task's to apply
            events_apply_idle(registry_id=registry_id)
            countdown = (
                retry_countdown(self.request.retries, result.transient)
                if result.transient is not None
                else (settings.EVENTS_BUSY_RETRY_SECONDS if not result.events else 0)
            )
            apply_registry_events.apply_async(args=[registry_id], countdown=countdown)
            return
        if not result.events:
            # Nothing was left. Senders trust the key until `hold` (`inbox.events_apply_soon`): until
            # then, look for what they stored, and apply it in another round.
            if events_pending_until(registry_id=registry_id, until=hold):
                continue
            # Let go of the key, then look once more, for an event stored after the last look whose
            # sender saw the key held and sent nothing. Whoever takes the key next (a sender, or this
            # task) applies what waits.
            events_apply_idle(registry_id=registry_id)
            if not events_pending(registry_id=registry_id) or not events_apply_claim(registry_id=registry_id):
                return
        elif time.monotonic() >= deadline:
            apply_registry_events.delay(registry_id)  # the key stays held for it
            return


@shared_task
def sweep_registry_events() -> list[int]:
    """Resend registries whose events wait longer than EVENTS_SWEEP_AFTER_SECONDS (their task lost, a
    worker killed); forget applied events past EVENTS_KEEP_DAYS."""
    waiting = registries_waiting()
    for registry_id in waiting:
        apply_registry_events.delay(registry_id)
    events_forget()
    return waiting


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


@shared_task(acks_late=True)
def whatif_job(job_id: int) -> None:
    """A what-if too large for a request (`analytics.jobs`); a redelivered job already claimed is skipped."""
    whatif_job_run(job_id=job_id)


@shared_task(acks_late=True)
def evaluate_cleanup_policy(policy_id: int) -> None:
    """A saved policy's first point (or its first of a new revision), without waiting for its registry to
    change; a repeat at the same content version is the point already recorded."""
    saved_policy_evaluate(policy_id=policy_id)
