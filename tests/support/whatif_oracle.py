"""The what-if as it was answered before its pricing was aggregated in SQL: one statement returning a row
per lost holding, judged manifest, judged blob and deleted tag, reduced in Python. Kept verbatim (but for
names) as an independent oracle: the tests compare `analytics.selectors.whatif.deletion_impact` with it on
varied selections. Only the naming of the kept blobs' holders (`kept.holders_named`, tags read for the
holdings found) is shared: what it judges, it judges by its own statements. Slow at scale (it reads
every row into Python); for tests only."""

from __future__ import annotations

import heapq
from collections import defaultdict

from django.db import connection
from django.db.models import Q
from django.db.models.expressions import RawSQL

from analytics.infra.sqlarrays import int_array
from analytics.models import Repository, Tag
from analytics.selectors.kept import KeptBlob, KeptBlobHolders, holders_named
from analytics.selectors.whatif import DeletionImpact, LostManifest, RepositoryImpact, SharedFreed

HOLDERS = 3

_HOLDERS_SQL = """
WITH lost(repository_id, manifest_id) AS MATERIALIZED (
    SELECT * FROM unnest(%(lost_r)s::bigint[], %(lost_m)s::bigint[])
)
SELECT b.blob_id, h.repository_id, h.manifest_id, h.repository, h.digest, h.kind
FROM unnest(%(blobs)s::bigint[]) AS b(blob_id)
CROSS JOIN LATERAL (
    SELECT rm.repository_id, rm.manifest_id, r.name AS repository, m.digest, m.kind
    FROM (
        SELECT ml.manifest_id FROM analytics_manifestlayer ml WHERE ml.blob_id = b.blob_id
        UNION ALL
        SELECT c.id FROM analytics_manifest c WHERE c.config_id = b.blob_id
    ) refs
    -- a probe by manifest per reference (OFFSET 0 keeps the planner from hashing every holding instead),
    -- so the walk stops once it has enough
    CROSS JOIN LATERAL (
        SELECT h.id, h.repository_id, h.manifest_id FROM analytics_repositorymanifest h
        WHERE h.manifest_id = refs.manifest_id AND h.present OFFSET 0
    ) rm
    JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %(registry)s
    JOIN analytics_manifest m ON m.id = rm.manifest_id
    WHERE (rm.repository_id, rm.manifest_id) NOT IN (SELECT repository_id, manifest_id FROM lost)
    LIMIT %(n)s  -- no DISTINCT, which would read every holder first: a manifest listing the blob twice
) h
"""


def oracle_kept_blob_holders(
    *,
    kept: list[KeptBlob],
    lost: list[tuple[int, int]],
    deleted_tag_ids: list[int],
    holders: int = HOLDERS,
) -> list[KeptBlobHolders]:
    """Who keeps each blob once the `lost` (repository id, manifest id) holdings and the deleted tags are
    gone: up to `holders` holdings each, in repository and digest order among those read."""
    if not kept:
        return []
    found: dict[tuple[int, int], list[tuple]] = defaultdict(list)
    for registry_id in sorted({k.registry_id for k in kept}):
        params = {
            "registry": registry_id,
            "blobs": int_array(k.blob_id for k in kept if k.registry_id == registry_id),
            "lost_r": int_array(r for r, _ in lost),
            "lost_m": int_array(m for _, m in lost),
            "n": 2 * holders,  # one holding may come twice (the blob twice in its manifest)
        }
        with connection.cursor() as cursor:
            cursor.execute(_HOLDERS_SQL, params)
            for blob_id, repository_id, manifest_id, repository, digest, kind in cursor.fetchall():
                row = (repository, digest, kind, repository_id, manifest_id)
                held = found[(registry_id, blob_id)]  # the same blob in two registries: two answers
                if row not in held and len(held) < holders:
                    held.append(row)
    return holders_named(kept=kept, found=found, deleted_tag_ids=deleted_tag_ids)


