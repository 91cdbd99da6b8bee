"""Why a deletion frees nothing of a blob: the images that still hold it.

For the largest blobs a deletion leaves (`whatif.DeletionImpact.kept_largest`), a few of the present
holdings of the registry that still reference each (as a layer or a config) once the deletion's holdings
are gone, with the tags that name them. Bounded: at most `HOLDERS` holdings per blob, one statement for all
of them (a LATERAL per blob stopping at the first few, never counting a hot blob's holders; the count is
the maintained one, `KeptBlob.kept_by`), and one for their tags. A holding read is lost, not a holder,
when its repository loses a tag and no tag of it that stays reaches it (names it or an index above it):
the what-if's rule, judged per holding read rather than from a list of every lost holding.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from analytics.infra.sqlarrays import int_array
from analytics.infra.statements import local_settings
from analytics.models import Blob, Tag
from analytics.selectors.whatif_statement import WHATIF_SETTINGS

HOLDERS = 3
TAGS_SHOWN = 3

_HOLDERS_SQL = """
-- the tags deleted and the repositories losing one, as sets: NOT IN them is a hashed subplan
WITH gone AS MATERIALIZED (SELECT unnest(%(tags)s::bigint[]) AS id),
affected AS MATERIALIZED (SELECT unnest(%(affected)s::bigint[]) AS id)
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
    -- a holding the deletion leaves: its repository lost no tag, or a tag of it that stays reaches it
    -- (names it or an index above it)
    WHERE rm.repository_id NOT IN (SELECT id FROM affected) OR EXISTS (
        WITH RECURSIVE up(manifest_id) AS (
            SELECT rm.manifest_id
            UNION
            SELECT e.index_id FROM up JOIN analytics_indexentry e ON e.child_id = up.manifest_id
        )
        SELECT 1 FROM up JOIN analytics_tag t ON t.manifest_id = up.manifest_id
        WHERE t.repository_id = rm.repository_id AND t.removed_at IS NULL
            AND t.id NOT IN (SELECT id FROM gone)
    )
    LIMIT %(n)s  -- no DISTINCT, which would read every holder first: a manifest listing the blob twice
) h
"""


@dataclass(frozen=True)
class Holder:
    repository: str
    digest: str
    kind: str
    tags: list[str]  # current tags naming it, the first TAGS_SHOWN; none: held through an index


@dataclass(frozen=True)
class KeptBlobHolders:
    digest: str
    media_type: str
    size: int
    kept_by: int  # present holdings still referencing it (all of them; `holders` names a few)
    holders: list[Holder]


@dataclass(frozen=True)
class KeptBlob:
    """A blob the deleted manifests referenced that stays: `kept_by` present holdings still reference it."""

    registry_id: int
    blob_id: int
    size: int
    kept_by: int


def kept_blob_holders(
    *,
    kept: list[KeptBlob],
    affected: list[int],
    deleted_tag_ids: list[int],
    holders: int = HOLDERS,
) -> list[KeptBlobHolders]:
    """Who keeps each blob once the deleted tags are gone: up to `holders` present holdings each, in
    repository and digest order among those read. `affected`: the repositories that lose a tag (the
    what-if's); their holdings no remaining tag reaches are lost, not holders."""
    if not kept:
        return []
    found: dict[tuple[int, int], list[tuple]] = defaultdict(list)
    for registry_id in sorted({k.registry_id for k in kept}):
        params = {
            "registry": registry_id,
            "blobs": int_array(k.blob_id for k in kept if k.registry_id == registry_id),
            "affected": int_array(affected),
            "tags": int_array(deleted_tag_ids),
            "n": 2 * holders,  # one holding may come twice (the blob twice in its manifest)
        }
        with local_settings(WHATIF_SETTINGS) as cursor:  # the deleted set hashed in memory
            cursor.execute(_HOLDERS_SQL, params)
            for blob_id, repository_id, manifest_id, repository, digest, kind in cursor.fetchall():
                row = (repository, digest, kind, repository_id, manifest_id)
                held = found[(registry_id, blob_id)]  # the same blob in two registries: two answers
                if row not in held and len(held) < holders:
                    held.append(row)
    return holders_named(kept=kept, found=found, deleted_tag_ids=deleted_tag_ids)


def holders_named(
    *, kept: list[KeptBlob], found: dict[tuple[int, int], list[tuple]], deleted_tag_ids: list[int]
) -> list[KeptBlobHolders]:
    """The answer for `kept`, from the holdings `found` of each (registry, blob): (repository, digest,
    kind, repository id, manifest id), each named with its current tags the deletion leaves (the first
    TAGS_SHOWN), in repository and digest order."""
    pairs = {(row[3], row[4]) for rows in found.values() for row in rows}
    tags: dict[tuple[int, int], list[str]] = defaultdict(list)
    if pairs:
        named = (
            Tag.objects.filter(
                removed_at=None,
                repository_id__in={r for r, _ in pairs},
                manifest_id__in={m for _, m in pairs},
            )
            .order_by("name")
            .values_list("id", "repository_id", "manifest_id", "name")
        )
        deleted = set(deleted_tag_ids)
        for tag_id, r, m, name in named:
            if (r, m) in pairs and tag_id not in deleted:
                tags[(r, m)].append(name)
    blobs = Blob.objects.filter(id__in=[k.blob_id for k in kept]).only("digest", "media_type").in_bulk()
    return [
        KeptBlobHolders(
            digest=blobs[k.blob_id].digest,
            media_type=blobs[k.blob_id].media_type,
            size=k.size,
            kept_by=k.kept_by,
            holders=[
                Holder(repository=repo, digest=digest, kind=kind, tags=tags[(r, m)][:TAGS_SHOWN])
                for repo, digest, kind, r, m in sorted(found[(k.registry_id, k.blob_id)])
            ],
        )
        for k in kept
    ]
