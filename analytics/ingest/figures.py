"""Maintained figures: reference counts and summaries that ingest keeps current, so a read costs its
answer, not the registry.

A registry-wide summary recomputed from the holdings reads every layer row of the registry (seconds at a
million images); a layer held by 100,000 images costs as much to count. So ingest keeps, in the same
transaction as the holdings it changes:

- `RegistryBlob(registry, blob)`: `refs` (present holdings of any kind referencing the blob as a layer
  or config), `layer_refs`, `images` (image holdings listing it as a layer) and `repositories`;
- `RepositoryBlob(repository, blob)`: image holdings of the repository listing the blob as a layer;
- `RegistryManifestRef(registry, manifest)`: repositories holding the manifest;
- `ScopeFigures`: the tagged-only summary of each registry and each repository;
- `RegistryHeld`: the distinct manifests and blobs a registry holds and its current tags (the what-if
  of deleting every tag, read in one row);
- `NamespaceBlob`, `NamespaceManifestRef`, `NamespaceFigures`: the same per namespace (every strict
  path prefix of a repository name), by the same deltas;
- `BlobRegistries`, `ManifestRegistries`: how many registries hold each digest, moved only when a
  registry starts or stops holding it (the summary of all registries, content in several registries).

Ingest changes sets of holdings (present flipped on or off); `figures_apply` turns the sets of all the
repositories one transaction ingests into signed deltas, set-based, one statement per table for all of
them, and detects 0 <-> positive transitions from the upsert's new value minus the delta, so the cost
follows what the scans changed, never the registry's size. Each repository's own row is recomputed (it
costs the repository). `analytics.ingest.rebuild` recomputes a registry
from scratch.
"""

from __future__ import annotations

from django.db import connection
from django.db.backends.utils import CursorWrapper

from analytics.infra.sqlarrays import array_literal, int_array
from analytics.models.figures import SUMMARY_FIGURE_FIELDS
from analytics.selectors.scope import Scope
from analytics.selectors.summary import FOREIGN_TYPES_SQL, dedup_summary_computed

# Signed per-blob deltas of the changed holdings (repository, manifest, sign), mirroring
# reports._SUMMARY_SQL's distinct refs: `per_holding` per holding and blob, `delta` summed per blob.
_DELTA_REFS = """
WITH d AS (
    SELECT u.repository_id, u.manifest_id, u.sign, m.kind, m.size, m.config_id
    FROM unnest(%(repos)s::int[], %(ids)s::int[], %(signs)s::int[]) AS u(repository_id, manifest_id, sign)
    JOIN analytics_manifest m ON m.id = u.manifest_id
),
r AS (
    SELECT DISTINCT d.repository_id, d.manifest_id, d.sign, d.kind, ml.blob_id, TRUE AS is_layer
    FROM d JOIN analytics_manifestlayer ml ON ml.manifest_id = d.manifest_id
    UNION
    SELECT d.repository_id, d.manifest_id, d.sign, d.kind, d.config_id, FALSE
    FROM d WHERE d.config_id IS NOT NULL
),
per_holding AS (
    SELECT repository_id, manifest_id, sign, kind, blob_id, bool_or(is_layer) AS is_layer, count(*) AS roles
    FROM r GROUP BY 1, 2, 3, 4, 5
),
delta AS (
    SELECT blob_id,
        sum(sign) AS refs,
        coalesce(sum(sign) FILTER (WHERE is_layer), 0) AS layer_refs,
        coalesce(sum(sign) FILTER (WHERE is_layer AND kind = 'image'), 0) AS images
    FROM per_holding GROUP BY blob_id
)
"""