_WHATIF_SQL = """
WITH RECURSIVE
del AS (
    SELECT t.id, t.repository_id FROM analytics_tag t
    WHERE t.id = ANY(%(tags)s::bigint[]) AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
),
arepo AS (
    SELECT DISTINCT d.repository_id, r.registry_id FROM del d
    JOIN analytics_repository r ON r.id = d.repository_id
),
reach(repository_id, manifest_id) AS (
    SELECT t.repository_id, t.manifest_id FROM analytics_tag t
    WHERE t.repository_id IN (SELECT repository_id FROM arepo) AND t.removed_at IS NULL
      -- NOT IN a materialized set is a hashed subplan: NOT (t.id = ANY(array)) compares each tag with every
      -- deleted id (a bound parameter is never hashed), 1.5 s of 20,000 ids over 29,000 tags
      AND t.manifest_id IS NOT NULL AND t.id NOT IN (SELECT id FROM del)
    UNION
    SELECT reach.repository_id, e.child_id
    FROM reach JOIN analytics_indexentry e ON e.index_id = reach.manifest_id
),
lost AS (
    SELECT rm.repository_id, a.registry_id, rm.manifest_id
    FROM analytics_repositorymanifest rm JOIN arepo a ON a.repository_id = rm.repository_id
    WHERE rm.present AND NOT EXISTS (
        SELECT 1 FROM reach
        WHERE reach.repository_id = rm.repository_id AND reach.manifest_id = rm.manifest_id)
),
lost_n AS (
    SELECT l.registry_id, l.manifest_id, count(*) AS n FROM lost l GROUP BY 1, 2
),
judged_m AS (
    -- RegistryManifestRef.refs counts the repositories holding it: freed when all of them lose it,
    -- else kept by the others (in another namespace, say)
    -- the size by a probe per row: a join unfiltered would be planned as a scan of every manifest
    SELECT ln.registry_id, ln.manifest_id, coalesce(x.refs, 0) <= ln.n AS freed,
        (SELECT m.size FROM analytics_manifest m WHERE m.id = ln.manifest_id) AS size
    FROM lost_n ln
    LEFT JOIN analytics_registrymanifestref x
        ON x.registry_id = ln.registry_id AND x.manifest_id = ln.manifest_id
),
mblobs AS (
    -- each lost holding references each distinct blob of its manifest (layer or config) once
    SELECT ln.registry_id, ln.manifest_id, ln.n, ml.blob_id FROM lost_n ln
    JOIN analytics_manifestlayer ml ON ml.manifest_id = ln.manifest_id
    UNION
    SELECT ln.registry_id, ln.manifest_id, ln.n, m.config_id FROM lost_n ln
    JOIN analytics_manifest m ON m.id = ln.manifest_id WHERE m.config_id IS NOT NULL
),
lost_refs AS (
    SELECT registry_id, blob_id, sum(n) AS n FROM mblobs GROUP BY 1, 2
),
judged AS (
    -- RegistryBlob.refs counts the present holdings referencing it: freed when the deletion removes all;
    -- else the holdings left referencing it (kept_by) keep it
    SELECT lr.registry_id, lr.blob_id, coalesce(rb.refs, 0) <= lr.n AS freed,
        greatest(coalesce(rb.refs, 0) - lr.n, 0)::bigint AS kept_by
    FROM lost_refs lr
    LEFT JOIN analytics_registryblob rb ON rb.registry_id = lr.registry_id AND rb.blob_id = lr.blob_id
),
owners AS (
    -- by_repository only: the repositories whose lost holdings reference each blob (first = last: one)
    SELECT mb.registry_id, mb.blob_id, min(l.repository_id) AS first, max(l.repository_id) AS last
    FROM mblobs mb JOIN lost l ON l.registry_id = mb.registry_id AND l.manifest_id = mb.manifest_id
    GROUP BY 1, 2
)
SELECT CASE WHEN j.freed THEN 'f' ELSE 'k' END, j.registry_id, j.manifest_id, j.size, NULL::bigint
FROM judged_m j
UNION ALL SELECT 'l', l.repository_id, l.manifest_id, l.registry_id, NULL FROM lost l
UNION ALL SELECT CASE WHEN x.freed THEN 'b' ELSE 's' END, {blob_who}, x.blob_id, b.size, x.kept_by
    FROM judged x JOIN analytics_blob b ON b.id = x.blob_id {owners_join}
UNION ALL SELECT 'd', d.repository_id, d.id, NULL, NULL FROM del d
"""
# the repository a freed blob is attributed to: the one repository whose lost holdings referenced it, 0
# when several did (the "shared between removed repositories" line); the registry when not asked
_BY_REPOSITORY = {
    "blob_who": "CASE WHEN NOT x.freed THEN x.registry_id WHEN o.first = o.last THEN o.first ELSE 0 END",
    "owners_join": "LEFT JOIN owners o ON o.registry_id = x.registry_id AND o.blob_id = x.blob_id",
}
_TOTALS_ONLY = {"blob_who": "x.registry_id", "owners_join": ""}


