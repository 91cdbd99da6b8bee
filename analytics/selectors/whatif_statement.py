"""The what-if statement: its SQL over the deleted tag ids, the two ways it prices blobs (from what the
deletion loses, with each repository's part; from what stays, for totals of a selection that untags most of
the registries) and the settings it runs with. `analytics.selectors.whatif` runs it and reads its rows."""

from __future__ import annotations

from django.db.models import Sum

from analytics.models import RegistryHeld

# How the statement runs, for its transaction only: its hash aggregates over the judged blobs fit in
# memory rather than spill to disk
WHATIF_SETTINGS = {"work_mem": "256MB", "hash_mem_multiplier": "2"}
# From this many tags a selection untags much of a large registry, and the planner, which cannot see
# into the statement's materialized sets, still probes the blobs, manifests and layers row by row (five
# probes per judged blob); reading those tables whole with hash and merge joins costs a fraction of that.
# Below it the probes are what a namespace or a repository needs. Both give the same answer (tested).
WHATIF_HASHED_TAGS = 50_000
WHATIF_HASHED_SETTINGS = {"enable_nestloop": "off"}


def statement_settings(tags: int) -> dict[str, str]:
    """The settings the what-if statement runs with, for a selection of `tags` tag ids."""
    return {**WHATIF_SETTINGS, **(WHATIF_HASHED_SETTINGS if tags >= WHATIF_HASHED_TAGS else {})}


# The deletion's lost holdings and the manifests they held (judged_m), with the page's repositories: what
# both ways of pricing the blobs start from.
_LOST_CTES = """
WITH RECURSIVE
del AS MATERIALIZED (
    SELECT t.id, t.repository_id FROM analytics_tag t
    WHERE t.id = ANY(%(tags)s::bigint[]) AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
),
arepo AS MATERIALIZED (
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
lost AS MATERIALIZED (
    SELECT rm.repository_id, a.registry_id, rm.manifest_id
    FROM analytics_repositorymanifest rm JOIN arepo a ON a.repository_id = rm.repository_id
    WHERE rm.present AND NOT EXISTS (
        SELECT 1 FROM reach
        WHERE reach.repository_id = rm.repository_id AND reach.manifest_id = rm.manifest_id)
),
judged_m AS MATERIALIZED (
    -- RegistryManifestRef.refs counts the repositories holding it: freed when all of them lose it, else
    -- kept by the others (in another namespace, say). first = last: one repository lost it (n = 1)
    SELECT ln.registry_id, ln.manifest_id, ln.n, ln.first, ln.last, coalesce(x.refs, 0) <= ln.n AS freed,
        m.size
    FROM (
        SELECT registry_id, manifest_id, count(*)::int AS n, min(repository_id) AS first,
            max(repository_id) AS last
        FROM lost GROUP BY 1, 2
    ) ln
    JOIN analytics_manifest m ON m.id = ln.manifest_id
    LEFT JOIN analytics_registrymanifestref x
        ON x.registry_id = ln.registry_id AND x.manifest_id = ln.manifest_id
),
paged_repos AS MATERIALIZED (
    -- the repositories a page of lost holdings can reach, in name order from the page's start: those
    -- named after it whose predecessors (after it) lose fewer holdings than a page holds
    SELECT id, name FROM (
        SELECT c.id, c.name, sum(c.after) OVER (ORDER BY c.name COLLATE "C", c.id) - c.after AS before
        FROM (
            SELECT r.id, r.name,
                CASE WHEN r.name COLLATE "C" > %(after_r)s THEN count(*) ELSE 0 END AS after
            FROM lost l JOIN analytics_repository r ON r.id = l.repository_id
            WHERE %(details)s AND r.name COLLATE "C" >= %(after_r)s
            GROUP BY r.id, r.name
        ) c
    ) ranked
    WHERE %(page)s::bigint IS NULL OR before < %(page)s::bigint
),
"""

