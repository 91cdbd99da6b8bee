"""Content questions: who an image shares most with, missed savings, build history, largest layers,
content in several registries. Every figure follows the registry rule: one stored copy per digest per
registry. Lists take `limit`/`offset` (keyset-free, but over an ORDER BY the planner can stop early)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from analytics.models import BlobLine, Registry, RepositoryManifest
from analytics.selectors.answers import MISSED_SAVINGS, answers_stale
from analytics.selectors.layers import layers_created_by
from analytics.selectors.partners import partner_rows
from analytics.selectors.scope import Scope, namespace_rows_scope


def _rows(sql: str, params: list[object] | dict[str, object]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _rows_without_jit(sql: str, params: list[object]) -> list[tuple]:
    """A grouping over a scope's layers: estimated costly enough for JIT compilation, which then takes
    seconds (measured on the bench database) for a run that takes less without it."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- the images an image shares most with -----------------------------------------------------------------


@dataclass(frozen=True)
class Partner:
    holding_id: int
    repository: str
    digest: str
    shared_blobs: int
    shared_bytes: int  # Σ sizes of the digests both images reference (layers, config, manifest)


def image_partners(*, holding_id: int, manifest_id: int, scope: Scope, limit: int = 10) -> list[Partner]:
    """The images (in the scope) that share the most bytes with this one, most first, then by holding id
    (`analytics.selectors.partners`: exact, its cost following the answer)."""
    rows = partner_rows(holding_id=holding_id, manifest_id=manifest_id, scope=scope, limit=limit)
    names = {
        h.id: (h.repository.name, h.manifest.digest)
        for h in RepositoryManifest.objects.filter(id__in=[r[0] for r in rows]).select_related(
            "repository", "manifest"
        )
    }
    return [Partner(h, *names[h], n, int(s)) for h, n, s in rows]


# --- missed savings: one diff_id under several digests ----------------------------------------------------

_SCOPED_BLOBS = """
held AS (
    SELECT DISTINCT r.registry_id, rm.manifest_id
    FROM analytics_repositorymanifest rm JOIN analytics_repository r ON r.id = rm.repository_id
    WHERE {where}
),
layers AS (
    SELECT DISTINCT h.registry_id, ml.blob_id FROM held h
    JOIN analytics_manifestlayer ml ON ml.manifest_id = h.manifest_id
)
"""

_MISSED_GROUPS = """
SELECT l.registry_id, reg.name, b.diff_id, count(*) AS copies, sum(b.size) AS stored, min(b.size),
    sum(b.size) - min(b.size) AS saved,
    array_agg(b.digest || ' ' || b.media_type || ' ' || b.size ORDER BY b.size, b.digest)
FROM layers l JOIN analytics_blob b ON b.id = l.blob_id AND b.diff_id <> ''
JOIN analytics_registry reg ON reg.id = l.registry_id
GROUP BY l.registry_id, reg.name, b.diff_id
HAVING count(*) > 1
ORDER BY saved DESC, b.diff_id, l.registry_id
LIMIT %s OFFSET %s
"""
_MISSED_SQL = "WITH" + _SCOPED_BLOBS + _MISSED_GROUPS

# A plain registry scope (or all of them) starts from the few diff_ids stored more than once
# (`DiffIdCopies`, kept by triggers) and keeps the copies each registry holds as layers
# (`RegistryBlob.layer_refs`).
_MISSED_REGISTRY_SQL = (
    """WITH layers AS (
    SELECT rb.registry_id, rb.blob_id FROM analytics_diffidcopies d
    JOIN analytics_blob b ON b.diff_id = d.diff_id
    JOIN analytics_registryblob rb ON rb.blob_id = b.id AND rb.registry_id = ANY(%s) AND rb.layer_refs > 0
)"""
    + _MISSED_GROUPS
)


@dataclass(frozen=True)
class MissedSaving:
    registry_id: int
    registry: str
    diff_id: str
    copies: int
    stored_bytes: int
    smallest_bytes: int
    saved_bytes: int  # what keeping only the smallest copy would save
    blobs: tuple[tuple[str, str, int], ...]  # (digest, media type, size), smallest first


# Plain registries whose materialized rows are current: each registry's first offset + limit rows
# (a range of its (registry, rank) index), merged in the list's order.
_MISSED_MAINTAINED_SQL = """
SELECT x.registry_id, reg.name, x.diff_id, x.copies, x.stored_bytes, x.smallest_bytes, x.saved_bytes, x.blobs
FROM unnest(%s::bigint[]) AS r(id) CROSS JOIN LATERAL (
    SELECT ms.* FROM analytics_registrymissedsaving ms
    WHERE ms.registry_id = r.id AND ms.rank < %s ORDER BY ms.rank
) x
JOIN analytics_registry reg ON reg.id = x.registry_id
ORDER BY x.saved_bytes DESC, x.diff_id, x.registry_id
LIMIT %s OFFSET %s
"""