_APPLY_REPOSITORY_BLOBS = (
    _DELTA_REFS
    + """,
rdelta AS (
    SELECT repository_id, blob_id, coalesce(sum(sign) FILTER (WHERE is_layer AND kind = 'image'), 0) AS images
    FROM per_holding GROUP BY 1, 2
),
up AS (
    INSERT INTO analytics_repositoryblob (repository_id, blob_id, images)
    SELECT repository_id, blob_id, images FROM rdelta WHERE images <> 0 ORDER BY repository_id, blob_id
    ON CONFLICT (repository_id, blob_id)
    DO UPDATE SET images = analytics_repositoryblob.images + excluded.images
    RETURNING repository_id, blob_id, images
),
moved AS (
    SELECT up.blob_id, CASE WHEN up.images > 0 AND up.images - rdelta.images <= 0 THEN 1
                            WHEN up.images <= 0 AND up.images - rdelta.images > 0 THEN -1 ELSE 0 END AS n
    FROM up JOIN rdelta USING (repository_id, blob_id)
)
SELECT blob_id, sum(n)::int FROM moved GROUP BY blob_id HAVING sum(n) <> 0
"""
)

# Each repository's own deltas (holdings and logical bytes, which its namespaces and the registry add up).
_PER_REPOSITORY = (
    _DELTA_REFS
    + f""",
blobs AS (
    SELECT ph.repository_id,
        coalesce(sum(b.size * ph.sign * ph.roles) FILTER (WHERE NOT f.foreign_), 0) AS logical,
        coalesce(sum(b.size * ph.sign) FILTER (WHERE ph.is_layer AND NOT f.foreign_), 0) AS layers_logical,
        coalesce(sum(b.uncompressed_size * ph.sign) FILTER (WHERE ph.is_layer AND NOT f.foreign_), 0)
            AS u_logical
    FROM per_holding ph JOIN analytics_blob b ON b.id = ph.blob_id,
        LATERAL (SELECT b.media_type IN ({FOREIGN_TYPES_SQL}) AS foreign_) f
    GROUP BY 1
),
holdings AS (
    SELECT repository_id,
        sum(size * sign) AS m_logical,
        coalesce(sum(sign) FILTER (WHERE kind = 'image'), 0) AS images,
        sum(sign) AS manifests,
        coalesce(sum(sign) FILTER (WHERE kind = 'index'), 0) AS indexes
    FROM d GROUP BY 1
)
SELECT h.repository_id, h.images, h.manifests, h.indexes, h.m_logical,
    coalesce(b.logical, 0), coalesce(b.layers_logical, 0), coalesce(b.u_logical, 0),
    (SELECT count(*) FROM analytics_repositorymanifest rm
     WHERE rm.repository_id = h.repository_id AND rm.present)
FROM holdings h LEFT JOIN blobs b USING (repository_id)
"""
)

_APPLY_REGISTRY_BLOBS = (
    _DELTA_REFS
    + f""",
rd AS (
    SELECT delta.*, coalesce(x.n, 0) AS repositories
    FROM delta LEFT JOIN unnest(%(repo_blobs)s::int[], %(repo_signs)s::int[]) AS x(blob_id, n) USING (blob_id)
),
up AS (
    INSERT INTO analytics_registryblob (registry_id, blob_id, refs, layer_refs, images, repositories, size)
    SELECT %(registry)s, rd.blob_id, rd.refs, rd.layer_refs, rd.images, rd.repositories, b.size
    FROM rd JOIN analytics_blob b ON b.id = rd.blob_id ORDER BY rd.blob_id
    ON CONFLICT (registry_id, blob_id) DO UPDATE SET
        refs = analytics_registryblob.refs + excluded.refs,
        layer_refs = analytics_registryblob.layer_refs + excluded.layer_refs,
        images = analytics_registryblob.images + excluded.images,
        repositories = analytics_registryblob.repositories + excluded.repositories
    RETURNING blob_id, refs, layer_refs
),
t AS (
    SELECT up.blob_id, b.size, b.uncompressed_size AS usize,
        b.media_type IN ({FOREIGN_TYPES_SQL}) AS foreign_,
        sign(greatest(up.refs, 0)) - sign(greatest(up.refs - rd.refs, 0)) AS stored,
        sign(greatest(up.layer_refs, 0)) - sign(greatest(up.layer_refs - rd.layer_refs, 0)) AS layer
    FROM up JOIN rd USING (blob_id) JOIN analytics_blob b ON b.id = up.blob_id
),
across AS (
    -- the registry started or stopped holding these blobs: how many registries hold each
    INSERT INTO analytics_blobregistries (blob_id, registries, layer_registries, size)
    SELECT blob_id, stored, layer, size FROM t WHERE stored <> 0 OR layer <> 0 ORDER BY blob_id
    ON CONFLICT (blob_id) DO UPDATE SET
        registries = analytics_blobregistries.registries + excluded.registries,
        layer_registries = analytics_blobregistries.layer_registries + excluded.layer_registries
)
SELECT
    coalesce(sum(size * stored) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(layer) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * layer) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * stored) FILTER (WHERE foreign_), 0),
    coalesce(sum(layer) FILTER (WHERE NOT foreign_ AND usize IS NOT NULL), 0),
    coalesce(sum(usize * layer) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * layer) FILTER (WHERE NOT foreign_ AND usize IS NOT NULL), 0),
    coalesce(sum(stored), 0),
    coalesce(sum(size * stored), 0)
FROM t
"""
)

