"""Dedup summaries of a scope (DESIGN section 3): images, distinct layers, logical, stored and saved
bytes and the ratio, with their layer-only and uncompressed variants.

A plain registry, repository or namespace scope, or all registries, reads the figures ingest maintains;
any other scope is computed from its holdings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.db import connection

from analytics.models import NamespaceFigures, ScopeFigures
from analytics.models.figures import SUMMARY_FIGURE_FIELDS
from analytics.selectors.scope import Scope, namespace_rows_scope
from workers.registry.records import FOREIGN_LAYER_TYPES


@dataclass(frozen=True)
class DedupSummary:
    images: int
    distinct_layers: int
    logical_bytes: int
    stored_bytes: int
    saved_bytes: int
    dedup_ratio: float
    layers_logical_bytes: int
    layers_stored_bytes: int
    manifests: int
    indexes: int
    repositories: int
    tagged_only: bool
    scope: dict[str, object] = field(default_factory=dict)
    # foreign / non-distributable layers: named by images, stored elsewhere, so in neither figure above
    foreign_bytes: int = 0
    # Uncompressed figures (what nodes unpack), over the layers whose uncompressed size is known (from
    # an engine's pull-through or a deep scan); never added to the compressed ones. Null when none is.
    # `uncompressed_known_compressed_bytes` is those same layers' compressed stored bytes, to compare.
    uncompressed_known_layers: int = 0
    uncompressed_coverage: float = 0.0  # known / distinct_layers
    uncompressed_logical_bytes: int | None = None
    uncompressed_stored_bytes: int | None = None
    uncompressed_known_compressed_bytes: int | None = None

    SUMMARY_FIELDS = (
        "images",
        "distinct_layers",
        "logical_bytes",
        "stored_bytes",
        "saved_bytes",
        "dedup_ratio",
    )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.SUMMARY_FIELDS}


_SUMMARY_SQL = """
WITH held AS (
    SELECT rm.repository_id, m.id AS manifest_id, m.kind, m.size, m.config_id
    FROM analytics_repositorymanifest rm
    JOIN analytics_repository r ON r.id = rm.repository_id
    JOIN analytics_manifest m ON m.id = rm.manifest_id
    WHERE {where}
),
refs AS (
    -- distinct blobs per holding: a layer listed twice in one manifest is stored once
    SELECT DISTINCT h.repository_id, h.manifest_id, ml.blob_id, TRUE AS is_layer
    FROM held h JOIN analytics_manifestlayer ml ON ml.manifest_id = h.manifest_id
    UNION
    SELECT h.repository_id, h.manifest_id, h.config_id, FALSE
    FROM held h WHERE h.config_id IS NOT NULL
),
blobs AS (
    SELECT refs.*, b.size, b.uncompressed_size, b.media_type IN ({foreign}) AS is_foreign
    FROM refs JOIN analytics_blob b ON b.id = refs.blob_id
),
sized AS (
    SELECT repository_id, manifest_id, blob_id, is_layer, size, uncompressed_size FROM blobs
    WHERE NOT is_foreign
),
known AS (
    -- layers whose uncompressed size is known (engine linking, deep scan): the uncompressed_* fields
    SELECT blob_id, size, uncompressed_size FROM sized WHERE is_layer AND uncompressed_size IS NOT NULL
)
SELECT
    (SELECT count(*) FROM held WHERE kind = 'image'),
    (SELECT count(*) FROM held),
    (SELECT count(*) FROM held WHERE kind = 'index'),
    (SELECT count(DISTINCT repository_id) FROM held),
    (SELECT count(DISTINCT blob_id) FROM sized WHERE is_layer),
    (SELECT coalesce(sum(size), 0) FROM held) + (SELECT coalesce(sum(size), 0) FROM sized),
    (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT manifest_id, size FROM held) m)
      + (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT blob_id, size FROM sized) b),
    (SELECT coalesce(sum(size), 0) FROM sized WHERE is_layer),
    (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT blob_id, size FROM sized WHERE is_layer) l),
    (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT blob_id, size FROM blobs WHERE is_foreign) f),
    (SELECT count(DISTINCT blob_id) FROM known),
    (SELECT coalesce(sum(uncompressed_size), 0) FROM known),
    (SELECT coalesce(sum(uncompressed_size), 0)
        FROM (SELECT DISTINCT blob_id, uncompressed_size FROM known) u),
    (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT blob_id, size FROM known) c)