def missed_savings(*, scope: Scope, limit: int = 50, offset: int = 0) -> list[MissedSaving]:
    """The same uncompressed layer (`diff_id`) stored under several blob digests, per registry.

    A plain registry scope (or all registries) reads each registry's materialized rows when they are
    current (`analytics.ingest.answers`), else computes them (`missed_savings_found`): the same answer."""
    registries = plain_registries(scope)
    if registries is not None and not answers_stale(registry_ids=registries, answer=MISSED_SAVINGS):
        return _missed(_rows(_MISSED_MAINTAINED_SQL, [registries, limit + offset, limit, offset]))
    return missed_savings_found(scope=scope, limit=limit, offset=offset)


def missed_savings_found(*, scope: Scope, limit: int | None = 50, offset: int = 0) -> list[MissedSaving]:
    """`missed_savings` computed: a plain registry scope starts from `DiffIdCopies`; any other scope
    groups the layers of its holdings (`limit` None: every row)."""
    registries = plain_registries(scope)
    if registries is not None:
        return _missed(_rows(_MISSED_REGISTRY_SQL, [registries, limit, offset]))
    where, params = scope.where()
    return _missed(_rows(_MISSED_SQL.format(where=where), [*params, limit, offset]))


def _missed(rows: list[tuple[Any, ...]]) -> list[MissedSaving]:
    out = []
    for reg_id, reg, diff_id, copies, stored, smallest, saved, blobs in rows:
        parsed = tuple((d, mt, int(s)) for d, mt, s in (x.split(" ", 2) for x in blobs))
        out.append(MissedSaving(reg_id, reg, diff_id, copies, int(stored), int(smallest), int(saved), parsed))
    return out


# --- build history: bytes per created_by; the largest layers ----------------------------------------------
#
# Both count, per (registry, layer) of the scope, `holders`: the scope's holdings (any kind) listing the
# layer. A plain registry reads them maintained (`RegistryBlob.layer_refs`, its build history
# `RegistryInstruction`), a namespace too (`NamespaceBlob.layer_refs`); any other scope counts its own
# holdings, so the cost follows the scope, not the registry. A layer's line is its `BlobLine`
# (analytics.ingest.figures); build history counts a layer without one under '', as
# `RegistryInstruction` does.

_SCOPE_LAYER_HOLDERS = """
held AS (
    -- a manifest held by several repositories of the scope is read once, weighted by its holdings
    SELECT r.registry_id, rm.manifest_id, count(*) AS holdings
    FROM analytics_repositorymanifest rm JOIN analytics_repository r ON r.id = rm.repository_id
    WHERE {where}
    GROUP BY 1, 2
),
per_blob AS (
    -- each held manifest's layers through the manifest index (never a scan of every layer row); a
    -- layer listed twice by one manifest counts its holdings once
    SELECT h.registry_id, x.blob_id, sum(h.holdings) AS holders FROM held h
    CROSS JOIN LATERAL (
        SELECT DISTINCT ml.blob_id FROM analytics_manifestlayer ml WHERE ml.manifest_id = h.manifest_id
    ) x
    GROUP BY 1, 2
)
"""

_NAMESPACE_LAYER_HOLDERS = """
per_blob AS (
    SELECT nb.registry_id, nb.blob_id, nb.layer_refs AS holders FROM analytics_namespaceblob nb
    WHERE nb.registry_id = ANY(%s) AND nb.namespace = %s AND nb.layer_refs > 0
)
"""


def plain_registries(scope: Scope) -> list[int] | None:
    """The registries of a plain registry scope, or of all registries (tagged, no filter); else None."""
    if scope == Scope(registry_id=scope.registry_id):
        if scope.registry_id is not None:
            return [scope.registry_id]
        return list(Registry.objects.values_list("id", flat=True))
    return None


def _layer_holders(scope: Scope) -> tuple[str, list[object]]:
    """The `per_blob (registry_id, blob_id, holders)` CTE of a scope, and its parameters."""
    namespace = namespace_rows_scope(scope)
    if namespace is not None:
        return _NAMESPACE_LAYER_HOLDERS, list(namespace)
    where, params = scope.where()
    return _SCOPE_LAYER_HOLDERS.format(where=where), params