# The holdings' deltas per manifest (RegistryManifestRef counts the repositories holding it).
_APPLY_MANIFESTS = """
WITH d AS (
    SELECT u.manifest_id, sum(u.sign)::int AS sign, min(m.size) AS size
    FROM unnest(%(ids)s::int[], %(signs)s::int[]) AS u(manifest_id, sign)
    JOIN analytics_manifest m ON m.id = u.manifest_id
    GROUP BY 1
),
up AS (
    INSERT INTO analytics_registrymanifestref (registry_id, manifest_id, refs)
    SELECT %(registry)s, manifest_id, sign FROM d WHERE sign <> 0 ORDER BY manifest_id
    ON CONFLICT (registry_id, manifest_id)
    DO UPDATE SET refs = analytics_registrymanifestref.refs + excluded.refs
    RETURNING manifest_id, refs
),
t AS (
    SELECT d.manifest_id, d.size, sign(greatest(up.refs, 0)) - sign(greatest(up.refs - d.sign, 0)) AS stored
    FROM up JOIN d USING (manifest_id)
),
across AS (
    INSERT INTO analytics_manifestregistries (manifest_id, registries, size)
    SELECT manifest_id, stored, size FROM t WHERE stored <> 0 ORDER BY manifest_id
    ON CONFLICT (manifest_id) DO UPDATE SET
        registries = analytics_manifestregistries.registries + excluded.registries
)
SELECT coalesce(sum(size * stored), 0), coalesce(sum(stored), 0) FROM t
"""

# The same deltas applied to every namespace (strict path prefix) of the changed repositories at once:
# `%(ns_repos)s` and `%(ns_names)s` pair each repository with each of its namespaces.
_NAMESPACE_PAIRS = "unnest(%(ns_repos)s::int[], %(ns_names)s::text[]) AS ns(repository_id, namespace)"
_APPLY_NAMESPACE_BLOBS = (
    _DELTA_REFS
    + f""",
nsdelta AS (
    SELECT ns.namespace, ph.blob_id, sum(ph.sign) AS refs,
        coalesce(sum(ph.sign) FILTER (WHERE ph.is_layer), 0) AS layer_refs
    FROM per_holding ph JOIN {_NAMESPACE_PAIRS} USING (repository_id)
    GROUP BY 1, 2
),
up AS (
    INSERT INTO analytics_namespaceblob (registry_id, namespace, blob_id, refs, layer_refs)
    SELECT %(registry)s, namespace, blob_id, refs, layer_refs FROM nsdelta
    WHERE refs <> 0 OR layer_refs <> 0 ORDER BY 2, 3
    ON CONFLICT (registry_id, namespace, blob_id) DO UPDATE SET
        refs = analytics_namespaceblob.refs + excluded.refs,
        layer_refs = analytics_namespaceblob.layer_refs + excluded.layer_refs
    RETURNING namespace, blob_id, refs, layer_refs
),
t AS (
    SELECT up.namespace, b.size, b.uncompressed_size AS usize,
        b.media_type IN ({FOREIGN_TYPES_SQL}) AS foreign_,
        sign(greatest(up.refs, 0)) - sign(greatest(up.refs - nsdelta.refs, 0)) AS stored,
        sign(greatest(up.layer_refs, 0)) - sign(greatest(up.layer_refs - nsdelta.layer_refs, 0)) AS layer
    FROM up JOIN nsdelta USING (namespace, blob_id) JOIN analytics_blob b ON b.id = up.blob_id
)
SELECT namespace,
    coalesce(sum(size * stored) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(layer) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * layer) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * stored) FILTER (WHERE foreign_), 0),
    coalesce(sum(layer) FILTER (WHERE NOT foreign_ AND usize IS NOT NULL), 0),
    coalesce(sum(usize * layer) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * layer) FILTER (WHERE NOT foreign_ AND usize IS NOT NULL), 0)
FROM t GROUP BY namespace
"""
)

