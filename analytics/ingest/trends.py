"""Trend points: after a scan, the summary of its repository and (for a registry scan, or a stand-alone
repository scan) its registry, stored as `SummarySnapshot` rows."""

from __future__ import annotations

from django.utils import timezone

from analytics.ingest.chains import chains_refresh
from analytics.models import Scan, SummarySnapshot
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary


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
