"""The images an image shares most with: the full computation, and an exact one whose cost follows the
answer rather than how many images hold the image's base layers.

An image X is its parts: its distinct blobs (layers and config, each counted once) and its manifest,
shared only by holdings of the same manifest. A holding Y of the scope is a partner when it holds at
least one part; its score is the bytes of the parts it holds. Partners are ranked by bytes, most first,
then by holding id: `partner_rows_full` says so in one statement, whose cost is every holding of every
part (an image on a base held by 100,000 images reads 100,000 holdings).

`partner_rows` gives the same rows in three steps, each exact:

1. The cold parts, those held by few manifests (the maintained `RegistryBlob.refs` and
   `RegistryManifestRef.refs` of every registry order them, rarest first, until `COLD_HOLDERS` are
   spent), have every holding read and scored over all parts: the candidates, exact. When every part
   is cold, the full computation is that, in one statement.
2. Any other holding holds no cold part, so its bytes are at most `bound`, the bytes of the hot parts
   (on the bench shape: its base stack). When the candidates' k-th best already has more, that is the
   answer.
3. Otherwise the scope's holdings are walked in id order, in id ranges, each scored. A holding beyond
   the walk scores at most `bound` and has a larger id than any walked, so once the k-th best has more
   than `bound`, or exactly `bound` and an id inside the walk, nothing unseen can enter: ties go to
   the lower id, as in the full ranking. Images on one base tie at the base's bytes, so the walk stops
   after about k / (share of the images on that base) holdings. When that is expected to cost more
   than the full computation (a large `limit` on a rarer base), and past `WALK_IDS` ids (a scope that
   is a small share of the holdings, or hot parts rarely held together), the full computation answers.

A repository scope reads its own holdings, each scored: its size bounds the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction

from analytics.selectors.scope import Scope

# --- the full computation ----------------------------------------------------------------------------------

_FULL_SQL = """
WITH parts AS (
    SELECT DISTINCT 'b' AS kind, ml.blob_id AS id FROM analytics_manifestlayer ml WHERE ml.manifest_id = %s
    UNION SELECT 'b', m.config_id FROM analytics_manifest m WHERE m.id = %s AND m.config_id IS NOT NULL
),
other AS (
    SELECT rm.id AS holding_id, 'b' AS kind, ml.blob_id AS id
    FROM parts p JOIN analytics_manifestlayer ml ON p.kind = 'b' AND ml.blob_id = p.id
    JOIN analytics_repositorymanifest rm ON rm.manifest_id = ml.manifest_id
    JOIN analytics_repository r ON r.id = rm.repository_id
    JOIN analytics_manifest mm ON mm.id = rm.manifest_id AND mm.kind = 'image'
    WHERE {where}
    UNION
    SELECT rm.id, 'b', mm.config_id
    FROM parts p JOIN analytics_manifest mm ON p.kind = 'b' AND mm.config_id = p.id AND mm.kind = 'image'
    JOIN analytics_repositorymanifest rm ON rm.manifest_id = mm.id
    JOIN analytics_repository r ON r.id = rm.repository_id
    WHERE {where}
    UNION
    -- the same manifest in another repository shares the manifest bytes too
    SELECT rm.id, 'm', rm.manifest_id FROM analytics_repositorymanifest rm
    JOIN analytics_repository r ON r.id = rm.repository_id
    WHERE rm.manifest_id = %s AND {where}
)
SELECT o.holding_id, count(*) FILTER (WHERE o.kind = 'b'),
    sum(coalesce(b.size, m.size)) AS shared
FROM other o
LEFT JOIN analytics_blob b ON o.kind = 'b' AND b.id = o.id
LEFT JOIN analytics_manifest m ON o.kind = 'm' AND m.id = o.id
WHERE o.holding_id <> %s
GROUP BY o.holding_id
ORDER BY shared DESC, o.holding_id
LIMIT %s
"""


def _rows(sql: str, params: list[object]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _rows_without_jit(sql: str, params: list[object]) -> list[tuple]:
    """A scoring statement: a lateral per holding, estimated costly enough for JIT compilation, which
    then spends longer compiling (12 ms measured) than a walk of a few hundred holdings takes."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        return cursor.fetchall()