_APPLY_NAMESPACE_MANIFESTS = f"""
WITH d AS (
    SELECT ns.namespace, u.manifest_id, sum(u.sign)::int AS sign, min(m.size) AS size
    FROM unnest(%(repos)s::int[], %(ids)s::int[], %(signs)s::int[]) AS u(repository_id, manifest_id, sign)
    JOIN {_NAMESPACE_PAIRS} USING (repository_id)
    JOIN analytics_manifest m ON m.id = u.manifest_id
    GROUP BY 1, 2
),
up AS (
    INSERT INTO analytics_namespacemanifestref (registry_id, namespace, manifest_id, refs)
    SELECT %(registry)s, namespace, manifest_id, sign FROM d WHERE sign <> 0 ORDER BY 2, 3
    ON CONFLICT (registry_id, namespace, manifest_id)
    DO UPDATE SET refs = analytics_namespacemanifestref.refs + excluded.refs
    RETURNING namespace, manifest_id, refs
)
SELECT up.namespace,
    coalesce(sum(d.size * (sign(greatest(up.refs, 0)) - sign(greatest(up.refs - d.sign, 0)))), 0)
FROM up JOIN d USING (namespace, manifest_id) GROUP BY up.namespace
"""

# Build history (`RegistryInstruction`): a layer's contribution to its line, from its holdings count
# `n` (`RegistryBlob.layer_refs`), as analytics.selectors.content spells the from-scratch query.
LINE_FIGURES = """
    ({n} > 0)::int AS layers, {size} * ({n} > 0)::int AS stored, {size} * ({n} = 1)::int AS uniq,
    {size} * greatest({n}, 0) AS logical"""
_ADD_INSTRUCTIONS = """
    ON CONFLICT (registry_id, md5(created_by)) DO UPDATE SET
        layers = analytics_registryinstruction.layers + excluded.layers,
        stored_bytes = analytics_registryinstruction.stored_bytes + excluded.stored_bytes,
        unique_bytes = analytics_registryinstruction.unique_bytes + excluded.unique_bytes,
        logical_bytes = analytics_registryinstruction.logical_bytes + excluded.logical_bytes
    RETURNING registry_id, created_by, layers"""

# The line of a layer (analytics.selectors.layers._CREATED_BY): one probe of the (blob, manifest) index.
LINE_OF = """(SELECT h.created_by FROM analytics_manifestlayer ml2
    JOIN analytics_manifest m ON m.id = ml2.manifest_id
    JOIN analytics_historyentry h ON h.config_id = m.config_id AND h.layer_position = ml2.position
    WHERE ml2.blob_id = {blob} ORDER BY ml2.manifest_id, ml2.position LIMIT 1)"""

