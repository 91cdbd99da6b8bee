"""The durable inbox: a request's events stored in one statement, each once (a redelivery is the same
key), then a worker asked to apply them, once per burst rather than once per event. The receiver's
look-up of a registry's events secret is here too: plain SQL, since it runs on every request."""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from analytics.events.formats import EventRecord
from analytics.infra import telemetry
from analytics.infra.crypto import decrypt_secret
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
class Follower:
    """A registry as the receiver sees it: its name (the metrics' label) and its events secret as stored
    (encrypted; empty when it has none)."""

    id: int
    name: str
    secret_encrypted: str


@dataclass(frozen=True)
class Stored:
    received: int
    stored: int

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


def events_follower(*, registry_id: int) -> Follower | None:
    """The registry's name and stored secret, or None when there is no such registry: one statement by
    primary key, prepared once per connection (the ORM's query building cost more than the query)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT name, events_secret_encrypted FROM {Registry._meta.db_table} WHERE id = %s",
            [registry_id],
        )
        row = cursor.fetchone()
    return Follower(registry_id, row[0], row[1]) if row is not None else None


@functools.lru_cache(maxsize=256)
def _decrypted(secret_encrypted: str) -> str:
    # one stored token always decrypts to the same secret: a registry's requests decrypt it once
    return decrypt_secret(secret_encrypted)


def follower_secret_matches(follower: Follower, given: str) -> bool:
    """Whether `given` is the follower's events secret, compared in constant time; a registry without one
    matches nothing."""
    if not follower.secret_encrypted or not given:
        return False
    return hmac.compare_digest(given.encode(), _decrypted(follower.secret_encrypted).encode())


def _insert(*, registry_id: int, events: Sequence[EventRecord], now: datetime) -> tuple[str, list[object]]:
    """The rows of `events` (one key twice in one request: once) as a VALUES list and its parameters."""
    rows = list({e.key: e for e in events}.values())
    values = ", ".join(["(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"] * len(rows))
    params: list[object] = []
    for e in rows:
        params += [
            registry_id,
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
    return values, params


def _stored(*, registry_id: int, name: str, received: int, stored: int) -> Stored:
    if stored:
        # robust: the events are stored whatever the broker says; the sweeper resends
        transaction.on_commit(lambda: events_apply_soon(registry_id=registry_id), robust=True)
    result = Stored(received=received, stored=stored)
    labels = {"registry": name}
    sink = metrics_sink()
    sink.add(telemetry.EVENTS_RECEIVED, labels, result.received)
    if result.duplicates:
        sink.add(telemetry.EVENTS_DUPLICATE, labels, result.duplicates)
    return result


def events_store_followed(*, follower: Follower, events: Sequence[EventRecord]) -> Stored | None:
    """`events_store` for a registry whose secret the caller checked against `follower`, in the same one
    statement as a check that the registry still has that name and stored secret: None (nothing stored)
    when it has not (renamed, its secret changed or removed, deleted since `follower` was read). So a
    receiver may trust a follower it read on an earlier request and spend one round trip per request."""
    current_sql = (
        f"SELECT 1 FROM {Registry._meta.db_table}"
        " WHERE id = %s AND name = %s AND events_secret_encrypted = %s"
    )
    current_params = [follower.id, follower.name, follower.secret_encrypted]
    if not events:  # nothing to store: the check alone
        with connection.cursor() as cursor:
            cursor.execute(current_sql, current_params)
            current = cursor.fetchone() is not None
        return _stored(registry_id=follower.id, name=follower.name, received=0, stored=0) if current else None
    values, params = _insert(registry_id=follower.id, events=events, now=timezone.now())
    columns = ", ".join(_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH follower AS ({current_sql}), stored AS (
                    INSERT INTO {RegistryEvent._meta.db_table} ({columns})
                    SELECT v.registry_id::bigint, v.source, v.key, v.action, v.target, v.repository, v.tag,
                           v.digest, v.media_type, v.user_agent, v.occurred_at::timestamptz,
                           v.received_at::timestamptz, v.outcome, v.message
                    FROM (VALUES {values}) AS v ({columns})
                    WHERE EXISTS (SELECT 1 FROM follower)
                    ON CONFLICT (registry_id, key) DO NOTHING RETURNING 1
                )
                SELECT EXISTS (SELECT 1 FROM follower), (SELECT count(*) FROM stored)""",
            [*current_params, *params],
        )
        current, stored = cursor.fetchone()
    if not current:
        return None
    return _stored(registry_id=follower.id, name=follower.name, received=len(events), stored=stored)