_BY_INSTRUCTION_SQL = """WITH {holders}
SELECT coalesce(bl.created_by, '') AS created_by, count(*) AS layers,
    sum(b.size) AS stored, coalesce(sum(b.size) FILTER (WHERE p.holders = 1), 0) AS uniq,
    sum(b.size * p.holders) AS logical
FROM per_blob p JOIN analytics_blob b ON b.id = p.blob_id
LEFT JOIN analytics_blobline bl ON bl.blob_id = p.blob_id
GROUP BY 1
ORDER BY {order} DESC, 1
LIMIT %s OFFSET %s
"""

# A plain registry (or all of them: a layer counts once per registry) reads its maintained build history.
_BY_INSTRUCTION_REGISTRY_SQL = """
SELECT created_by, layers, stored, uniq, logical FROM (
    SELECT created_by, sum(layers) AS layers, sum(stored_bytes) AS stored, sum(unique_bytes) AS uniq,
        sum(logical_bytes) AS logical
    FROM analytics_registryinstruction WHERE registry_id = ANY(%s) GROUP BY created_by
) x
ORDER BY {order} DESC, 1
LIMIT %s OFFSET %s
"""


@dataclass(frozen=True)
class InstructionBytes:
    created_by: str
    layers: int
    stored_bytes: int  # each layer once per registry
    unique_bytes: int  # layers held by a single image of the scope
    logical_bytes: int  # each layer once per image holding it


def bytes_by_instruction(
    *, scope: Scope, order: str = "stored", limit: int = 50, offset: int = 0
) -> list[InstructionBytes]:
    """`created_by` lines ranked by the stored (or unique, or logical) bytes of the layers they produced."""
    column = {"stored": "stored", "unique": "uniq", "logical": "logical"}[order]
    registries = plain_registries(scope)
    if registries is not None:
        sql, params = _BY_INSTRUCTION_REGISTRY_SQL.format(order=column), [registries]
    else:
        holders, params = _layer_holders(scope)
        sql = _BY_INSTRUCTION_SQL.format(holders=holders, order=column)
    return [
        InstructionBytes(cb, int(n), int(s), int(u), int(lg))
        for cb, n, s, u, lg in _rows_without_jit(sql, [*params, limit, offset])
    ]


@dataclass(frozen=True)
class LargeLayer:
    digest: str
    size: int
    uncompressed_size: int | None
    registry_id: int
    images: int
    created_by: str


_LARGEST_SQL = """WITH {holders}
SELECT p.blob_id, b.digest, b.size, b.uncompressed_size, p.registry_id, p.holders
FROM per_blob p JOIN analytics_blob b ON b.id = p.blob_id
ORDER BY b.size DESC, b.digest, p.registry_id
LIMIT %s OFFSET %s
"""

# Plain registries read the maintained counts: `layer_refs` are the holdings listing the layer, and
# `registry_blob_size (registry, size DESC, blob) WHERE layer_refs > 0` walks each registry's largest
# first (the page's first limit + offset rows of each registry, merged).
_LARGEST_REGISTRY_SQL = """
SELECT x.* FROM unnest(%s::int[]) AS reg(id) CROSS JOIN LATERAL (
    SELECT rb.blob_id, b.digest, rb.size, b.uncompressed_size, rb.registry_id, rb.layer_refs
    FROM analytics_registryblob rb JOIN analytics_blob b ON b.id = rb.blob_id
    WHERE rb.registry_id = reg.id AND rb.layer_refs > 0
    ORDER BY rb.size DESC, b.digest
    LIMIT %s
) x
ORDER BY x.size DESC, x.digest, x.registry_id
LIMIT %s OFFSET %s
"""


def _lines(blob_ids: list[int]) -> dict[int, str]:
    """Each layer's line: its `BlobLine`, else probed (`layers_created_by`), else ''."""
    found = dict(BlobLine.objects.filter(blob_id__in=blob_ids).values_list("blob_id", "created_by"))
    probed = layers_created_by(blob_ids=[b for b in blob_ids if b not in found])
    return {b: found[b] if b in found else probed.get(b) or "" for b in blob_ids}


def largest_layers(*, scope: Scope, limit: int = 50, offset: int = 0) -> list[LargeLayer]:
    """The largest layers held in the scope, with the images holding each and its history line."""
    registries = plain_registries(scope)
    if registries is not None:
        rows = _rows(_LARGEST_REGISTRY_SQL, [registries, limit + offset, limit, offset])
    else:
        holders, params = _layer_holders(scope)
        rows = _rows_without_jit(_LARGEST_SQL.format(holders=holders), [*params, limit, offset])
    lines = _lines([r[0] for r in rows])
    return [LargeLayer(d, int(s), u, reg, int(n), lines[b]) for b, d, s, u, reg, n in rows]