# Lines found now for layers of the changed manifests that had none; the registries already holding
# such a layer move it from the '' line to the one found (before this change's deltas are applied).
_FILL_LINES = f"""
WITH cand AS (
    SELECT DISTINCT ml.blob_id FROM analytics_manifestlayer ml
    WHERE ml.manifest_id = ANY(%(ids)s::int[])
        AND NOT EXISTS (SELECT 1 FROM analytics_blobline bl WHERE bl.blob_id = ml.blob_id)
),
found AS (SELECT c.blob_id, {LINE_OF.format(blob="c.blob_id")} AS created_by FROM cand c),
ins AS (
    INSERT INTO analytics_blobline (blob_id, created_by)
    SELECT blob_id, created_by FROM found WHERE created_by IS NOT NULL ORDER BY blob_id
    ON CONFLICT (blob_id) DO NOTHING
    RETURNING blob_id, created_by
),
moved AS (
    SELECT rb.registry_id, ins.created_by, {LINE_FIGURES.format(n="rb.layer_refs", size="rb.size")}
    FROM ins JOIN analytics_registryblob rb ON rb.blob_id = ins.blob_id AND rb.layer_refs > 0
    WHERE ins.created_by <> ''
)
INSERT INTO analytics_registryinstruction
    (registry_id, created_by, layers, stored_bytes, unique_bytes, logical_bytes)
SELECT * FROM (
    SELECT registry_id, created_by, sum(layers), sum(stored), sum(uniq), sum(logical) FROM moved GROUP BY 1, 2
    UNION ALL
    SELECT registry_id, '', -sum(layers), -sum(stored), -sum(uniq), -sum(logical) FROM moved GROUP BY 1
) x ORDER BY 1, 2
{_ADD_INSTRUCTIONS}
"""

# This change's deltas, per line: run after the registry blob upsert (new counts), before its cleanup.
_APPLY_INSTRUCTIONS = (
    _DELTA_REFS
    + f""",
c AS (
    SELECT coalesce(bl.created_by, '') AS created_by, rb.size, rb.layer_refs AS new,
        rb.layer_refs - delta.layer_refs AS old
    FROM delta JOIN analytics_registryblob rb ON rb.registry_id = %(registry)s AND rb.blob_id = delta.blob_id
    LEFT JOIN analytics_blobline bl ON bl.blob_id = delta.blob_id
    WHERE delta.layer_refs <> 0
),
g AS (
    SELECT created_by, sum(n.layers - o.layers) AS layers, sum(n.stored - o.stored) AS stored,
        sum(n.uniq - o.uniq) AS uniq, sum(n.logical - o.logical) AS logical
    FROM c, LATERAL (SELECT {LINE_FIGURES.format(n="c.new", size="c.size")}) n,
        LATERAL (SELECT {LINE_FIGURES.format(n="c.old", size="c.size")}) o
    GROUP BY 1
)
INSERT INTO analytics_registryinstruction
    (registry_id, created_by, layers, stored_bytes, unique_bytes, logical_bytes)
SELECT %(registry)s, created_by, layers, stored, uniq, logical FROM g
WHERE (layers, stored, uniq, logical) <> (0, 0, 0, 0) ORDER BY created_by
{_ADD_INSTRUCTIONS}
"""
)


def _instructions_drop_empty(cursor: CursorWrapper, rows: list[tuple[int, str, int]]) -> None:
    """Delete the lines an upsert returned at zero layers (any registry: a line found moves them all)."""
    empty = [(registry_id, line) for registry_id, line, layers in rows if layers <= 0]
    if empty:
        cursor.execute(
            """DELETE FROM analytics_registryinstruction ri USING unnest(%s::int[], %s::text[]) AS x(r, line)
               WHERE ri.registry_id = x.r AND md5(ri.created_by) = md5(x.line) AND ri.layers <= 0""",
            [[r for r, _ in empty], [line for _, line in empty]],
        )


