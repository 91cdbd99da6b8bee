"""Layer chains: for every image manifest, the hash of each ordered prefix of its layers (`LayerChain`).

Lineage (`analytics.selectors.lineage`) reads them: "is X a prefix of Y" becomes an index lookup. Manifests
are immutable, so a manifest's rows are written once.

A chain at depth d is `sha256` (hex) of the first d layer digests joined by single spaces, in `position`
order, depth being the row number (so gaps in `position` cannot break the prefix relation). That is
what the migration's backfill computes in SQL with a window `string_agg` per prefix, which hashes
O(n²) bytes for n layers (25,000 layers: minutes of a PostgreSQL backend). Here the same strings are
hashed incrementally, each digest fed once to one running `sha256` whose state is copied per depth:
O(n), the same values.

Each row also carries its manifest's `layer_count`: the order of the images derived from a base.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from django.db import connection

from analytics.infra.sqlarrays import array_literal, int_array
from analytics.ingest.answers import content_versions_bump

# The image manifests that have no chains yet, with their layer count and layer digests in order.
_LAYERS_SQL = """
SELECT ml.manifest_id, m.layer_count, b.digest
FROM analytics_manifestlayer ml
JOIN analytics_blob b ON b.id = ml.blob_id
JOIN analytics_manifest m ON m.id = ml.manifest_id AND m.kind = 'image'
WHERE ml.manifest_id IN ({targets})
ORDER BY ml.manifest_id, ml.position
"""

# Some repositories' image manifests with no chains yet, with their layer count; then their layers.
_REPOSITORY_MISSING_SQL = """
SELECT DISTINCT rm.manifest_id, m.layer_count FROM analytics_repositorymanifest rm
JOIN analytics_manifest m ON m.id = rm.manifest_id AND m.kind = 'image'
WHERE rm.repository_id = ANY(%s::bigint[])
    AND NOT EXISTS (SELECT 1 FROM analytics_layerchain c WHERE c.manifest_id = rm.manifest_id)
"""
_LAYERS_BY_ID_SQL = """
SELECT ml.manifest_id, b.digest FROM analytics_manifestlayer ml JOIN analytics_blob b ON b.id = ml.blob_id
WHERE ml.manifest_id = ANY(%s::bigint[]) ORDER BY ml.manifest_id, ml.position
"""
_SLICE = 1000  # manifests per read of their layers

_INSERT_SQL = """
INSERT INTO analytics_layerchain (manifest_id, depth, chain, is_top, layer_count)
SELECT * FROM unnest(%s::bigint[], %s::integer[], %s::varchar[], %s::boolean[], %s::integer[])
ON CONFLICT (manifest_id, depth) DO NOTHING
RETURNING manifest_id
"""

# The registries holding (tagged or not) manifests that gained chain ids: their stale bases read them.
_HOLDERS_SQL = """
SELECT DISTINCT r.registry_id FROM analytics_repositorymanifest rm
JOIN analytics_repository r ON r.id = rm.repository_id
WHERE rm.manifest_id = ANY(%s::bigint[])
"""

# Rows written without their layer count (the column's default 0; a real row's count is at least its
# depth, so 0 is never right): by code older than migration 0027 while it ran.
_FILL_SQL = """
UPDATE analytics_layerchain c SET layer_count = m.layer_count
FROM analytics_manifest m
WHERE m.id = c.manifest_id AND c.layer_count = 0
"""

INSERT_BATCH = 10_000  # chain rows per INSERT


def layer_chains(digests: Iterable[str]) -> Iterator[str]:
    """The chain of each prefix of `digests`, depth 1 first: sha256 hex of the prefix joined by " "."""
    running = hashlib.sha256()
    for depth, digest in enumerate(digests):
        if depth:
            running.update(b" ")
        running.update(digest.encode("utf-8"))
        yield running.copy().hexdigest()


def _manifest_layers(rows: Iterable[tuple[int, int, str]]) -> Iterator[tuple[int, int, list[str]]]:
    """(manifest id, its layer count, its digests in order) from rows ordered by manifest and position."""
    current: int | None = None
    count = 0
    digests: list[str] = []
    for manifest_id, layer_count, digest in rows:
        if manifest_id != current:
            if current is not None:
                yield current, count, digests
            current, count, digests = manifest_id, layer_count, []
        digests.append(digest)
    if current is not None:
        yield current, count, digests


def _rows(cursor) -> Iterator[tuple[int, int, str]]:
    while batch := cursor.fetchmany(INSERT_BATCH):
        yield from batch


def chains_refresh(*, repository_ids: list[int] | None = None) -> int:
    """Write the chain ids of image manifests that have none yet (those some repositories hold, or all).

    Cost follows the new manifests only, linear in their layers: manifests are immutable, so existing
    rows never change. The registries holding the manifests written have their content version moved
    (their stale bases read the chains); in a scan that is the scanned registry, already locked by ingest.
    """
    missing = (
        "SELECT rm.manifest_id FROM analytics_repositorymanifest rm WHERE NOT EXISTS "
        "(SELECT 1 FROM analytics_layerchain c WHERE c.manifest_id = rm.manifest_id)"
    )
    written = 0
    batch: tuple[list[int], list[int], list[str], list[bool], list[int]] = ([], [], [], [], [])
    chained: set[int] = set()

    def flush() -> int:
        if not batch[0]:
            return 0
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_SQL, [array_literal(column) for column in batch])
            rows = cursor.fetchall()
        chained.update(row[0] for row in rows)
        for column in batch:
            column.clear()
        return len(rows)

    def manifests() -> Iterator[tuple[int, int, list[str]]]:
        if repository_ids is None:  # every manifest: streamed
            with connection.chunked_cursor() as reader:
                reader.execute(_LAYERS_SQL.format(targets=missing))
                yield from _manifest_layers(_rows(reader))
            return
        # Some repositories': their manifests first, then their layers by id, a slice at a time. As one
        # statement through a cursor (planned for its first rows) the planner could walk every image's
        # layers in index order, testing each against the repository: a scan's every repository read
        # the whole table (its statistics lag behind the database a first scan is filling).
        with connection.cursor() as cursor:
            cursor.execute(_REPOSITORY_MISSING_SQL, [int_array(repository_ids)])
            counts = dict(cursor.fetchall())
            ids = sorted(counts)
            for start in range(0, len(ids), _SLICE):
                cursor.execute(_LAYERS_BY_ID_SQL, [int_array(ids[start : start + _SLICE])])
                rows = ((m, counts[m], digest) for m, digest in cursor.fetchall())
                yield from _manifest_layers(rows)

    for manifest_id, layer_count, digests in manifests():
        total = len(digests)
        for depth, chain in enumerate(layer_chains(digests), start=1):
            batch[0].append(manifest_id)
            batch[1].append(depth)
            batch[2].append(chain)
            batch[3].append(depth == total)
            batch[4].append(layer_count)
        if len(batch[0]) >= INSERT_BATCH:
            written += flush()
    written += flush()
    if chained:
        with connection.cursor() as cursor:
            cursor.execute(_HOLDERS_SQL, [int_array(sorted(chained))])
            content_versions_bump(registry_ids=[row[0] for row in cursor.fetchall()])
    return written


def chains_fill_layer_counts() -> int:
    """Give chain rows written without their manifest's layer count (by code older than migration 0027,
    while it ran) that count; the number of rows filled. One pass over the table."""
    with connection.cursor() as cursor:
        cursor.execute(_FILL_SQL)
        return int(cursor.rowcount)
