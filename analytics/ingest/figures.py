"""Maintained figures: reference counts and summaries that ingest keeps current (issue 4, at scale).

A registry-wide summary recomputed from the holdings reads every layer row of the registry (seconds at a
million images); a layer held by 100,000 images costs as much to count. So ingest keeps, in the same
transaction as the holdings it changes:

- `RegistryBlob(registry, blob)`: `refs` (present holdings of any kind referencing the blob as a layer
  or config), `layer_refs`, `images` (image holdings listing it as a layer) and `repositories`;
- `RepositoryBlob(repository, blob)`: image holdings of the repository listing the blob as a layer;
- `RegistryManifestRef(registry, manifest)`: repositories holding the manifest;
- `ScopeFigures`: the tagged-only summary of each registry and each repository;
- `NamespaceBlob`, `NamespaceManifestRef`, `NamespaceFigures`: the same per namespace (every strict
  path prefix of a repository name), by the same deltas.

A repository scan changes a set of holdings (present flipped on or off); `figures_apply` turns that set
into signed deltas, set-based, and detects 0 <-> positive transitions from the upsert's new value minus
the delta, so the cost follows what the scan changed, never the registry's size. The repository's own
row is recomputed (it costs the repository). `figures_rebuild` recomputes a registry from scratch.
"""

from __future__ import annotations

from django.db import connection
from django.db.backends.utils import CursorWrapper

from analytics.models import Repository, ScopeFigures
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary_computed
from workers.registry.records import FOREIGN_LAYER_TYPES

_FOREIGN = ", ".join(f"'{t}'" for t in sorted(FOREIGN_LAYER_TYPES))

# Signed per-blob deltas of the changed holdings, mirroring reports._SUMMARY_SQL's distinct refs.
_DELTA_REFS = """
WITH d AS (
    SELECT u.manifest_id, u.sign, m.kind, m.size, m.config_id
    FROM unnest(%(ids)s::int[], %(signs)s::int[]) AS u(manifest_id, sign)
    JOIN analytics_manifest m ON m.id = u.manifest_id
),
r AS (
    SELECT DISTINCT d.manifest_id, d.sign, d.kind, ml.blob_id, TRUE AS is_layer
    FROM d JOIN analytics_manifestlayer ml ON ml.manifest_id = d.manifest_id
    UNION
    SELECT d.manifest_id, d.sign, d.kind, d.config_id, FALSE FROM d WHERE d.config_id IS NOT NULL
),
per_holding AS (
    SELECT manifest_id, sign, kind, blob_id, bool_or(is_layer) AS is_layer, count(*) AS roles
    FROM r GROUP BY 1, 2, 3, 4
),
delta AS (
    SELECT blob_id,
        sum(sign) AS refs,
        coalesce(sum(sign) FILTER (WHERE is_layer), 0) AS layer_refs,
        coalesce(sum(sign) FILTER (WHERE is_layer AND kind = 'image'), 0) AS images,
        sum(sign * roles) AS logical_refs,
        coalesce(sum(sign) FILTER (WHERE is_layer), 0) AS layer_logical_refs
    FROM per_holding GROUP BY blob_id
)
"""

_APPLY_REPOSITORY_BLOBS = (
    _DELTA_REFS
    + """,
up AS (
    INSERT INTO analytics_repositoryblob (repository_id, blob_id, images)
    SELECT %(repo)s, blob_id, images FROM delta WHERE images <> 0 ORDER BY blob_id
    ON CONFLICT (repository_id, blob_id)
    DO UPDATE SET images = analytics_repositoryblob.images + excluded.images
    RETURNING blob_id, images
)
SELECT up.blob_id, CASE WHEN up.images > 0 AND up.images - delta.images <= 0 THEN 1
                        WHEN up.images <= 0 AND up.images - delta.images > 0 THEN -1 ELSE 0 END
FROM up JOIN delta USING (blob_id)
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
    SELECT b.size, b.uncompressed_size AS usize, b.media_type IN ({_FOREIGN}) AS foreign_,
        sign(greatest(up.refs, 0)) - sign(greatest(up.refs - rd.refs, 0)) AS stored,
        sign(greatest(up.layer_refs, 0)) - sign(greatest(up.layer_refs - rd.layer_refs, 0)) AS layer,
        rd.logical_refs, rd.layer_logical_refs
    FROM up JOIN rd USING (blob_id) JOIN analytics_blob b ON b.id = up.blob_id
)
SELECT
    coalesce(sum(size * stored) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(layer) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * layer) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * logical_refs) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * layer_logical_refs) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * stored) FILTER (WHERE foreign_), 0),
    coalesce(sum(layer) FILTER (WHERE NOT foreign_ AND usize IS NOT NULL), 0),
    coalesce(sum(usize * layer_logical_refs) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(usize * layer) FILTER (WHERE NOT foreign_), 0),
    coalesce(sum(size * layer) FILTER (WHERE NOT foreign_ AND usize IS NOT NULL), 0)
FROM t
"""
)

