"""Cold images: the images of a place (registry, namespace, repository) not pulled in N days, and the
bytes only they hold.

Warm and cold follow `analytics.selectors.pulls` (one rule for this answer and the what-if's
`not_pulled_days`). The answer has
- the list: every cold image, a keyset page on (repository name, repository id, manifest id): a page
  reads repositories in name order and each one's holdings in manifest order (a LATERAL per
  repository, on the `(repository, manifest)` index), never the place's whole set;
- the totals: how many images are cold and their `size_bytes` summed (`logical_bytes`: what they cost if
  nothing were shared), and what deleting the cold tags (those reaching only cold manifests) then
  collecting garbage frees: the what-if of those tags, `analytics.selectors.whatif.deletion_impact`,
  the registry's own rule. Totals cost the place's holdings, so a request computes them when the place
  holds at most `WHATIF_SYNC_HOLDINGS`; beyond, the what-if job with `not_pulled_days` answers them;
- the coverage: where pulls come from and since when they are counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from analytics.models import Repository
from analytics.selectors import pulls, whatif

# the fields of an image row besides the walk: its parts' bytes as `image_sizes` counts them (manifest,
# config, distinct layers: a config also listed as a layer counts twice there, so not `ManifestBlob`,
# which lists it once)
_SIZE = """(m.size + coalesce((SELECT c.size FROM analytics_blob c WHERE c.id = m.config_id), 0)
    + coalesce((SELECT sum(b.size) FROM analytics_blob b WHERE b.id IN (
        SELECT ml.blob_id FROM analytics_manifestlayer ml WHERE ml.manifest_id = m.id)), 0))"""

# A page examines holdings in key order, a batch at a time, and says which are warm; the warm walk runs
# on the batch's rows only (the subquery's LIMIT comes first).
_EXAMINE_SQL = """
SELECT x.r_id, x.name, x.holding_id, x.manifest_id, {warm} AS warm
FROM (
    SELECT r.id AS r_id, r.name, h.holding_id, h.manifest_id
    FROM analytics_repository r
    CROSS JOIN LATERAL (
        SELECT rm.id AS holding_id, rm.manifest_id
        FROM analytics_repositorymanifest rm JOIN analytics_manifest m ON m.id = rm.manifest_id
        WHERE rm.repository_id = r.id AND rm.present AND m.kind = 'image'
            AND (r.id <> %(a_repository)s OR rm.manifest_id > %(a_manifest)s)
        ORDER BY rm.manifest_id LIMIT %(n)s
    ) h
    WHERE {place} AND (r.name, r.id) >= (%(a_name)s, %(a_repository)s)
    ORDER BY r.name, r.id, h.manifest_id LIMIT %(n)s
) x
ORDER BY x.name, x.r_id, x.manifest_id
"""

# The rows a page shows, by holding id.
_ROWS_SQL = """
SELECT rm.id, r.id, r.name, m.id, m.digest, m.os, m.architecture, m.variant, {size},
    {last_pull},
    (SELECT p.pulls FROM analytics_manifestpulls p WHERE p.repository_id = r.id AND p.digest = m.digest)