"""


FOREIGN_TYPES_SQL = ", ".join(f"'{t}'" for t in sorted(FOREIGN_LAYER_TYPES))


def _uncompressed_fields(
    distinct_layers: int, known: int, logical: int, stored: int, compressed: int
) -> dict[str, object]:
    """The `uncompressed_*` fields of a summary (see DedupSummary)."""
    if not known:
        return {}
    return {
        "uncompressed_known_layers": known,
        "uncompressed_coverage": round(known / distinct_layers, 4) if distinct_layers else 0.0,
        "uncompressed_logical_bytes": logical,
        "uncompressed_stored_bytes": stored,
        "uncompressed_known_compressed_bytes": compressed,
    }


# What the sum of the registries' rows counts more than once: a digest held by k > 1 registries is
# stored (and counted distinct) once in the summary of all of them, k times in the sum. Read from the
# maintained registries per digest, over the digests several registries hold only (a partial index).
_ACROSS_SQL = f"""
SELECT
    coalesce(sum(br.layer_registries - 1) FILTER (WHERE br.layer_registries > 1 AND NOT f), 0),
    coalesce(sum(br.size * (br.registries - 1)) FILTER (WHERE NOT f), 0)
      + (SELECT coalesce(sum(size * (registries - 1)), 0) FROM analytics_manifestregistries
         WHERE registries > 1),
    coalesce(sum(br.size * (br.layer_registries - 1)) FILTER (WHERE br.layer_registries > 1 AND NOT f), 0),
    coalesce(sum(br.size * (br.registries - 1)) FILTER (WHERE f), 0),
    coalesce(sum(br.layer_registries - 1)
             FILTER (WHERE br.layer_registries > 1 AND NOT f AND u IS NOT NULL), 0),
    coalesce(sum(u * (br.layer_registries - 1)) FILTER (WHERE br.layer_registries > 1 AND NOT f), 0),
    coalesce(sum(br.size * (br.layer_registries - 1))
             FILTER (WHERE br.layer_registries > 1 AND NOT f AND u IS NOT NULL), 0)
FROM analytics_blobregistries br
JOIN LATERAL (SELECT b.media_type IN ({FOREIGN_TYPES_SQL}) AS f, b.uncompressed_size AS u
              FROM analytics_blob b WHERE b.id = br.blob_id) b ON TRUE
