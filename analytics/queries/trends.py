"""Trends: summary figures stored after each scan, read back as time series and growth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from analytics.models import Repository, Scan, SummarySnapshot
from analytics.queries.lineage import chains_refresh
from analytics.reports import Scope, dedup_summary


def _snapshot(*, scope: Scope, registry_id: int, repository_id: int | None, scan_id: int | None, now):
    s = dedup_summary(scope=scope)
    return SummarySnapshot.objects.create(
        taken_at=now,
        scan_id=scan_id,
        registry_id=registry_id,
        repository_id=repository_id,
        images=s.images,
        manifests=s.manifests,
        distinct_layers=s.distinct_layers,
        logical_bytes=s.logical_bytes,
        stored_bytes=s.stored_bytes,
        saved_bytes=s.saved_bytes,
    )


def scan_figures_record(*, scan_id: int) -> list[SummarySnapshot]:
    """After a scan: chain ids for the new manifests, then snapshot rows.

    A repository scan records its repository; a registry scan (when its last child finishes) and a
    stand-alone repository scan record the registry too.
    """
    scan = Scan.objects.get(id=scan_id)
    now = timezone.now()
    rows = []
    if scan.repository_id is not None:
        chains_refresh(repository_id=scan.repository_id)
        rows.append(
            _snapshot(
                scope=Scope(repository_id=scan.repository_id),
                registry_id=scan.registry_id,
                repository_id=scan.repository_id,
                scan_id=scan.id,
                now=now,
            )
        )
    if scan.repository_id is None or scan.parent_id is None:
        rows.append(
            _snapshot(
                scope=Scope(registry_id=scan.registry_id),
                registry_id=scan.registry_id,
                repository_id=None,
                scan_id=scan.id,
                now=now,
            )
        )
    return rows


def snapshot_series(
    *,
    registry_id: int | None = None,
    repository_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[SummarySnapshot]:
    """Snapshots oldest first: a registry's own (repository null) unless a repository is named."""
    qs = SummarySnapshot.objects.select_related("registry", "repository")
    if repository_id is not None:
        qs = qs.filter(repository_id=repository_id)
    else:
        qs = qs.filter(repository__isnull=True)
        if registry_id is not None:
            qs = qs.filter(registry_id=registry_id)
    if since is not None:
        qs = qs.filter(taken_at__gte=since)
    if until is not None:
        qs = qs.filter(taken_at__lte=until)
    return qs.order_by("taken_at", "id")


@dataclass(frozen=True)
class Growth:
    repository: str
    start: SummarySnapshot | None  # the last snapshot at or before each date
    end: SummarySnapshot | None
    images: int
    logical_bytes: int
    stored_bytes: int
    saved_bytes: int


FIELDS = ("images", "logical_bytes", "stored_bytes", "saved_bytes")


def repository_growth(*, repository: Repository, start: datetime, end: datetime) -> Growth:
    """How a repository's figures changed between two dates (an empty repository before its first scan)."""
    series = SummarySnapshot.objects.filter(repository=repository).order_by("-taken_at", "-id")
    first = series.filter(taken_at__lte=start).first()
    last = series.filter(taken_at__lte=end).first()
    delta = {f: (getattr(last, f) if last else 0) - (getattr(first, f) if first else 0) for f in FIELDS}
    return Growth(repository=str(repository), start=first, end=last, **delta)