# The blobs priced from what the deletion loses: each lost manifest's distinct blobs (`ManifestBlob`: layers
# and config, each once) with their references in the registry, and the repositories that lost them (`owner`),
# for each repository's part.
_LOST_BLOBS_CTES = """refs AS MATERIALIZED (
    -- per lost manifest and registry: n lost holdings reference each of its blobs once, from the
    -- repositories first..last. RegistryBlob copies the blob's size (fixed by its digest); the blob is read
    -- only without a row
    SELECT s.registry_id, mb.blob_id, s.n, s.first, s.last, coalesce(rb.refs, 0) AS refs,
        coalesce(rb.size, (SELECT b.size FROM analytics_blob b WHERE b.id = mb.blob_id)) AS size
    FROM judged_m s JOIN analytics_manifestblob mb ON mb.manifest_id = s.manifest_id
    LEFT JOIN analytics_registryblob rb ON rb.registry_id = s.registry_id AND rb.blob_id = mb.blob_id
),
judged AS MATERIALIZED (
    -- RegistryBlob.refs counts the present holdings referencing the blob: freed when the deletion removes
    -- all, else the holdings left (kept_by) keep it. A blob whose references are all one lost manifest's
    -- (refs <= n: no other manifest's row names it) is decided on its row; the rest, summed per blob
    SELECT registry_id, blob_id, true AS freed, 0::bigint AS kept_by,
        CASE WHEN first = last THEN first END AS owner, size
    FROM refs WHERE refs <= n
    UNION ALL
    SELECT registry_id, blob_id, refs <= sum(n), greatest(refs - sum(n), 0)::bigint,
        CASE WHEN min(first) = max(last) THEN min(first) END, size
    FROM refs WHERE refs > n
    GROUP BY registry_id, blob_id, refs, size
)
"""

# What both ways answer from the lost holdings: tags, holdings, manifests, affected repositories, the page.
_COMMON_ROWS = """SELECT 'D', count(*), NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
    NULL::text, NULL::text, NULL::text
FROM del
UNION ALL SELECT 'L', count(*), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM lost
UNION ALL SELECT 'M', count(*) FILTER (WHERE freed), coalesce(sum(size) FILTER (WHERE freed), 0),
    count(*) FILTER (WHERE NOT freed), coalesce(sum(size) FILTER (WHERE NOT freed), 0),
    count(*) FILTER (WHERE freed AND first <> last),
    coalesce(sum(size) FILTER (WHERE freed AND first <> last), 0),
    NULL, NULL, NULL
FROM judged_m
UNION ALL SELECT 'A', repository_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM arepo
WHERE %(details)s
UNION ALL (
    -- a page of lost holdings in (repository, digest) order, as Python orders strings (COLLATE "C"):
    -- the digests of the page's repositories only (paged_repos), each a probe by id (a subquery, which
    -- neither the planner's hash joins nor enable_nestloop turn into a read of every manifest)
    SELECT 'P', p.repository_id, p.manifest_id, j.size, j.freed::int, NULL, NULL,
        p.name, p.digest, (SELECT m.kind FROM analytics_manifest m WHERE m.id = p.manifest_id)
    FROM (
        SELECT x.* FROM (
            SELECT l.registry_id, l.repository_id, l.manifest_id, pr.name,
                (SELECT m.digest FROM analytics_manifest m WHERE m.id = l.manifest_id) AS digest
            FROM paged_repos pr JOIN lost l ON l.repository_id = pr.id
        ) x
        WHERE (x.name COLLATE "C", x.digest COLLATE "C") > (%(after_r)s, %(after_d)s)
        ORDER BY x.name COLLATE "C", x.digest COLLATE "C"
        LIMIT %(page)s
    ) p
    JOIN judged_m j ON j.registry_id = p.registry_id AND j.manifest_id = p.manifest_id
)
"""

_LOST_BLOBS_ROWS = """UNION ALL SELECT 'B', count(*) FILTER (WHERE freed),
    coalesce(sum(size) FILTER (WHERE freed), 0),
    count(*) FILTER (WHERE NOT freed), coalesce(sum(size) FILTER (WHERE NOT freed), 0),
    count(*) FILTER (WHERE freed AND owner IS NULL),
    coalesce(sum(size) FILTER (WHERE freed AND owner IS NULL), 0),
    NULL, NULL, NULL
FROM judged
UNION ALL SELECT 'R', p.repository_id, sum(p.tags), sum(p.untagged), sum(p.manifests), sum(p.blobs),
    sum(p.bytes), NULL, NULL, NULL
FROM (
    SELECT repository_id, count(*) AS tags, 0 AS untagged, 0 AS manifests, 0 AS blobs, 0 AS bytes
    FROM del GROUP BY 1
    UNION ALL SELECT repository_id, 0, count(*), 0, 0, 0 FROM lost GROUP BY 1
    UNION ALL SELECT first, 0, 0, count(*), 0, sum(size) FROM judged_m
        WHERE freed AND first = last GROUP BY 1
    UNION ALL SELECT owner, 0, 0, 0, count(*), sum(size) FROM judged
        WHERE freed AND owner IS NOT NULL GROUP BY 1
) p
WHERE %(by_repository)s
GROUP BY p.repository_id
UNION ALL (
    -- the largest blobs that stay
    SELECT 'K', registry_id, blob_id, size, kept_by, NULL, NULL, NULL, NULL, NULL FROM judged
    WHERE NOT freed AND %(by_repository)s
    ORDER BY size DESC, kept_by DESC, registry_id DESC, blob_id DESC LIMIT %(kept_largest)s
)
"""

