"""Readiness: can this instance serve (database, broker), are the events registries send being applied
(the oldest one waiting is younger than `EVENTS_READY_MAX_AGE_SECONDS`), and are the tracked registries
scanned on time.

Selectors only; the views in analytics/api/ops.py turn them into `/healthz` and `/readyz`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import connection
from django.db.models import Max, Q
from django.utils import timezone

from analytics.models import Registry, Scan
from analytics.selectors.inbox import inbox_by_registry, inbox_oldest_pending_at


@dataclass(frozen=True)
class Check:
    ok: bool
    seconds: float
    error: str = ""


@dataclass(frozen=True)
class RegistryFreshness:
    registry: str
    interval_seconds: float
    last_success: str | None
    age_seconds: float | None
    ok: bool  # scanned successfully within twice its interval (a scan may run late by one tick)


@dataclass(frozen=True)
class RegistryInboxAge:
    registry: str
    followed: bool
    pending: int
    oldest_age_seconds: float | None


@dataclass(frozen=True)
class EventsCheck:
    """The events inbox: not ready when its oldest pending event has waited past `max_age_seconds` (the
    workers applying events are down or behind); 0 turns the check off. `registries` for operators."""

    ok: bool
    oldest_age_seconds: float | None
    max_age_seconds: int
    error: str = ""
    registries: list[RegistryInboxAge] = field(default_factory=list)


@dataclass
class Readiness:
    database: Check
    broker: Check
    events: EventsCheck
    registries: list[RegistryFreshness] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        fresh = all(r.ok for r in self.registries)
        return (
            self.database.ok
            and self.broker.ok
            and self.events.ok
            and (fresh or not settings.LAYERLENS_READY_REQUIRES_FRESH_SCANS)
        )

    def as_dict(self) -> dict[str, object]:
        return {"ready": self.ready, **asdict(self)}

    def status(self) -> dict[str, object]:
        """What anyone may see: ready or not, and each check's outcome without its reason (a failure's
        words can name a host) and without the registries (their names are hosts). The events check's
        reason is figures and a setting's name only, so it is shown."""
        checks = {"database": self.database, "broker": self.broker}
        events = {"ok": self.events.ok, "oldest_age_seconds": self.events.oldest_age_seconds}
        return {
            "ready": self.ready,
            **{name: {"ok": c.ok, "seconds": c.seconds} for name, c in checks.items()},
            "events": {**events, "error": self.events.error} if self.events.error else events,
        }


def _timed(fn) -> Check:
    t0 = time.monotonic()
    try:
        fn()
    except Exception as exc:  # any failure is "not ready", with its reason shown
        return Check(ok=False, seconds=round(time.monotonic() - t0, 4), error=f"{type(exc).__name__}: {exc}")
    return Check(ok=True, seconds=round(time.monotonic() - t0, 4))


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker() -> None:
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        # The Redis transport connects lazily: ask the server something.
        client = getattr(conn.default_channel, "client", None)
        if client is not None:
            client.ping()


def registry_freshness(*, now=None) -> list[RegistryFreshness]:
    """Per tracked registry: its last successful (or partial) registry scan and its age vs its interval."""
    now = now or timezone.now()
    done = [Scan.Status.SUCCEEDED, Scan.Status.PARTIAL]
    rows = (
        Registry.objects.filter(tracked=True, scan_interval__isnull=False)
        .annotate(
            last_success=Max(
                "scans__finished_at", filter=Q(scans__kind=Scan.Kind.REGISTRY, scans__status__in=done)
            )
        )
        .order_by("name")
    )
    out = []
    for r in rows:
        interval = r.scan_interval.total_seconds()
        age = (now - r.last_success).total_seconds() if r.last_success else None
        # Never scanned yet: fine while the registry is younger than its allowance.
        ok = (age if age is not None else (now - r.created_at).total_seconds()) <= 2 * interval
        out.append(
            RegistryFreshness(
                registry=r.name,
                interval_seconds=interval,
                last_success=r.last_success.isoformat() if r.last_success else None,
                age_seconds=round(age, 1) if age is not None else None,
                ok=ok,
            )
        )
    return out


def _age(then, now) -> float | None:
    return round((now - then).total_seconds(), 1) if then is not None else None


def events_check(*, detail: bool = False, now=None) -> EventsCheck:
    """The age of the oldest event waiting to be applied, anywhere (the first entry of a partial index),
    against `EVENTS_READY_MAX_AGE_SECONDS`; with `detail`, each registry's inbox too."""
    now = now or timezone.now()
    limit = settings.EVENTS_READY_MAX_AGE_SECONDS
    age = _age(inbox_oldest_pending_at(), now)
    late = bool(limit) and age is not None and age > limit
    error = (
        f"the oldest registry event not applied yet has waited {age:.0f} s, more than "
        f"EVENTS_READY_MAX_AGE_SECONDS ({limit} s): are workers applying events running?"
        if late
        else ""
    )
    registries = (
        [
            RegistryInboxAge(
                registry=r.registry,
                followed=r.followed,
                pending=r.pending,
                oldest_age_seconds=_age(r.oldest_received_at, now),
            )
            for r in inbox_by_registry()
        ]
        if detail
        else []
    )
    return EventsCheck(
        ok=not late, oldest_age_seconds=age, max_age_seconds=limit, error=error, registries=registries
    )


def readiness(*, detail: bool = True) -> Readiness:
    """The checks; `detail` (an operator asks) adds what names registries."""
    database = _timed(_database)
    broker = _timed(_broker)
    if database.ok:
        try:
            events = events_check(detail=detail)
        except Exception as exc:  # any failure is "not ready"; its words are not shown to anyone
            events = EventsCheck(
                ok=False,
                oldest_age_seconds=None,
                max_age_seconds=settings.EVENTS_READY_MAX_AGE_SECONDS,
                error=f"the events inbox could not be read ({type(exc).__name__})",
            )
    else:  # not read: the database being down already says not ready
        events = EventsCheck(
            ok=True, oldest_age_seconds=None, max_age_seconds=settings.EVENTS_READY_MAX_AGE_SECONDS
        )
    registries = registry_freshness() if database.ok else []
    return Readiness(database=database, broker=broker, events=events, registries=registries)