def partner_rows_full(
    *, holding_id: int, manifest_id: int, scope: Scope, limit: int
) -> list[tuple[int, int, int]]:
    """(holding id, shared blobs, shared bytes) of the top `limit` partners, in one statement over every
    holding of every part."""
    where, params = scope.where()
    sql = _FULL_SQL.format(where=where)
    rows = _rows(sql, [manifest_id, manifest_id, *params, *params, manifest_id, *params, holding_id, limit])
    return [(h, n, int(s)) for h, n, s in rows]


# --- the bounded computation -------------------------------------------------------------------------------

COLD_HOLDERS = 2_000  # holdings (estimated) whose parts are read whole in step 1
WALK_FIRST_IDS = 64  # the smallest first id range of the walk; each next range doubles
WALK_IDS = 100_000  # ids walked before the full computation answers instead
# a walked id's cost against a row of the full computation (a holding of one part): both about 5 us
# at 200,000 images (bench/README.md, "Partners")
WALK_COST = 1.0

# A holding's shared blobs and bytes: the distinct blobs its image lists as a layer or config, joined
# to the parts (ids, sizes); blobs count for images only, as in the full computation. The manifest's own
# bytes are added by the CASE. Everything per holding is read by key inside the lateral: with the
# manifest joined outside, the planner hashed the whole manifest table for a walk of 4,000 holdings
# (40 of its 83 ms at 200,000 images); with the parts tested one by one (`IN` a correlated subquery),
# each part re-read the image's layers (240 ms).
_SCORED = """
SELECT rm.id, s.n, s.bytes + CASE WHEN rm.manifest_id = %s THEN %s ELSE 0 END
FROM {source}
JOIN analytics_repository r ON r.id = rm.repository_id
CROSS JOIN LATERAL (
    SELECT count(*) AS n, coalesce(sum(p.size), 0) AS bytes
    FROM analytics_manifest mm
    CROSS JOIN LATERAL (
        SELECT ml.blob_id AS id FROM analytics_manifestlayer ml WHERE ml.manifest_id = mm.id
        UNION SELECT mm.config_id
    ) x
    JOIN unnest(%s::bigint[], %s::bigint[]) AS p(id, size) ON p.id = x.id
    WHERE mm.id = rm.manifest_id AND mm.kind = 'image'
) s
WHERE {where} AND rm.id <> %s AND (s.n > 0 OR rm.manifest_id = %s) {extra}
"""

# Step 1: the holdings of some parts (blobs as layer or config; the manifest itself when asked).
_HOLDERS_SOURCE = """(
    SELECT ml.manifest_id FROM analytics_manifestlayer ml WHERE ml.blob_id = ANY(%s::bigint[])
    UNION SELECT m.id FROM analytics_manifest m WHERE m.config_id = ANY(%s::bigint[])
    UNION SELECT m.id FROM analytics_manifest m WHERE m.id = %s AND %s
) h JOIN analytics_repositorymanifest rm ON rm.manifest_id = h.manifest_id"""

# The parts with their sizes and holders (the maintained counts of every registry): the blobs by id,
# the manifest under MANIFEST.
_PARTS_SQL = """
SELECT b.id, b.size, coalesce((
    SELECT sum(rb.refs) FROM analytics_registryblob rb
    WHERE rb.registry_id IN (SELECT id FROM analytics_registry) AND rb.blob_id = b.id
), 0)
FROM analytics_blob b
WHERE b.id IN (
    SELECT ml.blob_id FROM analytics_manifestlayer ml WHERE ml.manifest_id = %s
    UNION SELECT m.config_id FROM analytics_manifest m WHERE m.id = %s
)
UNION ALL
SELECT %s, m.size, coalesce((
    SELECT sum(mr.refs) FROM analytics_registrymanifestref mr
    WHERE mr.registry_id IN (SELECT id FROM analytics_registry) AND mr.manifest_id = m.id
), 0)
FROM analytics_manifest m WHERE m.id = %s
"""

MANIFEST = -1  # the manifest part's key among the blob ids


