"""Maintained figures rebuilt from the holdings: every count and summary row of one registry, set-based.

For a migration, the benchmark generator and repair; scans keep the figures current with
`analytics.ingest.figures.figures_apply` and never need this."""

from __future__ import annotations

from django.db import connection

from analytics.ingest.figures import LINE_FIGURES, LINE_OF
from analytics.models.figures import SUMMARY_FIGURE_FIELDS
from analytics.selectors.summary import FOREIGN_TYPES_SQL

# the uncompressed sums over a scope's layers of known size, from a count of holdings listing each ({n})
_U_COLUMNS = ", ".join(SUMMARY_FIGURE_FIELDS[-4:])


_U_SUMS = "count(*), sum({n} * b.uncompressed_size), sum(b.uncompressed_size), sum(b.size)"


_U_KNOWN = f"b.uncompressed_size IS NOT NULL AND b.media_type NOT IN ({FOREIGN_TYPES_SQL})"


_REBUILD = [
    "DELETE FROM analytics_registryblob WHERE registry_id = %(registry)s",
    "DELETE FROM analytics_registrymanifestref WHERE registry_id = %(registry)s",
    """DELETE FROM analytics_repositoryblob WHERE repository_id IN
       (SELECT id FROM analytics_repository WHERE registry_id = %(registry)s)""",
    # the registry row comes back with the next content version (its default): answers recompute
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
       JOIN LATERAL (SELECT b.size, b.media_type IN ({FOREIGN_TYPES_SQL}) AS f FROM analytics_blob b
                     WHERE b.id = rb.blob_id) b ON TRUE
       WHERE rb.registry_id = %(registry)s""",
    f"""INSERT INTO analytics_scopefigures (registry_id, repository_id, images, manifests, indexes,
           repositories, distinct_layers, logical_bytes, stored_bytes, layers_logical_bytes,
           layers_stored_bytes, foreign_bytes, content_version)
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
           FROM rb JOIN LATERAL (SELECT size, media_type IN ({FOREIGN_TYPES_SQL}) AS f FROM analytics_blob
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
           coalesce(bs.layers_logical, 0), coalesce(bs.layers_stored, 0), coalesce(bs.foreign_, 0),
           NULL  -- the registry row's only
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
           JOIN LATERAL (SELECT size, media_type IN ({FOREIGN_TYPES_SQL}) AS f FROM analytics_blob
                         WHERE id = nb.blob_id) b ON TRUE
           WHERE nb.registry_id = %(registry)s GROUP BY 1
       ),
       lg AS (
           -- a blob that is both config and layer of one holding counts twice, as in the summary
           SELECT n.namespace, sum(b.size * fr.roles) AS logical
           FROM figures_refs fr JOIN figures_ns n USING (repository_id)
           JOIN analytics_blob b ON b.id = fr.blob_id AND b.media_type NOT IN ({FOREIGN_TYPES_SQL}) GROUP BY 1
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


# What the registry holds once per digest, and its current tags (`RegistryHeld`), after the counts.
_REBUILD_HELD = """
INSERT INTO analytics_registryheld (registry_id, manifests, manifest_bytes, blobs, blob_bytes, tags)
SELECT %(registry)s,
    (SELECT count(*) FROM analytics_registrymanifestref x WHERE x.registry_id = %(registry)s AND x.refs > 0),
    (SELECT coalesce(sum(m.size), 0) FROM analytics_registrymanifestref x
     JOIN analytics_manifest m ON m.id = x.manifest_id WHERE x.registry_id = %(registry)s AND x.refs > 0),
    (SELECT count(*) FROM analytics_registryblob rb WHERE rb.registry_id = %(registry)s AND rb.refs > 0),
    (SELECT coalesce(sum(b.size), 0) FROM analytics_registryblob rb
     JOIN analytics_blob b ON b.id = rb.blob_id WHERE rb.registry_id = %(registry)s AND rb.refs > 0),
    (SELECT count(*) FROM analytics_tag t JOIN analytics_repository p ON p.id = t.repository_id
     WHERE p.registry_id = %(registry)s AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL)
ON CONFLICT (registry_id) DO UPDATE SET manifests = excluded.manifests,
    manifest_bytes = excluded.manifest_bytes, blobs = excluded.blobs, blob_bytes = excluded.blob_bytes,
    tags = excluded.tags
"""


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
        cursor.execute(_REBUILD_HELD, {"registry": registry_id})
        registries_rebuild()
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
                    SELECT l.blob_id, {LINE_OF.format(blob="l.blob_id")} AS created_by
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
                LATERAL (SELECT {LINE_FIGURES.format(n="rb.layer_refs", size="rb.size")}) f
                WHERE rb.registry_id = %(registry)s AND rb.layer_refs > 0
                GROUP BY 2""",
            {"registry": registry_id},
        )


def registries_rebuild() -> None:
    """Recount `BlobRegistries` and `ManifestRegistries` (registries holding each digest) from every
    registry's maintained rows: global, so after any registry's rebuild."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM analytics_blobregistries")
        cursor.execute(
            """INSERT INTO analytics_blobregistries (blob_id, registries, layer_registries, size)
               SELECT blob_id, count(*), count(*) FILTER (WHERE layer_refs > 0), max(size)
               FROM analytics_registryblob WHERE refs > 0 GROUP BY blob_id"""
        )
        cursor.execute("DELETE FROM analytics_manifestregistries")
        cursor.execute(
            """INSERT INTO analytics_manifestregistries (manifest_id, registries, size)
               SELECT x.manifest_id, count(*), max(m.size) FROM analytics_registrymanifestref x
               JOIN analytics_manifest m ON m.id = x.manifest_id WHERE x.refs > 0 GROUP BY x.manifest_id"""
        )