def events_store(*, registry: Registry, events: Sequence[EventRecord]) -> Stored:
    """Store `events` in one `INSERT ... ON CONFLICT DO NOTHING` (a key already stored is a duplicate:
    a retried delivery) and, once that commits, ask for them to be applied. Returns when they are
    committed, so the caller answers 2xx only for events that survive any restart."""
    stored = 0
    if events:
        values, params = _insert(registry_id=registry.id, events=events, now=timezone.now())
        # One statement, atomic by itself: outside a transaction it commits on its own (no BEGIN and
        # COMMIT round trips), synchronously, before the caller answers.
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {RegistryEvent._meta.db_table} ({', '.join(_COLUMNS)}) VALUES {values}"
                " ON CONFLICT (registry_id, key) DO NOTHING RETURNING 1",
                params,
            )
            stored = len(cursor.fetchall())
    return _stored(registry_id=registry.id, name=registry.name, received=len(events), stored=stored)


def events_refused(*, registry_name: str, reason: str) -> None:
    """Count a request refused whole (`reason`: unauthorized, media_type, malformed, too_large, ...)."""
    metrics_sink().add(telemetry.EVENTS_REFUSED, {"registry": registry_name, "reason": reason})


def _pending_key(registry_id: int) -> str:
    return f"{settings.CELERY_TASK_DEFAULT_QUEUE}:events:apply:{registry_id}"


# Until when (this host's clock, seconds since the epoch) a running task promised to hold a registry's key,
# as a sender of this process last read it; the web's threads share it (one dict operation each).
_held_until: dict[int, float] = {}
# What a sender that reads a task's promise leaves off it: the hosts' clocks may differ by this much.
CLOCK_MARGIN_SECONDS = 0.1
_HELD_KEPT = 1024


def events_apply_soon(*, registry_id: int) -> None:
    """Send the apply task for the registry unless one is out already.

    The key says "a task is sent or running, and will look at the inbox again": a task holds it while
    it applies (`events_apply_started`) and lets it go only when it found nothing left, looking once
    more after that (`events_apply_idle`, then `events_apply_claim`). So an event committed while the
    key is held is read by that task, one committed after it was let go sends a new task, and a burst
    of 10,000 events sends a handful of tasks, not one per request. The key expires, and the sweeper
    resends registries whose events wait, so a lost task or a Redis failure delays events, never loses
    them.

    A running task also writes in the key until when it holds it at the least (`events_apply_started`:
    `EVENTS_TASK_HOLD_SECONDS` after its round began; it looks at the inbox until then before letting
    go). A sender that read that promise trusts it for the events it stores until then, less
    `CLOCK_MARGIN_SECONDS`, without asking Redis: the task lets go after they were committed, and its
    last look finds them. So a burst costs each web process a Redis round trip every few tenths of a
    second, not one a request. A task that fails lets go at once: events stored in its last
    `EVENTS_TASK_HOLD_SECONDS` by senders that trusted it wait for the sweeper, as the events it had
    taken do.
    """
    if _held_until.get(registry_id, 0.0) - CLOCK_MARGIN_SECONDS > time.time():
        return
    if events_apply_claim(registry_id=registry_id):
        current_app.send_task(APPLY_TASK, args=[registry_id])


def events_apply_claim(*, registry_id: int) -> bool:
    """Take the registry's key if no task holds it: True when the caller is to send (or be) the task.
    When a running task holds it, its promise (until when) is kept for `events_apply_soon`."""
    url = settings.LAYERLENS_REDIS_URL
    if not url:
        return True
    try:
        ttl = settings.EVENTS_TASK_PENDING_SECONDS
        # "0": sent, not running yet, so no promise; the task's first round reads what waits
        held = shared_redis(url).set(_pending_key(registry_id), "0", nx=True, ex=ttl, get=True)
    except Exception as exc:  # the broker's Redis may be down too; the sweeper resends
        logger.warning("events of registry %s: no pending-task key (%s); sending anyway", registry_id, exc)
        return True
    if held is None:
        return True
    try:
        until = float(held)
    except ValueError:
        until = 0.0
    if len(_held_until) >= _HELD_KEPT:
        _held_until.clear()
    _held_until[registry_id] = until
    return False


def events_apply_started(*, registry_id: int) -> float:
    """An apply task is running (again): events committed from now on are its to read, until it lets
    go of the key. Renewed each round, so a long task does not let it expire. Returns until when the
    task promises to hold the key (written in it for the senders): it must not let go before then."""
    until = time.time() + settings.EVENTS_TASK_HOLD_SECONDS
    url = settings.LAYERLENS_REDIS_URL
    if not url:
        return until
    try:
        shared_redis(url).set(_pending_key(registry_id), repr(until), ex=settings.EVENTS_TASK_PENDING_SECONDS)
    except Exception as exc:
        logger.warning("events of registry %s: could not renew the pending-task key (%s)", registry_id, exc)
    return until


def events_apply_idle(*, registry_id: int) -> None:
    """The apply task found nothing left or stops here: events committed from now on send another task.
    The caller looks at the inbox once more after this, for events committed while it held the key.
    A task that found nothing left calls this only once the time it promised has passed."""
    url = settings.LAYERLENS_REDIS_URL
    if not url:
        return
    try:
        shared_redis(url).delete(_pending_key(registry_id))
    except Exception as exc:
        logger.warning("events of registry %s: could not clear the pending-task key (%s)", registry_id, exc)