_APPLY_MANIFESTS = """
WITH d AS (
    SELECT u.manifest_id, u.sign, m.kind, m.size
    FROM unnest(%(ids)s::int[], %(signs)s::int[]) AS u(manifest_id, sign)
    JOIN analytics_manifest m ON m.id = u.manifest_id
),
up AS (
    INSERT INTO analytics_registrymanifestref (registry_id, manifest_id, refs)
    SELECT %(registry)s, manifest_id, sign FROM d ORDER BY manifest_id
    ON CONFLICT (registry_id, manifest_id)
    DO UPDATE SET refs = analytics_registrymanifestref.refs + excluded.refs
    RETURNING manifest_id, refs
)
SELECT
    coalesce(sum(d.size * (sign(greatest(up.refs, 0)) - sign(greatest(up.refs - d.sign, 0)))), 0),
    coalesce(sum(d.size * d.sign), 0),
    coalesce(sum(d.sign) FILTER (WHERE d.kind = 'image'), 0),
    coalesce(sum(d.sign), 0),
    coalesce(sum(d.sign) FILTER (WHERE d.kind = 'index'), 0)
FROM up JOIN d USING (manifest_id)
"""

# The same deltas applied to every namespace (strict path prefix) of the scanned repository at once.
_APPLY_NAMESPACE_BLOBS = (
    _DELTA_REFS
    + f""",
up AS (
    INSERT INTO analytics_namespaceblob (registry_id, namespace, blob_id, refs, layer_refs)
    SELECT %(registry)s, ns.namespace, delta.blob_id, delta.refs, delta.layer_refs
    FROM delta CROSS JOIN unnest(%(namespaces)s::text[]) AS ns(namespace) ORDER BY 2, 3
    ON CONFLICT (registry_id, namespace, blob_id) DO UPDATE SET
        refs = analytics_namespaceblob.refs + excluded.refs,
        layer_refs = analytics_namespaceblob.layer_refs + excluded.layer_refs
    RETURNING namespace, blob_id, refs, layer_refs
),
t AS (
    SELECT up.namespace, b.size, b.uncompressed_size AS usize, b.media_type IN ({_FOREIGN}) AS foreign_,
        sign(greatest(up.refs, 0)) - sign(greatest(up.refs - delta.refs, 0)) AS stored,
        sign(greatest(up.layer_refs, 0)) - sign(greatest(up.layer_refs - delta.layer_refs, 0)) AS layer
    FROM up JOIN delta USING (blob_id) JOIN analytics_blob b ON b.id = up.blob_id
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

_APPLY_NAMESPACE_MANIFESTS = """
WITH d AS (
    SELECT u.manifest_id, u.sign, m.size
    FROM unnest(%(ids)s::int[], %(signs)s::int[]) AS u(manifest_id, sign)
    JOIN analytics_manifest m ON m.id = u.manifest_id
),
up AS (
    INSERT INTO analytics_namespacemanifestref (registry_id, namespace, manifest_id, refs)
    SELECT %(registry)s, ns.namespace, d.manifest_id, d.sign
    FROM d CROSS JOIN unnest(%(namespaces)s::text[]) AS ns(namespace) ORDER BY 2, 3
    ON CONFLICT (registry_id, namespace, manifest_id)
    DO UPDATE SET refs = analytics_namespacemanifestref.refs + excluded.refs
    RETURNING namespace, manifest_id, refs
)
SELECT up.namespace,
    coalesce(sum(d.size * (sign(greatest(up.refs, 0)) - sign(greatest(up.refs - d.sign, 0)))), 0)
FROM up JOIN d USING (manifest_id) GROUP BY up.namespace
"""

# Build history (`RegistryInstruction`): a layer's contribution to its line, from its holdings count
# `n` (`RegistryBlob.layer_refs`), as analytics.queries.content spells the from-scratch query.
_LINE_FIGURES = """
    ({n} > 0)::int AS layers, {size} * ({n} > 0)::int AS stored, {size} * ({n} = 1)::int AS uniq,
    {size} * greatest({n}, 0) AS logical"""
_ADD_INSTRUCTIONS = """
    ON CONFLICT (registry_id, md5(created_by)) DO UPDATE SET
        layers = analytics_registryinstruction.layers + excluded.layers,
        stored_bytes = analytics_registryinstruction.stored_bytes + excluded.stored_bytes,
        unique_bytes = analytics_registryinstruction.unique_bytes + excluded.unique_bytes,
        logical_bytes = analytics_registryinstruction.logical_bytes + excluded.logical_bytes
    RETURNING registry_id, created_by, layers"""

# The line of a layer (analytics.queries.layers._CREATED_BY): one probe of the (blob, manifest) index.
_LINE_OF = """(SELECT h.created_by FROM analytics_manifestlayer ml2
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
found AS (SELECT c.blob_id, {_LINE_OF.format(blob="c.blob_id")} AS created_by FROM cand c),
ins AS (
    INSERT INTO analytics_blobline (blob_id, created_by)
    SELECT blob_id, created_by FROM found WHERE created_by IS NOT NULL ORDER BY blob_id
    ON CONFLICT (blob_id) DO NOTHING
    RETURNING blob_id, created_by
),
moved AS (
    SELECT rb.registry_id, ins.created_by, {_LINE_FIGURES.format(n="rb.layer_refs", size="rb.size")}
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
    FROM c, LATERAL (SELECT {_LINE_FIGURES.format(n="c.new", size="c.size")}) n,
        LATERAL (SELECT {_LINE_FIGURES.format(n="c.old", size="c.size")}) o
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


def namespaces_of(name: str) -> list[str]:
    """The namespaces a repository counts in: every strict path prefix (`a/b/c` -> `a`, `a/b`)."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


_FIGURE_FIELDS = (
    "images",
    "manifests",
    "indexes",
    "repositories",
    "distinct_layers",
    "logical_bytes",
    "stored_bytes",
    "layers_logical_bytes",
    "layers_stored_bytes",
    "foreign_bytes",
    # moved also by the trigger of migration 0013 when a blob's uncompressed size becomes known
    "uncompressed_known_layers",
    "uncompressed_logical_bytes",
    "uncompressed_stored_bytes",
    "uncompressed_known_compressed_bytes",
)


def _registry_row_add(*, registry_id: int, deltas: dict[str, int]) -> None:
    columns = ", ".join(_FIGURE_FIELDS)
    values = ", ".join(f"%({f})s" for f in _FIGURE_FIELDS)
    updates = ", ".join(f"{f} = analytics_scopefigures.{f} + excluded.{f}" for f in _FIGURE_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO analytics_scopefigures (registry_id, repository_id, {columns})
            VALUES (%(registry)s, NULL, {values})
            ON CONFLICT (registry_id) WHERE repository_id IS NULL DO UPDATE SET {updates}""",
            {"registry": registry_id, **{f: deltas.get(f, 0) for f in _FIGURE_FIELDS}},
        )


def _namespace_rows_add(*, registry_id: int, deltas: dict[str, dict[str, int]]) -> None:
    columns = ", ".join(_FIGURE_FIELDS)
    values = ", ".join(f"%({f})s" for f in _FIGURE_FIELDS)
    updates = ", ".join(f"{f} = analytics_namespacefigures.{f} + excluded.{f}" for f in _FIGURE_FIELDS)
    with connection.cursor() as cursor:
        for namespace in sorted(deltas):
            cursor.execute(
                f"""INSERT INTO analytics_namespacefigures (registry_id, namespace, {columns})
                VALUES (%(registry)s, %(namespace)s, {values})
                ON CONFLICT (registry_id, namespace) DO UPDATE SET {updates}""",
                {
                    "registry": registry_id,
                    "namespace": namespace,
                    **{f: deltas[namespace].get(f, 0) for f in _FIGURE_FIELDS},
                },
            )
        # a namespace holding nothing has no row (as after a rebuild); its summary computes to zeros
        cursor.execute(
            "DELETE FROM analytics_namespacefigures WHERE registry_id = %s AND namespace = ANY(%s) "
            "AND repositories <= 0",
            [registry_id, sorted(deltas)],
        )


def _namespaces_apply(*, params: dict[str, object], common: dict[str, int]) -> None:
    """Apply the change to the repository's namespaces: `common` holds the deltas they share with the
    registry row (holdings and logical bytes); distinct blobs and manifests are counted per namespace."""
    namespaces: list[str] = params["namespaces"]  # type: ignore[assignment]
    per_ns = {ns: dict(common) for ns in namespaces}
    with connection.cursor() as cursor:
        cursor.execute(_APPLY_NAMESPACE_BLOBS, params)
        for ns, stored, layers, layers_stored, foreign, u_known, u_stored, u_compressed in cursor.fetchall():
            per_ns[ns]["stored_bytes"] += int(stored)
            per_ns[ns]["distinct_layers"] = int(layers)
            per_ns[ns]["layers_stored_bytes"] = int(layers_stored)
            per_ns[ns]["foreign_bytes"] = int(foreign)
            per_ns[ns]["uncompressed_known_layers"] = int(u_known)
            per_ns[ns]["uncompressed_stored_bytes"] = int(u_stored)
            per_ns[ns]["uncompressed_known_compressed_bytes"] = int(u_compressed)
        cursor.execute(_APPLY_NAMESPACE_MANIFESTS, params)
        for ns, m_stored in cursor.fetchall():
            per_ns[ns]["stored_bytes"] += int(m_stored)
        cursor.execute(
            """DELETE FROM analytics_namespaceblob
               WHERE registry_id = %(registry)s AND namespace = ANY(%(namespaces)s::text[]) AND refs <= 0
               AND blob_id IN (SELECT ml.blob_id FROM analytics_manifestlayer ml
                               WHERE ml.manifest_id = ANY(%(ids)s::int[])
                               UNION SELECT config_id FROM analytics_manifest
                               WHERE id = ANY(%(ids)s::int[]))""",
            params,
        )
        cursor.execute(
            "DELETE FROM analytics_namespacemanifestref WHERE registry_id = %(registry)s "
            "AND namespace = ANY(%(namespaces)s::text[]) AND refs <= 0 AND manifest_id = ANY(%(ids)s::int[])",
            params,
        )
    _namespace_rows_add(registry_id=params["registry"], deltas=per_ns)  # type: ignore[arg-type]


def repository_figures_refresh(*, repository_id: int) -> None:
    """Recompute one repository's row from its holdings (costs the repository, not the registry)."""
    registry_id = Repository.objects.filter(id=repository_id).values_list("registry_id", flat=True).get()
    s = dedup_summary_computed(scope=Scope(repository_id=repository_id))
    ScopeFigures.objects.update_or_create(
        repository_id=repository_id,
        defaults={"registry_id": registry_id, **{f: getattr(s, f) or 0 for f in _FIGURE_FIELDS}},
    )


def figures_apply(*, registry_id: int, repository_id: int, gained: set[int], lost: set[int]) -> None:
    """Apply one repository's change of holdings (manifest ids now present / no longer present).

    Runs inside ingest's transaction. Rows are upserted in key order so concurrent scans of
    repositories sharing blobs wait for each other instead of deadlocking.
    """
    if not gained and not lost:
        return
    ids = sorted(gained) + sorted(lost)
    params: dict[str, object] = {
        "ids": ids,
        "signs": [1] * len(gained) + [-1] * len(lost),
        "registry": registry_id,
        "repo": repository_id,
    }
    with connection.cursor() as cursor:
        cursor.execute(_APPLY_REPOSITORY_BLOBS, params)
        transitions = [(b, n) for b, n in cursor.fetchall() if n]
        cursor.execute(
            "DELETE FROM analytics_repositoryblob WHERE repository_id = %s AND images <= 0", [repository_id]
        )
        params["repo_blobs"] = [b for b, _ in transitions]
        params["repo_signs"] = [n for _, n in transitions]
        cursor.execute(_FILL_LINES, params)
        _instructions_drop_empty(cursor, cursor.fetchall())
        cursor.execute(_APPLY_REGISTRY_BLOBS, params)
        (
            stored,
            layers,
            layers_stored,
            logical,
            layers_logical,
            foreign,
            u_known,
            u_logical,
            u_stored,
            u_compressed,
        ) = cursor.fetchone()
        cursor.execute(_APPLY_INSTRUCTIONS, params)
        _instructions_drop_empty(cursor, cursor.fetchall())
        cursor.execute(_APPLY_MANIFESTS, params)
        m_stored, m_logical, images, manifests, indexes = cursor.fetchone()
        cursor.execute(
            """DELETE FROM analytics_registryblob WHERE registry_id = %(registry)s AND refs <= 0
               AND blob_id IN (SELECT ml.blob_id FROM analytics_manifestlayer ml
                               WHERE ml.manifest_id = ANY(%(ids)s::int[])
                               UNION SELECT config_id FROM analytics_manifest
                               WHERE id = ANY(%(ids)s::int[]))""",
            params,
        )
        cursor.execute(
            "DELETE FROM analytics_registrymanifestref WHERE registry_id = %(registry)s AND refs <= 0 "
            "AND manifest_id = ANY(%(ids)s::int[])",
            params,
        )
        cursor.execute(
            "SELECT count(*) FROM analytics_repositorymanifest WHERE repository_id = %s AND present",
            [repository_id],
        )
        held_now = cursor.fetchone()[0]
    is_empty, was_empty = held_now == 0, held_now - len(gained) + len(lost) == 0
    common = {
        "images": images,
        "manifests": manifests,
        "indexes": indexes,
        "repositories": int(was_empty) - int(is_empty),
        "logical_bytes": int(logical) + int(m_logical),
        "layers_logical_bytes": int(layers_logical),
        "uncompressed_logical_bytes": int(u_logical),
    }
    _registry_row_add(
        registry_id=registry_id,
        deltas={
            **common,
            "distinct_layers": layers,
            "stored_bytes": int(stored) + int(m_stored),
            "layers_stored_bytes": int(layers_stored),
            "foreign_bytes": int(foreign),
            "uncompressed_known_layers": int(u_known),
            "uncompressed_stored_bytes": int(u_stored),
            "uncompressed_known_compressed_bytes": int(u_compressed),
        },
    )
    params["namespaces"] = namespaces_of(
        Repository.objects.values_list("name", flat=True).get(id=repository_id)
    )
    if params["namespaces"]:
        _namespaces_apply(params=params, common={**common, "stored_bytes": 0})
    repository_figures_refresh(repository_id=repository_id)


# the uncompressed sums over a scope's layers of known size, from a count of holdings listing each ({n})
_U_COLUMNS = ", ".join(_FIGURE_FIELDS[-4:])
_U_SUMS = "count(*), sum({n} * b.uncompressed_size), sum(b.uncompressed_size), sum(b.size)"
_U_KNOWN = f"b.uncompressed_size IS NOT NULL AND b.media_type NOT IN ({_FOREIGN})"

_REBUILD = [
    "DELETE FROM analytics_registryblob WHERE registry_id = %(registry)s",
    "DELETE FROM analytics_registrymanifestref WHERE registry_id = %(registry)s",
    """DELETE FROM analytics_repositoryblob WHERE repository_id IN
       (SELECT id FROM analytics_repository WHERE registry_id = %(registry)s)""",
    """DELETE FROM analytics_scopefigures WHERE registry_id = %(registry)s""",
    """CREATE TEMP TABLE figures_held ON COMMIT DROP AS
       SELECT rm.repository_id, m.id AS manifest_id, m.kind, m.size, m.config_id
       FROM analytics_repositorymanifest rm
       JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %(registry)s
       JOIN analytics_manifest m ON m.id = rm.manifest_id
       WHERE rm.present""",
    """CREATE TEMP TABLE figures_refs ON COMMIT DROP AS
       SELECT repository_id, manifest_id, kind, blob_id, bool_or(is_layer) AS is_layer, count(*) AS roles
       FROM (SELECT DISTINCT h.repository_id, h.manifest_id, h.kind, ml.blob_id, TRUE AS is_layer
             FROM figures_held h JOIN analytics_manifestlayer ml ON ml.manifest_id = h.manifest_id
             UNION ALL
             SELECT h.repository_id, h.manifest_id, h.kind, h.config_id, FALSE
             FROM figures_held h WHERE h.config_id IS NOT NULL) x
       GROUP BY 1, 2, 3, 4""",
    """INSERT INTO analytics_repositoryblob (repository_id, blob_id, images)
       SELECT repository_id, blob_id, count(*) FROM figures_refs WHERE is_layer AND kind = 'image'
       GROUP BY 1, 2""",
    """INSERT INTO analytics_registryblob (registry_id, blob_id, refs, layer_refs, images, repositories, size)
       SELECT %(registry)s, fr.blob_id, count(*), count(*) FILTER (WHERE fr.is_layer),
           count(*) FILTER (WHERE fr.is_layer AND fr.kind = 'image'),
           count(DISTINCT fr.repository_id) FILTER (WHERE fr.is_layer AND fr.kind = 'image'), max(b.size)
       FROM figures_refs fr JOIN analytics_blob b ON b.id = fr.blob_id GROUP BY fr.blob_id""",
    """INSERT INTO analytics_registrymanifestref (registry_id, manifest_id, refs)
       SELECT %(registry)s, manifest_id, count(*) FROM figures_held GROUP BY manifest_id""",
    f"""INSERT INTO analytics_scopefigures (registry_id, repository_id, images, manifests, indexes,
           repositories, distinct_layers, logical_bytes, stored_bytes, layers_logical_bytes,
           layers_stored_bytes, foreign_bytes)
       SELECT %(registry)s, NULL,
           (SELECT count(*) FROM figures_held WHERE kind = 'image'),
           (SELECT count(*) FROM figures_held),
           (SELECT count(*) FROM figures_held WHERE kind = 'index'),
           (SELECT count(DISTINCT repository_id) FROM figures_held),
           count(*) FILTER (WHERE rb.layer_refs > 0 AND NOT f),
           (SELECT coalesce(sum(size), 0) FROM figures_held)
             + coalesce(sum(b.size * rb.refs) FILTER (WHERE NOT f), 0)
             + (SELECT coalesce(sum(size * (roles - 1)), 0) FROM figures_refs fr
                JOIN analytics_blob b2 ON b2.id = fr.blob_id WHERE roles > 1),
           (SELECT coalesce(sum(m.size), 0) FROM analytics_registrymanifestref x
            JOIN analytics_manifest m ON m.id = x.manifest_id WHERE x.registry_id = %(registry)s)
             + coalesce(sum(b.size) FILTER (WHERE NOT f), 0),
           coalesce(sum(b.size * rb.layer_refs) FILTER (WHERE NOT f), 0),
           coalesce(sum(b.size) FILTER (WHERE rb.layer_refs > 0 AND NOT f), 0),
           coalesce(sum(b.size) FILTER (WHERE f), 0)
       FROM analytics_registryblob rb
       JOIN LATERAL (SELECT b.size, b.media_type IN ({_FOREIGN}) AS f FROM analytics_blob b
                     WHERE b.id = rb.blob_id) b ON TRUE
       WHERE rb.registry_id = %(registry)s""",
    f"""INSERT INTO analytics_scopefigures (registry_id, repository_id, images, manifests, indexes,
           repositories, distinct_layers, logical_bytes, stored_bytes, layers_logical_bytes,
           layers_stored_bytes, foreign_bytes)
       WITH rb AS (
           SELECT repository_id, blob_id, bool_or(is_layer) AS is_layer, sum(roles) AS logical_n,
               count(*) FILTER (WHERE is_layer) AS layer_n
           FROM figures_refs GROUP BY 1, 2
       ),
       bs AS (
           SELECT rb.repository_id,
               sum(b.size * rb.logical_n) FILTER (WHERE NOT b.f) AS logical,
               sum(b.size) FILTER (WHERE NOT b.f) AS stored,
               count(*) FILTER (WHERE rb.is_layer AND NOT b.f) AS layers,
               sum(b.size * rb.layer_n) FILTER (WHERE NOT b.f) AS layers_logical,
               sum(b.size) FILTER (WHERE rb.is_layer AND NOT b.f) AS layers_stored,
               sum(b.size) FILTER (WHERE b.f) AS foreign_
           FROM rb JOIN LATERAL (SELECT size, media_type IN ({_FOREIGN}) AS f FROM analytics_blob
                                 WHERE id = rb.blob_id) b ON TRUE
           GROUP BY 1
       ),
       hs AS (
           SELECT repository_id, count(*) FILTER (WHERE kind = 'image') AS images, count(*) AS manifests,
               count(*) FILTER (WHERE kind = 'index') AS indexes, sum(size) AS size
           FROM figures_held GROUP BY 1
       )
       SELECT r.registry_id, r.id, coalesce(hs.images, 0), coalesce(hs.manifests, 0),
           coalesce(hs.indexes, 0), (hs.repository_id IS NOT NULL)::int, coalesce(bs.layers, 0),
           coalesce(hs.size, 0) + coalesce(bs.logical, 0), coalesce(hs.size, 0) + coalesce(bs.stored, 0),
           coalesce(bs.layers_logical, 0), coalesce(bs.layers_stored, 0), coalesce(bs.foreign_, 0)
       FROM analytics_repository r
       LEFT JOIN hs ON hs.repository_id = r.id
       LEFT JOIN bs ON bs.repository_id = r.id
       WHERE r.registry_id = %(registry)s""",
    f"""UPDATE analytics_scopefigures sf SET ({_U_COLUMNS}) = (d.k, d.lg, d.st, d.c)
       FROM (SELECT rb.registry_id, {_U_SUMS.format(n="rb.layer_refs")}
             FROM analytics_registryblob rb JOIN analytics_blob b ON b.id = rb.blob_id
             WHERE rb.registry_id = %(registry)s AND rb.layer_refs > 0 AND {_U_KNOWN} GROUP BY 1
       ) d(registry_id, k, lg, st, c)
       WHERE sf.registry_id = d.registry_id AND sf.repository_id IS NULL""",
    f"""UPDATE analytics_scopefigures sf SET ({_U_COLUMNS}) = (d.k, d.lg, d.st, d.c)
       FROM (SELECT x.repository_id, {_U_SUMS.format(n="x.n")}
             FROM (SELECT repository_id, blob_id, count(*) AS n FROM figures_refs WHERE is_layer
                   GROUP BY 1, 2) x
             JOIN analytics_blob b ON b.id = x.blob_id WHERE {_U_KNOWN} GROUP BY 1
       ) d(repository_id, k, lg, st, c)
       WHERE sf.repository_id = d.repository_id""",
    "DROP TABLE figures_refs",
    "DROP TABLE figures_held",
]


_REBUILD_NAMESPACES = [
    "DELETE FROM analytics_namespaceblob WHERE registry_id = %(registry)s",
    "DELETE FROM analytics_namespacemanifestref WHERE registry_id = %(registry)s",
    "DELETE FROM analytics_namespacefigures WHERE registry_id = %(registry)s",
    # every strict path prefix of every repository name (namespaces_of, in SQL)
    """CREATE TEMP TABLE figures_ns ON COMMIT DROP AS
       SELECT r.id AS repository_id, array_to_string((string_to_array(r.name, '/'))[1:k], '/') AS namespace
       FROM analytics_repository r
       CROSS JOIN LATERAL generate_series(1, array_length(string_to_array(r.name, '/'), 1) - 1) AS k
       WHERE r.registry_id = %(registry)s""",
    """INSERT INTO analytics_namespaceblob (registry_id, namespace, blob_id, refs, layer_refs)
       SELECT %(registry)s, n.namespace, fr.blob_id, count(*), count(*) FILTER (WHERE fr.is_layer)
       FROM figures_refs fr JOIN figures_ns n USING (repository_id) GROUP BY 2, 3""",
    """INSERT INTO analytics_namespacemanifestref (registry_id, namespace, manifest_id, refs)
       SELECT %(registry)s, n.namespace, h.manifest_id, count(*)
       FROM figures_held h JOIN figures_ns n USING (repository_id) GROUP BY 2, 3""",
    f"""INSERT INTO analytics_namespacefigures (registry_id, namespace, images, manifests, indexes,
           repositories, distinct_layers, logical_bytes, stored_bytes, layers_logical_bytes,
           layers_stored_bytes, foreign_bytes)
       WITH hs AS (
           SELECT n.namespace, count(*) FILTER (WHERE h.kind = 'image') AS images, count(*) AS manifests,
               count(*) FILTER (WHERE h.kind = 'index') AS indexes,
               count(DISTINCT h.repository_id) AS repositories, sum(h.size) AS size
           FROM figures_held h JOIN figures_ns n USING (repository_id) GROUP BY 1
       ),
       ms AS (
           SELECT x.namespace, sum(m.size) AS size FROM analytics_namespacemanifestref x
           JOIN analytics_manifest m ON m.id = x.manifest_id WHERE x.registry_id = %(registry)s GROUP BY 1
       ),
       bs AS (
           SELECT nb.namespace,
               count(*) FILTER (WHERE nb.layer_refs > 0 AND NOT b.f) AS layers,
               sum(b.size) FILTER (WHERE NOT b.f) AS stored,
               sum(b.size * nb.layer_refs) FILTER (WHERE NOT b.f) AS layers_logical,
               sum(b.size) FILTER (WHERE nb.layer_refs > 0 AND NOT b.f) AS layers_stored,
               sum(b.size) FILTER (WHERE b.f) AS foreign_
           FROM analytics_namespaceblob nb
           JOIN LATERAL (SELECT size, media_type IN ({_FOREIGN}) AS f FROM analytics_blob
                         WHERE id = nb.blob_id) b ON TRUE
           WHERE nb.registry_id = %(registry)s GROUP BY 1
       ),
       lg AS (
           -- a blob that is both config and layer of one holding counts twice, as in the summary
           SELECT n.namespace, sum(b.size * fr.roles) AS logical
           FROM figures_refs fr JOIN figures_ns n USING (repository_id)
           JOIN analytics_blob b ON b.id = fr.blob_id AND b.media_type NOT IN ({_FOREIGN}) GROUP BY 1
       )
       SELECT %(registry)s, hs.namespace, hs.images, hs.manifests, hs.indexes, hs.repositories,
           coalesce(bs.layers, 0), hs.size + coalesce(lg.logical, 0), ms.size + coalesce(bs.stored, 0),
           coalesce(bs.layers_logical, 0), coalesce(bs.layers_stored, 0), coalesce(bs.foreign_, 0)
       FROM hs JOIN ms USING (namespace) LEFT JOIN bs USING (namespace) LEFT JOIN lg USING (namespace)""",
    f"""UPDATE analytics_namespacefigures nf SET ({_U_COLUMNS}) = (d.k, d.lg, d.st, d.c)
       FROM (SELECT nb.registry_id, nb.namespace, {_U_SUMS.format(n="nb.layer_refs")}
             FROM analytics_namespaceblob nb JOIN analytics_blob b ON b.id = nb.blob_id
             WHERE nb.registry_id = %(registry)s AND nb.layer_refs > 0 AND {_U_KNOWN} GROUP BY 1, 2
       ) d(registry_id, namespace, k, lg, st, c)
       WHERE nf.registry_id = d.registry_id AND nf.namespace = d.namespace""",
    "DROP TABLE figures_ns",
]
_REBUILD_DROPS = [sql for sql in _REBUILD if sql.startswith("DROP TABLE")]


def figures_rebuild(*, registry_id: int) -> None:
    """Recompute every maintained figure of a registry from the holdings, set-based.

    For a migration, the bench generator and repair; normal scans never need it. Call it inside a
    transaction (the temporary tables drop at commit).
    """
    body = [sql for sql in _REBUILD if sql not in _REBUILD_DROPS]
    with connection.cursor() as cursor:
        for sql in body + _REBUILD_NAMESPACES + _REBUILD_DROPS:
            cursor.execute(sql, {"registry": registry_id})
        instructions_rebuild(registry_id=registry_id)
        # global, kept by triggers on analytics_blob; recounted here to repair a concurrent first copy
        cursor.execute("DELETE FROM analytics_diffidcopies")
        cursor.execute(
            """INSERT INTO analytics_diffidcopies (diff_id, blobs) SELECT diff_id, count(*)
               FROM analytics_blob WHERE diff_id <> '' GROUP BY diff_id HAVING count(*) > 1"""
        )


def instructions_rebuild(*, registry_id: int) -> None:
    """Find the missing lines of the registry's layers and recompute its build history from the
    maintained counts (after the registry blob rows are current)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO analytics_blobline (blob_id, created_by)
                SELECT blob_id, created_by FROM (
                    -- every held layer, tagged or not: build history with untagged holdings reads
                    -- the lines too (ingest finds them as layers become tagged; data from before
                    -- BlobLine existed may hold layers whose tags moved before)
                    SELECT l.blob_id, {_LINE_OF.format(blob="l.blob_id")} AS created_by
                    FROM (
                        SELECT DISTINCT ml.blob_id FROM analytics_repositorymanifest rm
                        JOIN analytics_repository r ON r.id = rm.repository_id
                        JOIN analytics_manifestlayer ml ON ml.manifest_id = rm.manifest_id
                        WHERE r.registry_id = %(registry)s
                    ) l
                    WHERE NOT EXISTS (SELECT 1 FROM analytics_blobline bl WHERE bl.blob_id = l.blob_id)
                ) x WHERE created_by IS NOT NULL
                ON CONFLICT (blob_id) DO NOTHING""",
            {"registry": registry_id},
        )
        cursor.execute("DELETE FROM analytics_registryinstruction WHERE registry_id = %s", [registry_id])
        cursor.execute(
            f"""INSERT INTO analytics_registryinstruction
                    (registry_id, created_by, layers, stored_bytes, unique_bytes, logical_bytes)
                SELECT %(registry)s, coalesce(bl.created_by, ''), sum(f.layers), sum(f.stored), sum(f.uniq),
                    sum(f.logical)
                FROM analytics_registryblob rb
                LEFT JOIN analytics_blobline bl ON bl.blob_id = rb.blob_id,
                LATERAL (SELECT {_LINE_FIGURES.format(n="rb.layer_refs", size="rb.size")}) f
                WHERE rb.registry_id = %(registry)s AND rb.layer_refs > 0
                GROUP BY 2""",
            {"registry": registry_id},
        )
