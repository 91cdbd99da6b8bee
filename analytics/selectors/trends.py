"""Trends: the summary figures stored after each scan (`analytics.ingest.trends`), read back as time
series and growth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from analytics.models import Repository, SummarySnapshot


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