FROM analytics_repositorymanifest rm
JOIN analytics_repository r ON r.id = rm.repository_id
JOIN analytics_manifest m ON m.id = rm.manifest_id
WHERE rm.id = ANY(%(ids)s)
"""

# Holdings one page examines at most: in a place where nearly everything is warm, a page stops there and
# may hold fewer rows than asked, even none, with a `next` (as the derived images' pages do).
COLD_WALK = 5000
# the first batch is the page (and one more); each further one four times the last
_GROWTH = 4

_TOTALS_SQL = """
SELECT count(*), coalesce(sum({size}), 0)
FROM analytics_repositorymanifest rm
JOIN analytics_repository r ON r.id = rm.repository_id
JOIN analytics_manifest m ON m.id = rm.manifest_id
WHERE {place} AND rm.present AND m.kind = 'image' AND NOT {warm}
"""


@dataclass(frozen=True)
class ColdImage:
    holding_id: int
    repository_id: int
    repository: str
    manifest_id: int
    digest: str
    platform: str
    size_bytes: int
    pulls: int  # of its own digest, ever counted
    last_pulled_at: datetime | None  # the latest pull warming it (itself or an index listing it), if any


@dataclass(frozen=True)
class ColdTotals:
    images: int
    logical_bytes: int  # Σ size_bytes of the cold images
    tags: int  # cold tags: those reaching only cold manifests
    freed_bytes: int  # deleting the cold tags, then garbage collection (the what-if)
    kept_bytes: int
    manifests_untagged: int
    manifests_freed: int
    blobs_freed: int


@dataclass(frozen=True)
class ColdAnswer:
    coverage: pulls.PullCoverage
    totals: ColdTotals | None  # None: the place holds too many to total in a request (`totals_note`)
    totals_note: str | None = None
    images: list[ColdImage] = field(default_factory=list)
    next_key: tuple[int, int] | None = None


def _place(rule: whatif.TagRule) -> dict[str, object]:
    return {"registry_id": rule.registry_id, "namespace": rule.namespace, "repository_id": rule.repository_id}


def cold_images(
    *,
    place: whatif.TagRule,
    days: int,
    after: tuple[int, int] | None = None,
    limit: int = 50,
    now: datetime,
    walk: int = COLD_WALK,
) -> tuple[list[ColdImage], tuple[int, int] | None]:
    """A page of the place's cold images after the key (repository id, manifest id), and the next key
    (None after the last). At most `walk` holdings are examined: the page may be short, with a next."""
    cutoff = pulls.not_pulled_cutoff(days=days, now=now)
    where, params = pulls.place_sql(**_place(place))  # type: ignore[arg-type]
    sql = _EXAMINE_SQL.format(place=where, warm=pulls.warm_sql(manifest="x.manifest_id", repository="x.r_id"))
    key, name = after or (0, 0), ""
    if after is not None:
        name = Repository.objects.filter(id=key[0]).values_list("name", flat=True).first() or ""
    cold: list[tuple[int, int, int]] = []  # (repository id, manifest id, holding id)
    examined, batch, next_key = 0, limit + 1, None
    with connection.cursor() as cursor:
        while True:
            n = min(batch, walk - examined)
            args = {**params, "cutoff": cutoff, "a_repository": key[0], "a_manifest": key[1], "n": n}
            cursor.execute(sql, {**args, "a_name": name})
            rows = cursor.fetchall()
            examined += len(rows)
            for r_id, r_name, holding, manifest, warm in rows:
                key, name = (r_id, manifest), r_name
                if not warm:
                    cold.append((r_id, manifest, holding))
                if len(cold) > limit:
                    break
            if len(cold) > limit:  # one more than the page: the page ends at its last row
                cold = cold[:limit]
                next_key = cold[-1][:2]
                break
            if len(rows) < n:  # the place has no more
                break
            if examined >= walk:  # the walk's bound: go on from the last row examined
                next_key = key
                break
            batch *= _GROWTH
    return _rows([h for _, _, h in cold]), next_key


def _rows(holding_ids: list[int]) -> list[ColdImage]:
    if not holding_ids:
        return []
    sql = _ROWS_SQL.format(size=_SIZE, last_pull=pulls.last_pull_sql(manifest="m.id", repository="r.id"))
    with connection.cursor() as cursor:
        cursor.execute(sql, {"ids": holding_ids})
        rows = cursor.fetchall()
        found = {
            holding: ColdImage(
                holding_id=holding,
                repository_id=r_id,
                repository=r_name,
                manifest_id=manifest,
                digest=digest,
                platform="/".join(p for p in (os_, arch, variant) if p),
                size_bytes=int(size or 0),
                pulls=int(count or 0),
                last_pulled_at=last,
            )
            for holding, r_id, r_name, manifest, digest, os_, arch, variant, size, last, count in rows
        }
    return [found[h] for h in holding_ids if h in found]


def cold_tag_ids(*, place: whatif.TagRule, days: int, now: datetime) -> list[int]:
    sql, params = pulls.cold_tags_sql(**_place(place))  # type: ignore[arg-type]
    with connection.cursor() as cursor:
        cursor.execute(sql, {**params, "cutoff": pulls.not_pulled_cutoff(days=days, now=now)})
        return [row[0] for row in cursor.fetchall()]


def cold_totals(*, place: whatif.TagRule, days: int, now: datetime) -> ColdTotals:
    """The totals, unbounded (the API bounds them through `cold_answer`)."""
    cutoff = pulls.not_pulled_cutoff(days=days, now=now)
    where, params = pulls.place_sql(**_place(place))  # type: ignore[arg-type]
    sql = _TOTALS_SQL.format(
        place=where, size=_SIZE, warm=pulls.warm_sql(manifest="rm.manifest_id", repository="r.id")
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {**params, "cutoff": cutoff})
        images, logical = cursor.fetchone()
    impact = whatif.deletion_impact(tag_ids=cold_tag_ids(place=place, days=days, now=now), details=False)
    return ColdTotals(
        images=int(images),
        logical_bytes=int(logical),
        tags=impact.tags,
        freed_bytes=impact.freed_bytes,
        kept_bytes=impact.kept_bytes,
        manifests_untagged=impact.manifests_untagged,
        manifests_freed=impact.manifests_freed,
        blobs_freed=impact.blobs_freed,
    )


def too_large_for_totals(held: int, cap: int) -> str:
    return (
        f"this place holds {held:,} images and other manifests; a request totals at most {cap:,}. The list "
        "is complete; for the totals, POST the place with not_pulled_days to /api/v1/whatif/jobs/ (the "
        "same cold tags, the same freed bytes), or narrow it to a namespace or repository"
    )


def cold_answer(
    *,
    place: whatif.TagRule,
    days: int,
    after: tuple[int, int] | None = None,
    limit: int = 50,
    totals: bool = True,
    now: datetime | None = None,
) -> ColdAnswer:
    """What a request may answer: the coverage, a page of cold images, and the totals when asked and
    the place holds at most `WHATIF_SYNC_HOLDINGS` (else None, with a note saying where to get them)."""
    now = now or timezone.now()
    pulls.days_check("days", days)
    coverage = pulls.pull_coverage(**_place(place), days=days, now=now)  # type: ignore[arg-type]
    images, next_key = cold_images(place=place, days=days, after=after, limit=limit, now=now)
    found, note = None, None
    if totals:
        cap = settings.WHATIF_SYNC_HOLDINGS
        held = whatif.selection_holdings(place)
        if held > cap:
            note = too_large_for_totals(held, cap)
        else:
            found = cold_totals(place=place, days=days, now=now)
    return ColdAnswer(coverage=coverage, totals=found, totals_note=note, images=images, next_key=next_key)