def oracle_deletion_impact(
    *,
    tag_ids: list[int],
    details: bool = True,
    limit: int | None = None,
    manifests_after: tuple[str, str] | None = None,
    tags_after: tuple[str, str] | None = None,
    by_repository: bool = False,
) -> DeletionImpact:
    """What deleting these tags and then collecting garbage frees, per registry, summed.

    With `by_repository`, the same statement also says each repository's part (`RepositoryImpact`, every
    repository that loses a holding or a tag) and the largest blobs that stay (`kept_largest`).

    Counts follow the registry: a manifest held by two repositories of one registry is freed only when
    both lose it; the same digest in two registries is two copies, each judged in its own registry.
    With a `limit`, the lists are pages of that many rows after the keys given ((repository, digest),
    (repository, tag)), in that order.

    Every byte the deletion untags is counted once, freed or kept: an untagged manifest is freed or
    stays (`shared_manifests`: another repository keeps it), and each distinct blob of the untagged
    manifests is freed or stays (`shared_blobs`: a manifest the registry keeps references it). So
    `freed_bytes + kept_bytes` is the distinct bytes, per registry, of the untagged manifests and their
    blobs, whatever the selection. Deleting every tag of a scope (a registry, a namespace, a repository)
    untags every present holding of it, and that sum is the scope's `stored_bytes`
    (`dedup_summary`, DESIGN section 3), except in two cases where the definitions differ (tested):
    - foreign (non-distributable) layers: the summary leaves them out of `stored_bytes` (they are its
      `foreign_bytes`), the what-if counts them as blobs, as `RegistryBlob` and `RegistryHeld` do; the
      sum is `stored_bytes + foreign_bytes`;
    - a scope over several registries (a namespace named without a registry): the summary counts a digest
      once however many registries hold it, the what-if once per registry (each registry collects its own
      garbage); the sum is the scopes' `stored_bytes` of each registry, added.
    """
    sql = _WHATIF_SQL.format(**(_BY_REPOSITORY if by_repository else _TOTALS_ONLY))
    with connection.cursor() as cursor:
        cursor.execute(sql, {"tags": int_array(tag_ids)})
        rows = cursor.fetchall()
    freed = {(g, m): int(s) for kind, g, m, s, _ in rows if kind == "f"}
    kept = [int(s) for kind, _, _, s, _ in rows if kind == "k"]
    lost = [(r, m) for kind, r, m, _, _ in rows if kind == "l"]
    blob_sizes = [int(s) for kind, _, _, s, _ in rows if kind == "b"]
    shared_sizes = [int(s) for kind, _, _, s, _ in rows if kind == "s"]
    deleted = [t for kind, _, t, _, _ in rows if kind == "d"]
    # the same digest freed in two registries is two copies, one per registry
    freed_manifest_bytes = sum(freed.values())
    manifests, manifests_more, tag_rows, tags_more = [], False, [], False
    if details:
        manifests, manifests_more = _lost_rows(lost, freed, limit=limit, after=manifests_after)
        tag_rows, tags_more = _tag_rows(deleted, limit=limit, after=tags_after)
    return DeletionImpact(
        tags=len(deleted),
        manifests_untagged=len(lost),
        manifests_freed=len(freed),
        blobs_freed=len(blob_sizes),
        freed_bytes=freed_manifest_bytes + sum(blob_sizes),
        freed_manifest_bytes=freed_manifest_bytes,
        freed_blob_bytes=sum(blob_sizes),
        shared_blobs=len(shared_sizes),
        shared_bytes=sum(shared_sizes),
        shared_manifests=len(kept),
        shared_manifest_bytes=sum(kept),
        kept_bytes=sum(kept) + sum(shared_sizes),
        manifests=manifests,
        deleted_tags=tag_rows,
        manifests_more=manifests_more,
        deleted_tags_more=tags_more,
        **(_by_repository(rows) if by_repository else {}),
    )


# the largest kept blobs a breakdown names
KEPT_LARGEST = 10


