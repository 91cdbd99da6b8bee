"""Layer chains: for every image manifest, the hash of each ordered prefix of its layers (`LayerChain`).

Lineage (`analytics.selectors.lineage`) reads them: "is X a prefix of Y" becomes an index lookup. Manifests
are immutable, so a manifest's rows are written once."""

from __future__ import annotations

from django.db import connection

# depth = row number, so gaps in `position` cannot break the prefix relation.
_CHAINS_SQL = """
INSERT INTO analytics_layerchain (manifest_id, depth, chain, is_top)
SELECT manifest_id, depth, chain, depth = total FROM (
    SELECT ml.manifest_id,
        row_number() OVER w AS depth,
        count(*) OVER (PARTITION BY ml.manifest_id) AS total,
        encode(sha256(convert_to(string_agg(b.digest, ' ') OVER w, 'UTF8')), 'hex') AS chain
    FROM analytics_manifestlayer ml
    JOIN analytics_blob b ON b.id = ml.blob_id
    JOIN analytics_manifest m ON m.id = ml.manifest_id AND m.kind = 'image'
    WHERE ml.manifest_id IN ({targets})
    WINDOW w AS (PARTITION BY ml.manifest_id ORDER BY ml.position
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
) s
ON CONFLICT (manifest_id, depth) DO NOTHING
"""


def chains_refresh(*, repository_id: int | None = None) -> int:
    """Write the chain ids of image manifests that have none yet (those a repository holds, or all).

    Cost follows the new manifests only: manifests are immutable, so existing rows never change.
    """
    missing = (
        "SELECT rm.manifest_id FROM analytics_repositorymanifest rm WHERE {repo} NOT EXISTS "
        "(SELECT 1 FROM analytics_layerchain c WHERE c.manifest_id = rm.manifest_id)"
    )
    params: list[object] = []
    if repository_id is not None:
        missing = missing.format(repo="rm.repository_id = %s AND")
        params.append(repository_id)
    else:
        missing = missing.format(repo="")
    with connection.cursor() as cursor:
        cursor.execute(_CHAINS_SQL.format(targets=missing), params)
        return cursor.rowcount