# The blobs (layers and configs) of the manifests `%(ids)s`: where a delta may have emptied a count.
_BLOBS_OF_IDS = """blob_id IN (
    SELECT ml.blob_id FROM analytics_manifestlayer ml WHERE ml.manifest_id = ANY(%(ids)s::int[])
    UNION SELECT config_id FROM analytics_manifest WHERE id = ANY(%(ids)s::int[]))"""


def namespaces_of(name: str) -> list[str]:
    """The namespaces a repository counts in: every strict path prefix (`a/b/c` -> `a`, `a/b`)."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _registry_row_add(*, registry_id: int, deltas: dict[str, int]) -> None:
    columns = ", ".join(SUMMARY_FIGURE_FIELDS)
    values = ", ".join(f"%({f})s" for f in SUMMARY_FIGURE_FIELDS)
    updates = ", ".join(f"{f} = analytics_scopefigures.{f} + excluded.{f}" for f in SUMMARY_FIGURE_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO analytics_scopefigures (registry_id, repository_id, {columns})
            VALUES (%(registry)s, NULL, {values})
            ON CONFLICT (registry_id) WHERE repository_id IS NULL DO UPDATE SET {updates}""",
            {"registry": registry_id, **{f: deltas.get(f, 0) for f in SUMMARY_FIGURE_FIELDS}},
        )


