"""Readiness: can this instance serve (database, broker), and are the tracked registries scanned on time.

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


@dataclass
class Readiness:
    database: Check
    broker: Check
    registries: list[RegistryFreshness] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        fresh = all(r.ok for r in self.registries)
        return (
            self.database.ok
            and self.broker.ok
            and (fresh or not settings.LAYERLENS_READY_REQUIRES_FRESH_SCANS)
        )

    def as_dict(self) -> dict[str, object]:
        return {"ready": self.ready, **asdict(self)}

    def status(self) -> dict[str, object]:
        """What anyone may see: ready or not, and each check's outcome without its reason (a failure's
        words can name a host) and without the registries (their names are hosts)."""
        checks = {"database": self.database, "broker": self.broker}
        return {
            "ready": self.ready,
            **{name: {"ok": c.ok, "seconds": c.seconds} for name, c in checks.items()},
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


def readiness() -> Readiness:
    database = _timed(_database)
    broker = _timed(_broker)
    registries = registry_freshness() if database.ok else []
    return Readiness(database=database, broker=broker, registries=registries)