# --- the same content in several registries ---------------------------------------------------------------

_CROSS_SQL = """
WITH held AS (
    SELECT DISTINCT r.registry_id, rm.manifest_id
    FROM analytics_repositorymanifest rm JOIN analytics_repository r ON r.id = rm.repository_id
    WHERE {where}
),
refs AS (
    SELECT h.registry_id, 'manifest' AS kind, m.digest, m.size FROM held h
    JOIN analytics_manifest m ON m.id = h.manifest_id
    UNION
    -- each held manifest's distinct blobs, layers and config (ManifestBlob)
    SELECT h.registry_id, 'blob', b.digest, b.size FROM held h
    JOIN analytics_manifestblob mb ON mb.manifest_id = h.manifest_id
    JOIN analytics_blob b ON b.id = mb.blob_id
)
SELECT refs.kind, refs.digest, refs.size, count(*) AS registries, refs.size * count(*) AS total,
    array_agg(reg.name ORDER BY reg.name)
FROM refs JOIN analytics_registry reg ON reg.id = refs.registry_id
GROUP BY refs.kind, refs.digest, refs.size
HAVING count(*) > 1
ORDER BY refs.size * (count(*) - 1) DESC, refs.digest
LIMIT %s OFFSET %s
"""


@dataclass(frozen=True)
class CrossRegistryContent:
    kind: str  # manifest or blob
    digest: str
    size: int
    registries: int
    total_bytes: int  # one copy stored in each registry
    registry_names: tuple[str, ...]


# Tagged content reads the maintained registries per digest (`BlobRegistries`, `ManifestRegistries`):
# only digests several registries hold have rows in their partial indexes, walked in the list's order;
# the registries' names are looked up for the page's rows only.
_CROSS_MAINTAINED_SQL = """
WITH page AS (
    SELECT * FROM (
        SELECT 'blob' AS kind, br.blob_id AS id, b.digest, br.size, br.registries
        FROM analytics_blobregistries br JOIN analytics_blob b ON b.id = br.blob_id
        WHERE br.registries > 1
        UNION ALL
        SELECT 'manifest', mr.manifest_id, m.digest, mr.size, mr.registries
        FROM analytics_manifestregistries mr JOIN analytics_manifest m ON m.id = mr.manifest_id
        WHERE mr.registries > 1
    ) x
    ORDER BY size * (registries - 1) DESC, digest
    LIMIT %s OFFSET %s
)
SELECT p.kind, p.digest, p.size, p.registries, p.size * p.registries, ARRAY(
    SELECT reg.name FROM analytics_registry reg
    WHERE (p.kind = 'blob' AND EXISTS (
            SELECT 1 FROM analytics_registryblob rb
            WHERE rb.registry_id = reg.id AND rb.blob_id = p.id AND rb.refs > 0))
       OR (p.kind = 'manifest' AND EXISTS (
            SELECT 1 FROM analytics_registrymanifestref x
            WHERE x.registry_id = reg.id AND x.manifest_id = p.id AND x.refs > 0))
    ORDER BY reg.name)
FROM page p
ORDER BY p.size * (p.registries - 1) DESC, p.digest
"""


def cross_registry_content(
    *, include_untagged: bool = False, limit: int = 50, offset: int = 0
) -> list[CrossRegistryContent]:
    """Digests held in more than one registry: each registry stores (and pays for) its own copy.

    Tagged content reads the maintained registries per digest; with untagged holdings it is computed
    (`cross_registry_content_computed`)."""
    if include_untagged:
        return cross_registry_content_computed(include_untagged=True, limit=limit, offset=offset)
    rows = _rows(_CROSS_MAINTAINED_SQL, [limit, offset])
    return [CrossRegistryContent(k, d, int(s), n, int(t), tuple(names)) for k, d, s, n, t, names in rows]


def cross_registry_content_computed(
    *, include_untagged: bool = False, limit: int = 50, offset: int = 0
) -> list[CrossRegistryContent]:
    """`cross_registry_content` from the holdings: every held manifest's digests, grouped."""
    where, params = Scope(include_untagged=include_untagged).where()
    rows = _rows(_CROSS_SQL.format(where=where), [*params, limit, offset])
    return [CrossRegistryContent(k, d, int(s), n, int(t), tuple(names)) for k, d, s, n, t, names in rows]
