"""Materialized answers: a registry's stale bases and missed savings, kept as rows so a page is an index
range (`RegistryStaleBase`, `RegistryMissedSaving`), exact at read time.

Computing either reads the registry's tag moves, chains and holdings (seconds at a million images), so
it is done once per change, not per request:

- every write an answer reads moves the registry's content version (`ScopeFigures.content_version`,
  the row ingest's figures already lock) in the same transaction: `content_version_bump` from ingest
  (tags, holdings), chain ids from `chains_refresh`, a figures rebuild by reinserting the row; a blob's
  `diff_id` (deep scans, ingest, engines) moves the global `DiffIdEpoch` through a trigger on
  `DiffIdCopies`; deleting a registry deletes its rows with it;
- `answers_refresh` recomputes the answers whose recorded inputs (`RegistryAnswer`) differ from the
  current ones, under a per-registry advisory lock (two readers never both compute), and replaces the
  rows in one transaction. The API, the web pages and the command call it before reading; a scan's end
  calls it so no reader waits (`analytics.scans.state`).

The inputs are read before the computation, so a write committed meanwhile leaves rows recorded at an
older version: recomputed on the next read, never taken for current.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from django.db import connection, transaction
from django.utils import timezone

from analytics.models import RegistryAnswer
from analytics.models.figures import SUMMARY_FIGURE_FIELDS
from analytics.selectors.answers import MISSED_SAVINGS, STALE_BASES, answer_inputs, answers_stale
from analytics.selectors.content import missed_savings_found
from analytics.selectors.lineage import stale_bases_found
from analytics.selectors.scope import Scope

ANSWERS = (STALE_BASES, MISSED_SAVINGS)

# pg_advisory_xact_lock(class, registry): one class per answer ("LLsb", "LLms" as integers)
_LOCK_CLASS = {STALE_BASES: 0x4C4C7362, MISSED_SAVINGS: 0x4C4C6D73}


def content_version_bump(*, registry_id: int) -> None:
    """Move the registry's content version: its materialized answers are no longer current.

    Call it in the writer's transaction, after `figures_apply` (which has then locked the same row) and
    before `registry_held_add`, the order ingest takes the registry's rows in."""
    columns = ", ".join(SUMMARY_FIGURE_FIELDS)
    zeros = ", ".join("0" for _ in SUMMARY_FIGURE_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO analytics_scopefigures (registry_id, repository_id, {columns})
            VALUES (%s, NULL, {zeros})
            ON CONFLICT (registry_id) WHERE repository_id IS NULL
            DO UPDATE SET content_version = nextval('analytics_content_version')""",
            [registry_id],
        )


def content_versions_bump(*, registry_ids: Iterable[int]) -> None:
    """`content_version_bump` for several registries, in id order (so concurrent callers queue)."""
    for registry_id in sorted(set(registry_ids)):
        content_version_bump(registry_id=registry_id)


def answers_refresh(*, registry_id: int, answers: Iterable[str] = ANSWERS) -> list[str]:
    """Recompute the registry's answers that are not current; return those recomputed. Idempotent:
    a current answer costs one probe."""
    return [a for a in answers if _refresh(registry_id, a)]


# The rows go in as one JSON document (an ORM bulk insert adapts each array element: 10x slower).
_INSERT_SQL = {
    STALE_BASES: """
INSERT INTO analytics_registrystalebase (registry_id, rank, repository, tag, old_digest, new_digest,
    moved_at, images, image_bytes, affected, still_tagged)
SELECT %s, x.* FROM jsonb_to_recordset(%s::jsonb) AS x(rank int, repository text, tag text,
    old_digest text, new_digest text, moved_at timestamptz, images int, image_bytes bigint, affected text[],
    still_tagged text[])
""",
    MISSED_SAVINGS: """
INSERT INTO analytics_registrymissedsaving (registry_id, rank, diff_id, copies, stored_bytes,
    smallest_bytes, saved_bytes, blobs)
SELECT %s, x.* FROM jsonb_to_recordset(%s::jsonb) AS x(rank int, diff_id text, copies int,
    stored_bytes bigint, smallest_bytes bigint, saved_bytes bigint, blobs text[])
""",
}
_TABLE = {STALE_BASES: "analytics_registrystalebase", MISSED_SAVINGS: "analytics_registrymissedsaving"}


def _refresh(registry_id: int, answer: str) -> bool:
    if not answers_stale(registry_ids=[registry_id], answer=answer):
        return False
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS[answer], registry_id])
        # another reader may have recomputed it while this one waited for the lock
        if not answers_stale(registry_ids=[registry_id], answer=answer):
            return False
        version, epoch = answer_inputs(registry_ids=[registry_id])[registry_id]  # before computing
        rows = _stale_bases_rows(registry_id) if answer == STALE_BASES else _missed_savings_rows(registry_id)
        cursor.execute(f"DELETE FROM {_TABLE[answer]} WHERE registry_id = %s", [registry_id])
        cursor.execute(_INSERT_SQL[answer], [registry_id, json.dumps(rows, default=str)])
        RegistryAnswer.objects.update_or_create(
            registry_id=registry_id,
            answer=answer,
            defaults={
                "content_version": version,
                "diff_epoch": epoch if answer == MISSED_SAVINGS else None,
                "computed_at": timezone.now(),
                "rows": len(rows),
            },
        )
    return True


def _stale_bases_rows(registry_id: int) -> list[dict[str, object]]:
    return [
        {
            "rank": rank,
            "repository": s.repository,
            "tag": s.tag,
            "old_digest": s.old_digest,
            "new_digest": s.new_digest,
            "moved_at": s.moved_at.isoformat(),  # type: ignore[attr-defined]
            "images": s.images,
            "image_bytes": s.image_bytes,
            "affected": [f"{h} {r} {d}" for h, r, d in s.affected],
            "still_tagged": list(s.still_tagged),
        }
        for rank, s in enumerate(stale_bases_found(registry_id=registry_id))
    ]


def _missed_savings_rows(registry_id: int) -> list[dict[str, object]]:
    return [
        {
            "rank": rank,
            "diff_id": m.diff_id,
            "copies": m.copies,
            "stored_bytes": m.stored_bytes,
            "smallest_bytes": m.smallest_bytes,
            "saved_bytes": m.saved_bytes,
            "blobs": [f"{d} {mt} {size}" for d, mt, size in m.blobs],
        }
        for rank, m in enumerate(missed_savings_found(scope=Scope(registry_id=registry_id), limit=None))
    ]