def _by_repository(rows: list[tuple]) -> dict:
    """Each repository's part of the statement's rows, the shared part, and the largest kept blobs."""
    losers: dict[tuple[int, int], list[int]] = defaultdict(list)  # (registry, manifest) -> repositories
    for kind, r, m, g, _ in rows:
        if kind == "l":
            losers[(g, m)].append(r)
    parts: dict[int, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("tags", "untagged", "manifests", "blobs", "bytes"), 0)
    )
    shared = dict.fromkeys(("manifests", "blobs", "bytes"), 0)
    for kind, who, m, size, _ in rows:
        if kind == "d":
            parts[who]["tags"] += 1
        elif kind == "l":
            parts[who]["untagged"] += 1
        elif kind == "f":
            held_by = losers[(who, m)]
            if len(held_by) == 1:
                part = parts[held_by[0]]
                part["manifests"] += 1
                part["bytes"] += int(size)
            else:
                shared["manifests"] += 1
                shared["bytes"] += int(size)
        elif kind == "b":
            if who:
                parts[who]["blobs"] += 1
                parts[who]["bytes"] += int(size)
            else:
                shared["blobs"] += 1
                shared["bytes"] += int(size)
    names = dict(Repository.objects.filter(id__in=parts).values_list("id", "name"))
    repositories = sorted(
        (
            RepositoryImpact(
                repository_id=r,
                repository=names[r],
                tags=p["tags"],
                manifests_untagged=p["untagged"],
                manifests_freed=p["manifests"],
                blobs_freed=p["blobs"],
                freed_bytes=p["bytes"],
            )
            for r, p in parts.items()
        ),
        key=lambda x: (-x.freed_bytes, x.repository, x.repository_id),
    )
    kept = heapq.nlargest(
        KEPT_LARGEST,
        ((int(size), int(kept_by), g, blob) for kind, g, blob, size, kept_by in rows if kind == "s"),
    )
    return {
        "repositories": repositories,
        "shared_freed": SharedFreed(
            manifests=shared["manifests"], blobs=shared["blobs"], freed_bytes=shared["bytes"]
        ),
        "kept_largest": oracle_kept_blob_holders(
            kept=[KeptBlob(registry_id=g, blob_id=b, size=size, kept_by=n) for size, n, g, b in kept],
            lost=[(r, m) for kind, r, m, _, _ in rows if kind == "l"],
            deleted_tag_ids=[t for kind, _, t, _, _ in rows if kind == "d"],
        ),
    }


# A page of lost holdings in (repository, digest) order, as Python orders strings (COLLATE "C"), read in
# one statement over the lost pairs: a large deletion's page never builds every row in Python
_LOST_PAGE = """
SELECT l.r, r.name, l.m, m.digest, m.kind, m.size, r.registry_id
FROM unnest(%(r)s::bigint[], %(m)s::bigint[]) AS l(r, m)
JOIN analytics_repository r ON r.id = l.r
JOIN analytics_manifest m ON m.id = l.m
WHERE (r.name COLLATE "C", m.digest COLLATE "C") > (%(after_r)s, %(after_d)s)
ORDER BY r.name COLLATE "C", m.digest COLLATE "C"
LIMIT %(n)s
"""


def _lost_rows(
    lost: list[tuple[int, int]],
    freed: dict[tuple[int, int], int],
    *,
    limit: int | None = None,
    after: tuple[str, str] | None = None,
) -> tuple[list[LostManifest], bool]:
    if not lost:
        return [], False
    after_r, after_d = after or ("", "")
    params = {
        "r": int_array(r for r, _ in lost),
        "m": int_array(m for _, m in lost),
        "after_r": after_r,
        "after_d": after_d,
        "n": len(lost) + 1 if limit is None else limit + 1,
    }
    with connection.cursor() as cursor:
        cursor.execute(_LOST_PAGE, params)
        rows = cursor.fetchall()
    more = limit is not None and len(rows) > limit
    return [
        LostManifest(
            repository_id=r,
            repository=name,
            manifest_id=m,
            digest=digest,
            kind=kind,
            size=size,
            freed=(registry_id, m) in freed,
        )
        for r, name, m, digest, kind, size, registry_id in (rows[:limit] if limit is not None else rows)
    ], more


def _tag_rows(
    deleted: list[int], *, limit: int | None = None, after: tuple[str, str] | None = None
) -> tuple[list[tuple[int, str, str, str]], bool]:
    # the ids as one array parameter (`= ANY`), not an IN list of as many parameters
    qs = Tag.objects.filter(id__in=RawSQL("SELECT unnest(%s::bigint[])", [int_array(deleted)]))
    if after is not None:
        qs = qs.filter(Q(repository__name__gt=after[0]) | Q(repository__name=after[0], name__gt=after[1]))
    qs = qs.order_by("repository__name", "name").values_list(
        "id", "repository__name", "name", "manifest__digest"
    )
    if limit is None:
        return list(qs), False
    rows = list(qs[: limit + 1])
    return rows[:limit], len(rows) > limit