@dataclass
class _Ranking:
    """Every partner found so far, exactly scored."""

    limit: int
    found: dict[int, tuple[int, int]]  # holding id -> (shared blobs, shared bytes)

    def add(self, rows: list[tuple]) -> None:
        for holding, n, shared in rows:
            self.found[holding] = (n, int(shared))

    def top(self) -> list[tuple[int, int, int]]:
        ranked = sorted(self.found.items(), key=lambda item: (-item[1][1], item[0]))[: self.limit]
        return [(h, n, s) for h, (n, s) in ranked]

    def settled(self, *, bound: int, walked_to: int) -> bool:
        """No holding outside the ones found (each scoring at most `bound`, with an id above
        `walked_to`) can enter the top `limit`."""
        top = self.top()
        if len(top) < self.limit:
            return False
        kth_holding, _, kth_bytes = top[-1]
        return bound < kth_bytes or (bound == kth_bytes and kth_holding <= walked_to)


def partner_rows(
    *, holding_id: int, manifest_id: int, scope: Scope, limit: int
) -> list[tuple[int, int, int]]:
    """`partner_rows_full`'s rows, read through the rarest parts first and a walk that stops as soon as
    no unseen holding can enter the top `limit` (the module's docstring has the argument)."""
    full = {"holding_id": holding_id, "manifest_id": manifest_id, "scope": scope, "limit": limit}
    rows = _rows(_PARTS_SQL, [manifest_id, manifest_id, MANIFEST, manifest_id])  # (key, size, holders)
    if sum(holders for *_, holders in rows) <= COLD_HOLDERS:
        return partner_rows_full(**full)  # few holdings in all: one statement reads them
    parts = [r for r in rows if r[0] != MANIFEST]
    manifest_size = next(size for key, size, _ in rows if key == MANIFEST)
    ids = [p[0] for p in parts]
    sizes = [p[1] for p in parts]
    where, where_params = scope.where()

    def scored(source: str, source_params: list[object], extra: str = "", extra_params=()) -> list[tuple]:
        sql = _SCORED.format(source=source, where=where, extra=extra)
        return _rows_without_jit(
            sql,
            [
                manifest_id,
                manifest_size,
                *source_params,
                ids,
                sizes,
                *where_params,
                holding_id,
                manifest_id,
                *extra_params,
            ],
        )

    def read_whole(keys: list[int]) -> list[tuple]:
        blobs = [k for k in keys if k != MANIFEST]
        return scored(_HOLDERS_SOURCE, [blobs, blobs, manifest_id, MANIFEST in keys])

    ranking = _Ranking(limit, {})
    if scope.repository_id is not None:
        ranking.add(
            scored("analytics_repositorymanifest rm", [], "AND rm.repository_id = %s", [scope.repository_id])
        )
        return ranking.top()

    # Step 1: the rarest parts, read whole.
    by_rarity = sorted((n, -s, k) for k, s, n in rows)
    cold: list[int] = []
    spent = 0
    for holders, _, key in by_rarity:
        if spent + holders > COLD_HOLDERS:
            break
        cold.append(key)
        spent += holders
    hot = [(key, -neg, holders) for holders, neg, key in by_rarity if key not in cold]
    if cold:
        ranking.add(read_whole(cold))
    # Step 2: no holding outside the candidates scores more than the hot parts' bytes.
    bound = sum(size for _, size, _ in hot)
    if not hot or ranking.settled(bound=bound, walked_to=0):
        return ranking.top()

    # Step 3: the walk in id order, unless the full computation is expected to cost less; past
    # WALK_IDS, the full computation. The holdings scoring `bound` hold every hot part, so at most
    # `fewest` of the ids are theirs: `limit` of them take at least limit * ids / fewest ids to find.
    # The full computation reads a row per holding of each part.
    first, last = _rows("SELECT min(id), max(id) FROM analytics_repositorymanifest", [])[0]
    fewest = max(1, min(holders for _, _, holders in hot))
    expected = limit * (last - first + 1) // fewest
    if expected * WALK_COST > sum(holders for *_, holders in by_rarity):
        return partner_rows_full(**full)
    walked_to, span = first - 1, max(WALK_FIRST_IDS, expected + expected // 2)
    stop = min(last, walked_to + WALK_IDS)
    while walked_to < stop:
        upper = min(walked_to + span, stop)
        ranking.add(
            scored(
                "analytics_repositorymanifest rm", [], "AND rm.id > %s AND rm.id <= %s", [walked_to, upper]
            )
        )
        walked_to, span = upper, span * 2
        if ranking.settled(bound=bound, walked_to=walked_to):
            return ranking.top()
    return ranking.top() if walked_to >= last else partner_rows_full(**full)
