"""Trend points: after a scan, the summary of its repository and (for a registry scan, or a stand-alone
repository scan) its registry, stored as `SummarySnapshot` rows; after registry events change a
registry, the same for it and the repositories they changed, at most one point per
`EVENTS_TREND_INTERVAL_SECONDS` each (`events_figures_record`)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.ingest.chains import chains_refresh
from analytics.models import Scan, ScopeFigures, SummarySnapshot
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary


def _figures(scope: Scope) -> dict[str, int]:
    s = dedup_summary(scope=scope)
    return {
        "images": s.images,
        "manifests": s.manifests,
        "distinct_layers": s.distinct_layers,
        "logical_bytes": s.logical_bytes,
        "stored_bytes": s.stored_bytes,
        "saved_bytes": s.saved_bytes,
    }


def scan_figures_record(*, scan_id: int) -> list[SummarySnapshot]:
    """After a scan: chain ids for the new manifests, then snapshot rows.

    A repository scan records its repository; a registry scan (when its last child finishes) and a
    stand-alone repository scan record the registry too.
    """
    return scans_figures_record(scans=[Scan.objects.get(id=scan_id)])


def _repository_figures(repository_ids: list[int]) -> dict[int, dict[str, int]]:
    """`_figures` of the repositories with a maintained row, read in one statement."""
    rows = ScopeFigures.objects.filter(repository_id__in=repository_ids).values(
        "repository_id", "images", "manifests", "distinct_layers", "logical_bytes", "stored_bytes"
    )
    return {
        row.pop("repository_id"): {**row, "saved_bytes": int(row["logical_bytes"]) - int(row["stored_bytes"])}
        for row in rows
    }


def scans_figures_record(*, scans: list[Scan]) -> list[SummarySnapshot]:
    """`scan_figures_record` for several scans at once: one pass over their repositories' new manifests
    for chain ids, one read of their figures, one insert of their points."""
    now = timezone.now()
    repository_ids = sorted({s.repository_id for s in scans if s.repository_id is not None})
    if repository_ids:
        chains_refresh(repository_ids=repository_ids)
    maintained = _repository_figures(repository_ids)
    rows = []
    for scan in scans:
        if scan.repository_id is not None:
            figures = maintained.get(scan.repository_id) or _figures(Scope(repository_id=scan.repository_id))
            rows.append(
                SummarySnapshot(
                    taken_at=now,
                    scan_id=scan.id,
                    registry_id=scan.registry_id,
                    repository_id=scan.repository_id,
                    **figures,
                )
            )
        if scan.repository_id is None or scan.parent_id is None:
            rows.append(
                SummarySnapshot(
                    taken_at=now,
                    scan_id=scan.id,
                    registry_id=scan.registry_id,
                    repository_id=None,
                    **_figures(Scope(registry_id=scan.registry_id)),
                )
            )
    return SummarySnapshot.objects.bulk_create(rows)


def events_figures_record(*, registry_id: int, repository_ids: list[int]) -> None:
    """After events changed a registry: its trend point and those of `repository_ids`.

    A burst of pushes must not write a point per push: the newest point of a series, when events made
    it (no scan) within the last `EVENTS_TREND_INTERVAL_SECONDS`, is moved to now with the figures of
    now; otherwise a point is added. So a series holds at most one event point per interval, and its
    last point is always current."""
    now = timezone.now()
    since = now - timedelta(seconds=settings.EVENTS_TREND_INTERVAL_SECONDS)
    scopes = [(Scope(repository_id=r), r) for r in repository_ids] + [(Scope(registry_id=registry_id), None)]
    for scope, repository_id in scopes:
        figures = _figures(scope)
        with transaction.atomic():
            newest = (
                SummarySnapshot.objects.select_for_update()
                .filter(registry_id=registry_id, repository_id=repository_id)
                .order_by("-taken_at", "-id")
                .first()
            )
            if newest is not None and newest.scan_id is None and newest.taken_at >= since:
                SummarySnapshot.objects.filter(id=newest.id).update(taken_at=now, **figures)
            else:
                SummarySnapshot.objects.create(
                    taken_at=now, registry_id=registry_id, repository_id=repository_id, **figures
                )
