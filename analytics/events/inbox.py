"""The durable inbox: a request's events stored in one statement, each once (a redelivery is the same
key), then a worker asked to apply them, once per burst rather than once per event."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from analytics.events.formats import EventRecord
from analytics.infra import telemetry
from analytics.infra.politeness import shared_redis
from analytics.models import Registry, RegistryEvent
from analytics.scans.runtime import metrics_sink

logger = logging.getLogger(__name__)

APPLY_TASK = "workers.tasks.apply_registry_events"
_COLUMNS = (
    "registry_id",
    "source",
    "key",
    "action",
    "target",
    "repository",
    "tag",
    "digest",
    "media_type",
    "user_agent",
    "occurred_at",
    "received_at",
    "outcome",
    "message",
)


@dataclass(frozen=True)
class Stored:
    received: int
    stored: int

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


def events_secret_matches(registry: Registry, given: str) -> bool:
    """Whether `given` is the registry's events secret, compared in constant time; a registry without
    one matches nothing (it is not followed, so its events are refused)."""
    secret = registry.get_events_secret()
    if not secret or not given:
        return False
    return hmac.compare_digest(given.encode(), secret.encode())


def events_store(*, registry: Registry, events: Sequence[EventRecord]) -> Stored:
    """Store `events` in one `INSERT ... ON CONFLICT DO NOTHING` (a key already stored is a duplicate:
    a retried delivery) and, once that commits, ask for them to be applied. Returns when they are
    committed, so the caller answers 2xx only for events that survive any restart."""
    rows = list({e.key: e for e in events}.values())  # one key twice in one request: once
    stored = 0
    if rows:
        now = timezone.now()
        values = ", ".join(["(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"] * len(rows))
        params: list[object] = []
        for e in rows:
            params += [
                registry.id,
                e.source,
                e.key,
                e.action,
                e.target,
                e.repository,
                e.tag,
                e.digest,
                e.media_type,
                e.user_agent,
                e.occurred_at,
                now,
                "",
                "",
            ]
        # One statement, atomic by itself: outside a transaction it commits on its own (no BEGIN and
        # COMMIT round trips), synchronously, before the caller answers.
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {RegistryEvent._meta.db_table} ({', '.join(_COLUMNS)}) VALUES {values}"
                " ON CONFLICT (registry_id, key) DO NOTHING RETURNING 1",
                params,
            )
            stored = len(cursor.fetchall())
        if stored:
            # robust: the events are stored whatever the broker says; the sweeper resends
            transaction.on_commit(lambda: events_apply_soon(registry_id=registry.id), robust=True)
    result = Stored(received=len(events), stored=stored)
    labels = {"registry": registry.name}
    sink = metrics_sink()
    sink.add(telemetry.EVENTS_RECEIVED, labels, result.received)
    if result.duplicates:
        sink.add(telemetry.EVENTS_DUPLICATE, labels, result.duplicates)
    return result


def events_refused(*, registry_name: str, reason: str) -> None:
    """Count a request refused whole (`reason`: unauthorized, media_type, malformed, too_large, ...)."""
    metrics_sink().add(telemetry.EVENTS_REFUSED, {"registry": registry_name, "reason": reason})


def _pending_key(registry_id: int) -> str:
    return f"{settings.CELERY_TASK_DEFAULT_QUEUE}:events:apply:{registry_id}"


def events_apply_soon(*, registry_id: int) -> None:
    """Send the apply task for the registry unless one is already waiting to start.

    The key says "a task is sent and has not started": the task deletes it before it reads the inbox
    (`events_apply_started`), so an event committed after that read sends a new task, and one
    committed before it is read by it. A burst of 10,000 events sends a handful of tasks, not 10,000.
    The key expires, and the sweeper resends registries whose events wait, so a lost task or a Redis
    failure delays events, never loses them.
    """
    url = settings.LAYERLENS_REDIS_URL
    ttl = settings.EVENTS_TASK_PENDING_SECONDS
    try:
        first = shared_redis(url).set(_pending_key(registry_id), 1, nx=True, ex=ttl) if url else True
    except Exception as exc:  # the broker's Redis may be down too; the sweeper resends
        logger.warning("events of registry %s: no pending-task key (%s); sending anyway", registry_id, exc)
        first = True
    if first:
        current_app.send_task(APPLY_TASK, args=[registry_id])


def events_apply_started(*, registry_id: int) -> None:
    """The apply task has started: events committed from now on send a new task."""
    url = settings.LAYERLENS_REDIS_URL
    if not url:
        return
    try:
        shared_redis(url).delete(_pending_key(registry_id))
    except Exception as exc:
        logger.warning("events of registry %s: could not clear the pending-task key (%s)", registry_id, exc)