def registry_held_add(
    *,
    registry_id: int,
    manifests: int = 0,
    manifest_bytes: int = 0,
    blobs: int = 0,
    blob_bytes: int = 0,
    tags: int = 0,
) -> None:
    """Move a registry's `RegistryHeld` row by these deltas (distinct manifests and blobs held, current
    tags)."""
    if not any((manifests, manifest_bytes, blobs, blob_bytes, tags)):
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO analytics_registryheld
                (registry_id, manifests, manifest_bytes, blobs, blob_bytes, tags)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (registry_id) DO UPDATE SET
                manifests = analytics_registryheld.manifests + excluded.manifests,
                manifest_bytes = analytics_registryheld.manifest_bytes + excluded.manifest_bytes,
                blobs = analytics_registryheld.blobs + excluded.blobs,
                blob_bytes = analytics_registryheld.blob_bytes + excluded.blob_bytes,
                tags = analytics_registryheld.tags + excluded.tags""",
            [registry_id, manifests, manifest_bytes, blobs, blob_bytes, tags],
        )


def _namespace_rows_add(*, registry_id: int, deltas: dict[str, dict[str, int]]) -> None:
    columns = ", ".join(SUMMARY_FIGURE_FIELDS)
    values = ", ".join(f"%({f})s" for f in SUMMARY_FIGURE_FIELDS)
    updates = ", ".join(f"{f} = analytics_namespacefigures.{f} + excluded.{f}" for f in SUMMARY_FIGURE_FIELDS)
    with connection.cursor() as cursor:
        for namespace in sorted(deltas):
            cursor.execute(
                f"""INSERT INTO analytics_namespacefigures (registry_id, namespace, {columns})
                VALUES (%(registry)s, %(namespace)s, {values})
                ON CONFLICT (registry_id, namespace) DO UPDATE SET {updates}""",
                {
                    "registry": registry_id,
                    "namespace": namespace,
                    **{f: deltas[namespace].get(f, 0) for f in SUMMARY_FIGURE_FIELDS},
                },
            )
        # a namespace holding nothing has no row (as after a rebuild); its summary computes to zeros
        cursor.execute(
            "DELETE FROM analytics_namespacefigures WHERE registry_id = %s AND namespace = ANY(%s) "
            "AND repositories <= 0",
            [registry_id, sorted(deltas)],
        )


def _namespaces_apply(
    *, params: dict[str, object], pairs: list[tuple[int, str]], common: dict[int, dict[str, int]]
) -> None:
    """Apply the change to the repositories' namespaces (`pairs`: each repository with each of its
    namespaces): `common` holds each repository's deltas that its namespaces add up (holdings and logical
    bytes); distinct blobs and manifests are counted per namespace."""
    params["ns_repos"] = int_array(rid for rid, _ in pairs)
    params["ns_names"] = array_literal(ns for _, ns in pairs)
    per_ns: dict[str, dict[str, int]] = {}
    for rid, ns in pairs:
        row = per_ns.setdefault(ns, dict.fromkeys(SUMMARY_FIGURE_FIELDS, 0))
        for f, v in common[rid].items():
            row[f] += v
    with connection.cursor() as cursor:
        cursor.execute(_APPLY_NAMESPACE_BLOBS, params)
        for ns, stored, layers, layers_stored, foreign, u_known, u_stored, u_compressed in cursor.fetchall():
            row = per_ns[ns]
            row["stored_bytes"] += int(stored)
            row["distinct_layers"] = int(layers)
            row["layers_stored_bytes"] = int(layers_stored)
            row["foreign_bytes"] = int(foreign)
            row["uncompressed_known_layers"] = int(u_known)
            row["uncompressed_stored_bytes"] = int(u_stored)
            row["uncompressed_known_compressed_bytes"] = int(u_compressed)
        cursor.execute(_APPLY_NAMESPACE_MANIFESTS, params)
        for ns, m_stored in cursor.fetchall():
            per_ns[ns]["stored_bytes"] += int(m_stored)
        params["namespaces"] = array_literal(sorted(per_ns))
        cursor.execute(
            "DELETE FROM analytics_namespaceblob WHERE registry_id = %(registry)s"
            " AND namespace = ANY(%(namespaces)s::text[]) AND refs <= 0 AND " + _BLOBS_OF_IDS,
            params,
        )
        cursor.execute(
            "DELETE FROM analytics_namespacemanifestref WHERE registry_id = %(registry)s "
            "AND namespace = ANY(%(namespaces)s::text[]) AND refs <= 0 AND manifest_id = ANY(%(ids)s::int[])",
            params,
        )
    _namespace_rows_add(registry_id=params["registry"], deltas=per_ns)  # type: ignore[arg-type]


def repositories_figures_refresh(*, registry_id: int, repository_ids: list[int]) -> None:
    """Recompute these repositories' rows from their holdings (each costs its repository, not the
    registry), and write them in one statement."""
    rows = []
    for rid in repository_ids:
        s = dedup_summary_computed(scope=Scope(repository_id=rid))
        rows.append((registry_id, rid, *(getattr(s, f) or 0 for f in SUMMARY_FIGURE_FIELDS)))
    columns = ", ".join(SUMMARY_FIGURE_FIELDS)
    arrays = ", ".join("%s::bigint[]" for _ in SUMMARY_FIGURE_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO analytics_scopefigures (registry_id, repository_id, {columns})
            SELECT * FROM unnest(%s::bigint[], %s::bigint[], {arrays})
            ON CONFLICT (repository_id) DO UPDATE SET registry_id = excluded.registry_id, """
            + ", ".join(f"{f} = excluded.{f}" for f in SUMMARY_FIGURE_FIELDS),
            [int_array(column) for column in zip(*rows, strict=True)],
        )