WHERE br.registries > 1
"""
_ACROSS_FIELDS = (
    "distinct_layers",
    "stored_bytes",
    "layers_stored_bytes",
    "foreign_bytes",
    "uncompressed_known_layers",
    "uncompressed_stored_bytes",
    "uncompressed_known_compressed_bytes",
)


def _all_registries_row() -> dict[str, int] | None:
    """The summary of every registry (tagged, no filter) from the maintained rows: each registry's row
    summed, less what digests held by several registries add more than once. None before any row."""
    rows = list(ScopeFigures.objects.filter(repository=None).values())
    if not rows:
        return None
    total = {f: sum(int(r[f]) for r in rows) for f in SUMMARY_FIGURE_FIELDS}
    with connection.cursor() as cursor:
        cursor.execute(_ACROSS_SQL)
        for name, value in zip(_ACROSS_FIELDS, cursor.fetchone(), strict=True):
            total[name] -= int(value)
    return total


def _maintained_row(scope: Scope) -> dict[str, int] | None:
    """The maintained row answering a plain registry, repository or namespace scope, if the scope is one.

    A namespace of one registry is served by its `NamespaceFigures` row (strict path prefixes only);
    a namespace that is also a repository's exact name, or spans registries, is computed.
    """
    namespace = namespace_rows_scope(scope) if scope.registry_id is not None else None
    if namespace is not None:
        _, ns = namespace
        return NamespaceFigures.objects.filter(registry_id=scope.registry_id, namespace=ns).values().first()
    plain = Scope(registry_id=scope.registry_id, repository_id=scope.repository_id)
    if scope != plain:
        return None
    if scope.registry_id is None and scope.repository_id is None:
        return _all_registries_row()
    if scope.repository_id is not None:
        qs = ScopeFigures.objects.filter(repository_id=scope.repository_id)
        if scope.registry_id is not None:
            qs = qs.filter(registry_id=scope.registry_id)
    else:
        qs = ScopeFigures.objects.filter(registry_id=scope.registry_id, repository=None)
    row = qs.values().first()
    if row is None:  # never scanned (or figures not built yet): compute
        return None
    return row


def images_count_maintained(*, scope: Scope) -> int | None:
    """How many images a plain registry, repository or namespace scope, or every registry, holds (tagged,
    no filter), from the maintained rows; None for any other scope (count it)."""
    if scope == Scope():
        counts = list(ScopeFigures.objects.filter(repository=None).values_list("images", flat=True))
        return sum(counts) if counts else None
    row = _maintained_row(scope)
    return None if row is None else int(row["images"])


def dedup_summary(*, scope: Scope) -> DedupSummary:
    """Images, distinct layers, logical, stored and saved bytes and the ratio, for one scope.

    A plain registry, repository or namespace scope, or all registries (tagged only, no filter), reads
    the figures ingest maintains (`analytics.ingest.figures`); any other scope is computed from the
    holdings.
    """
    row = _maintained_row(scope)
    if row is None:
        return dedup_summary_computed(scope=scope)
    logical, stored = int(row["logical_bytes"]), int(row["stored_bytes"])
    return DedupSummary(
        images=row["images"],
        distinct_layers=row["distinct_layers"],
        logical_bytes=logical,
        stored_bytes=stored,
        saved_bytes=logical - stored,
        dedup_ratio=round(logical / stored, 4) if stored else 1.0,
        layers_logical_bytes=int(row["layers_logical_bytes"]),
        layers_stored_bytes=int(row["layers_stored_bytes"]),
        manifests=row["manifests"],
        indexes=row["indexes"],
        repositories=row["repositories"],
        tagged_only=True,
        scope=scope.describe(),
        foreign_bytes=int(row["foreign_bytes"]),
        # maintained too (analytics.ingest.figures, and a trigger when a blob's uncompressed size arrives)
        **_uncompressed_fields(
            row["distinct_layers"],
            int(row["uncompressed_known_layers"]),
            int(row["uncompressed_logical_bytes"]),
            int(row["uncompressed_stored_bytes"]),
            int(row["uncompressed_known_compressed_bytes"]),
        ),
    )


def dedup_summary_computed(*, scope: Scope) -> DedupSummary:
    """`dedup_summary` recomputed from the holdings: any scope, cost in proportion to it."""
    where, params = scope.where()
    with connection.cursor() as cursor:
        cursor.execute(_SUMMARY_SQL.format(where=where, foreign=FOREIGN_TYPES_SQL), params)
        (images, manifests, indexes, repos, layers, logical, stored, l_logical, l_stored, foreign, *unc) = (
            cursor.fetchone()
        )
    logical, stored = int(logical), int(stored)
    return DedupSummary(
        images=images,
        distinct_layers=layers,
        logical_bytes=logical,
        stored_bytes=stored,
        saved_bytes=logical - stored,
        dedup_ratio=round(logical / stored, 4) if stored else 1.0,
        layers_logical_bytes=int(l_logical),
        layers_stored_bytes=int(l_stored),
        manifests=manifests,
        indexes=indexes,
        repositories=repos,
        tagged_only=not scope.include_untagged,
        scope=scope.describe(),
        foreign_bytes=int(foreign),
        **_uncompressed_fields(layers, *(int(v) for v in unc)),
    )