WHATIF_SQL = _LOST_CTES + _LOST_BLOBS_CTES + _COMMON_ROWS + _LOST_BLOBS_ROWS

# The blobs priced from what stays, for the totals alone: the holdings the deletion leaves in the registries
# it touches, each kept manifest's distinct blobs counted per registry. A blob no kept holding references is
# freed: the registry's blobs (`RegistryHeld`) less the kept ones. When a selection untags most of the
# registries, what stays is the smaller side to read; it cannot say which repository a freed blob came
# from, so a breakdown by repository is always priced from what is lost.
_KEPT_BLOBS_CTES = """kept AS MATERIALIZED (
    SELECT r.registry_id, rm.manifest_id, count(*)::int AS k
    FROM analytics_repository r
    JOIN analytics_repositorymanifest rm ON rm.repository_id = r.id AND rm.present
    WHERE r.registry_id IN (SELECT registry_id FROM arepo) AND NOT EXISTS (
        SELECT 1 FROM lost l WHERE l.repository_id = rm.repository_id AND l.manifest_id = rm.manifest_id)
    GROUP BY 1, 2
),
kept_refs AS (
    -- as refs: each kept holding references each distinct blob of its manifest once
    SELECT s.registry_id, mb.blob_id, sum(s.k) AS k
    FROM kept s JOIN analytics_manifestblob mb ON mb.manifest_id = s.manifest_id
    GROUP BY 1, 2
),
kept_blobs AS MATERIALIZED (
    -- RegistryBlob.refs counts every present holding referencing the blob; fewer kept (k < refs): the
    -- deletion untags it and it stays
    SELECT kr.k, coalesce(rb.refs, 0) AS refs,
        coalesce(rb.size, (SELECT b.size FROM analytics_blob b WHERE b.id = kr.blob_id)) AS size
    FROM kept_refs kr
    LEFT JOIN analytics_registryblob rb ON rb.registry_id = kr.registry_id AND rb.blob_id = kr.blob_id
),
held AS MATERIALIZED (
    SELECT coalesce(sum(h.blobs), 0) AS blobs, coalesce(sum(h.blob_bytes), 0) AS bytes
    FROM analytics_registryheld h WHERE h.registry_id IN (SELECT registry_id FROM arepo)
)
"""

_KEPT_BLOBS_ROWS = """UNION ALL SELECT 'B', (SELECT blobs FROM held) - count(*),
    (SELECT bytes FROM held) - coalesce(sum(size), 0),
    count(*) FILTER (WHERE k < refs), coalesce(sum(size) FILTER (WHERE k < refs), 0),
    NULL, NULL, NULL, NULL, NULL
FROM kept_blobs
"""

WHATIF_KEPT_SQL = _LOST_CTES + _KEPT_BLOBS_CTES + _COMMON_ROWS + _KEPT_BLOBS_ROWS

# A selection of more than this share of the current tags of every registry is priced from what stays
# (without a breakdown by repository): both ways give the same answer (tested); the smaller side is cheaper.
PRICE_FROM_KEPT_SHARE = 0.5


def priced_from_kept(tags: int) -> bool:
    """Whether a selection of `tags` tag ids, without a breakdown, is priced from what stays."""
    held = RegistryHeld.objects.aggregate(tags=Sum("tags"))["tags"] or 0
    return tags > PRICE_FROM_KEPT_SHARE * held


# the largest kept blobs a breakdown names
KEPT_LARGEST = 10