def figures_apply(
    *, registry_id: int, changes: dict[int, tuple[set[int], set[int]]], names: dict[int, str]
) -> None:
    """Apply the change of holdings of some repositories of one registry: `changes` maps a repository id
    to (manifest ids now present, no longer present), `names` each repository's name (its namespaces).

    Runs inside ingest's transaction, once for all the repositories it ingests (one statement per table
    whatever their number). Rows are upserted in key order so concurrent ingests of repositories sharing
    blobs wait for each other instead of deadlocking.
    """
    changes = {rid: change for rid, change in changes.items() if change[0] or change[1]}
    if not changes:
        return
    repos, ids, signs = [], [], []
    for rid in sorted(changes):
        gained, lost = changes[rid]
        for manifest_ids, sign in ((sorted(gained), 1), (sorted(lost), -1)):
            repos += [rid] * len(manifest_ids)
            ids += manifest_ids
            signs += [sign] * len(manifest_ids)
    params: dict[str, object] = {
        "repos": int_array(repos),
        "ids": int_array(ids),
        "signs": int_array(signs),
        "registry": registry_id,
    }
    with connection.cursor() as cursor:
        cursor.execute(_APPLY_REPOSITORY_BLOBS, params)
        transitions = cursor.fetchall()
        cursor.execute(
            "DELETE FROM analytics_repositoryblob WHERE repository_id = ANY(%s) AND images <= 0",
            [sorted(changes)],
        )
        params["repo_blobs"] = int_array(b for b, _ in transitions)
        params["repo_signs"] = int_array(n for _, n in transitions)
        cursor.execute(_FILL_LINES, params)
        _instructions_drop_empty(cursor, cursor.fetchall())
        cursor.execute(_APPLY_REGISTRY_BLOBS, params)
        (
            stored,
            layers,
            layers_stored,
            foreign,
            u_known,
            u_stored,
            u_compressed,
            blobs_held,
            blob_bytes_held,
        ) = cursor.fetchone()
        cursor.execute(_APPLY_INSTRUCTIONS, params)
        _instructions_drop_empty(cursor, cursor.fetchall())
        cursor.execute(_APPLY_MANIFESTS, params)
        m_stored, manifests_held = cursor.fetchone()
        cursor.execute(_PER_REPOSITORY, params)
        per_repository = cursor.fetchall()
        cursor.execute(
            "DELETE FROM analytics_registryblob WHERE registry_id = %(registry)s AND refs <= 0 AND "
            + _BLOBS_OF_IDS,
            params,
        )
        cursor.execute(
            "DELETE FROM analytics_registrymanifestref WHERE registry_id = %(registry)s AND refs <= 0 "
            "AND manifest_id = ANY(%(ids)s::int[])",
            params,
        )
        cursor.execute(
            "DELETE FROM analytics_blobregistries WHERE registries <= 0 AND layer_registries <= 0 AND "
            + _BLOBS_OF_IDS,
            params,
        )
        cursor.execute(
            "DELETE FROM analytics_manifestregistries WHERE registries <= 0 "
            "AND manifest_id = ANY(%(ids)s::int[])",
            params,
        )
    common: dict[int, dict[str, int]] = {}
    for (
        rid,
        images,
        manifests,
        indexes,
        m_logical,
        logical,
        layers_logical,
        u_logical,
        held_now,
    ) in per_repository:
        gained, lost = changes[rid]
        is_empty, was_empty = held_now == 0, held_now - len(gained) + len(lost) == 0
        common[rid] = {
            "images": int(images),
            "manifests": int(manifests),
            "indexes": int(indexes),
            "repositories": int(was_empty) - int(is_empty),
            "logical_bytes": int(logical) + int(m_logical),
            "layers_logical_bytes": int(layers_logical),
            "uncompressed_logical_bytes": int(u_logical),
        }
    totals = dict.fromkeys(common[next(iter(common))], 0) if common else {}
    for row in common.values():
        for f, v in row.items():
            totals[f] += v
    _registry_row_add(
        registry_id=registry_id,
        deltas={
            **totals,
            "distinct_layers": int(layers),
            "stored_bytes": int(stored) + int(m_stored),
            "layers_stored_bytes": int(layers_stored),
            "foreign_bytes": int(foreign),
            "uncompressed_known_layers": int(u_known),
            "uncompressed_stored_bytes": int(u_stored),
            "uncompressed_known_compressed_bytes": int(u_compressed),
        },
    )
    registry_held_add(
        registry_id=registry_id,
        manifests=int(manifests_held),
        manifest_bytes=int(m_stored),
        blobs=int(blobs_held),
        blob_bytes=int(blob_bytes_held),
    )
    pairs = [(rid, ns) for rid in sorted(changes) for ns in namespaces_of(names[rid])]
    if pairs:
        _namespaces_apply(params=params, pairs=pairs, common=common)
    repositories_figures_refresh(registry_id=registry_id, repository_ids=sorted(changes))
