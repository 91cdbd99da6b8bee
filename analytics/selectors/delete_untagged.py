"""What distribution 2.8's `garbage-collect --delete-untagged` frees beyond the what-if: the trap.

The what-if (`whatif.deletion_impact`) follows the collector as it should be: a repository keeps every
manifest its remaining tags reach, through indexes to any depth. distribution 2.8 (Debian's
`docker-registry` 2.8.2; fixed in distribution 3.0) marks less: walking a repository's
manifests it skips every manifest no tag of that repository names, and for a tagged one marks the manifest
and its direct references only (an image: its config and layers; an index: its children's manifests, not
what they reference). So after any deletion, the untagged children of every tagged multi-platform index
that stays, in the whole registry, lose their configs and layers (and a nested index its grandchildren),
unless a tagged manifest of the registry references them directly. Their manifests stay (the index marks
them) but no longer resolve: the index is broken.

`untagged_trap` counts those bytes after deleting the given tags: candidates are what the registry's
remaining tagged indexes reach below their direct children (the children's configs and layers; deeper
manifests and theirs), each judged once per registry; a candidate stays when a remaining tag of the
registry names it or a manifest referencing it directly (an index listing it, for a manifest). They are
all kept by the what-if's rule, so `freed_bytes + trap_bytes` is what that collector removes of what
Layerlens knows the registry holds. Its cost follows the registry's tagged indexes and their children
(an index scan of `IndexEntry` by index, the tags by manifest), not its images.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction

from analytics.infra.sqlarrays import int_array

_TRAP_SQL = """
WITH RECURSIVE
-- the deleted tags as a set: NOT IN it is hashed, where NOT (id = ANY(array)) scans the array per tag
gone AS MATERIALIZED (SELECT unnest(%(tags)s::bigint[]) AS id),
tagged_idx AS (
    -- the registry's tagged indexes that stay
    SELECT DISTINCT t.repository_id, t.manifest_id FROM (SELECT DISTINCT index_id FROM analytics_indexentry) i
    JOIN analytics_tag t ON t.manifest_id = i.index_id AND t.removed_at IS NULL
        AND t.id NOT IN (SELECT id FROM gone)
    JOIN analytics_repository r ON r.id = t.repository_id AND r.registry_id = %(registry)s
),
below(repository_id, manifest_id, depth) AS (
    SELECT ti.repository_id, e.child_id, 1 FROM tagged_idx ti
    JOIN analytics_indexentry e ON e.index_id = ti.manifest_id
    UNION
    SELECT b.repository_id, e.child_id, b.depth + 1 FROM below b
    JOIN analytics_indexentry e ON e.index_id = b.manifest_id WHERE b.depth < 8
),
reached AS (SELECT DISTINCT manifest_id, depth > 1 AS deep FROM below),
-- their configs and layers, each blob once (a config also listed as a layer, a layer listed twice: one
-- blob in the registry), read off ManifestBlob's primary key
cand_blobs AS (
    SELECT DISTINCT mb.blob_id FROM reached x JOIN analytics_manifestblob mb ON mb.manifest_id = x.manifest_id
),
cand_manifests AS (SELECT DISTINCT manifest_id FROM reached WHERE deep),
lost_blobs AS (
    -- a candidate stays when a remaining tag names a manifest listing it as a layer or as its config:
    -- two probes by blob, on ManifestLayer's blob index and Manifest's config index (ManifestBlob has
    -- no index by blob)
    SELECT b.id, b.size FROM cand_blobs c JOIN analytics_blob b ON b.id = c.blob_id
    WHERE NOT EXISTS (
        SELECT 1 FROM analytics_manifestlayer ml
        JOIN analytics_tag t ON t.manifest_id = ml.manifest_id AND t.removed_at IS NULL
            AND t.id NOT IN (SELECT id FROM gone)
        JOIN analytics_repository r ON r.id = t.repository_id AND r.registry_id = %(registry)s
        WHERE ml.blob_id = c.blob_id
    ) AND NOT EXISTS (
        SELECT 1 FROM analytics_manifest m
        JOIN analytics_tag t ON t.manifest_id = m.id AND t.removed_at IS NULL
            AND t.id NOT IN (SELECT id FROM gone)
        JOIN analytics_repository r ON r.id = t.repository_id AND r.registry_id = %(registry)s
        WHERE m.config_id = c.blob_id
    )
),
lost_manifests AS (
    SELECT m.id, m.size FROM cand_manifests c JOIN analytics_manifest m ON m.id = c.manifest_id
    WHERE NOT EXISTS (
        SELECT 1 FROM analytics_tag t JOIN analytics_repository r ON r.id = t.repository_id
        WHERE t.manifest_id = c.manifest_id AND t.removed_at IS NULL AND t.id NOT IN (SELECT id FROM gone)
            AND r.registry_id = %(registry)s
    ) AND NOT EXISTS (
        SELECT 1 FROM analytics_indexentry e JOIN tagged_idx ti ON ti.manifest_id = e.index_id
        WHERE e.child_id = c.manifest_id
    )
)
SELECT (SELECT count(*) FROM tagged_idx),
    (SELECT count(*) FROM lost_blobs), (SELECT coalesce(sum(size), 0) FROM lost_blobs),
    (SELECT count(*) FROM lost_manifests), (SELECT coalesce(sum(size), 0) FROM lost_manifests)
"""


@dataclass(frozen=True)
class UntaggedTrap:
    indexes: int  # tagged indexes that stay, in the registry (each repository's tag of one counts)
    blobs: int  # configs and layers of their children the 2.8 collector removes anyway
    manifests: int  # manifests below their children (nested indexes) it removes
    trap_bytes: int  # the bytes of both


def untagged_trap(*, registry_id: int, tag_ids: list[int]) -> UntaggedTrap:
    """What distribution 2.8's `garbage-collect --delete-untagged` removes, after deleting these tags, of
    the content the what-if keeps: the untagged children's content of the registry's tagged indexes."""
    with connection.cursor() as cursor:
        # a registry tagging no index (its maintained tagged-only summary counts none) has no trap
        cursor.execute(
            "SELECT indexes FROM analytics_scopefigures WHERE registry_id = %s AND repository_id IS NULL",
            [registry_id],
        )
        row = cursor.fetchone()
    if row is not None and row[0] == 0:
        return UntaggedTrap(indexes=0, blobs=0, manifests=0, trap_bytes=0)
    # index probes whose cost the planner overestimates: compiling them (JIT) took 1 to 2 s at a million
    # images, the statement itself milliseconds (the web's connections have JIT off; commands do not)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(_TRAP_SQL, {"registry": registry_id, "tags": int_array(tag_ids)})
        indexes, blobs, blob_bytes, manifests, manifest_bytes = cursor.fetchone()
    return UntaggedTrap(
        indexes=int(indexes),
        blobs=int(blobs),
        manifests=int(manifests),
        trap_bytes=int(blob_bytes) + int(manifest_bytes),
    )
