"""Lineage by ordered layer prefix, through maintained chain ids (`LayerChain`).

An image's base is the other image, in the same registry, whose ordered layer list is the longest
proper prefix of its own. With each manifest's prefix hashes stored, "is X a prefix of Y" is
`X.top_chain = Y.chain(depth)` with depth below Y's layer count: an index lookup.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from analytics.models import RepositoryManifest
from analytics.selectors.answers import STALE_BASES, answers_stale


@dataclass(frozen=True)
class BaseImage:
    holding_id: int
    manifest_id: int
    digest: str
    repository: str
    shared_layers: int  # the base's layer count: the prefix length


_BASE_SQL = """
SELECT rm2.id, t.manifest_id, m.digest, r2.name, c.depth
FROM analytics_layerchain c
JOIN analytics_layerchain t ON t.chain = c.chain AND t.is_top
JOIN analytics_repositorymanifest rm2 ON rm2.manifest_id = t.manifest_id {present}
JOIN analytics_repository r2 ON r2.id = rm2.repository_id AND r2.registry_id = %(registry)s
JOIN analytics_manifest m ON m.id = t.manifest_id
WHERE c.manifest_id = %(manifest)s AND NOT c.is_top
-- longest prefix first; among equal candidates prefer the image's own repository, then tagged, then oldest
ORDER BY c.depth DESC, (rm2.repository_id = %(repository)s) DESC, rm2.present DESC, rm2.id
LIMIT 1
"""


def image_base(
    *, manifest_id: int, registry_id: int, repository_id: int = 0, include_untagged: bool = False
) -> BaseImage | None:
    """The image whose ordered layers are the longest proper prefix of this manifest's, or None (a root)."""
    present = "" if include_untagged else "AND rm2.present"
    with connection.cursor() as cursor:
        cursor.execute(
            _BASE_SQL.format(present=present),
            {"registry": registry_id, "manifest": manifest_id, "repository": repository_id},
        )
        row = cursor.fetchone()
    return BaseImage(*row) if row else None


def image_lineage(*, holding: RepositoryManifest, include_untagged: bool = False) -> list[BaseImage]:
    """The base, its base, ... down to the root. Each step has fewer layers, so it ends."""
    chain: list[BaseImage] = []
    manifest_id, repository_id = holding.manifest_id, holding.repository_id
    registry_id = holding.repository.registry_id
    while True:
        base = image_base(
            manifest_id=manifest_id,
            registry_id=registry_id,
            repository_id=repository_id,
            include_untagged=include_untagged,
        )
        if base is None:
            return chain
        chain.append(base)
        manifest_id = base.manifest_id
        repository_id = RepositoryManifest.objects.values_list("repository_id", flat=True).get(
            id=base.holding_id
        )


@dataclass(frozen=True)
class DerivedImage:
    holding_id: int
    manifest_id: int
    repository: str
    digest: str
    extra_layers: int  # layers it adds on top of the base's


# Chain rows one page may walk. The registry and `present` are the holdings' (a manifest's chains are
# not per registry), so a walk through derived manifests held elsewhere or untagged finds nothing;
# past this many the page ends short, its `next` key after the last row walked.
DERIVED_WALK = 2_000

# The derived manifests in `layer_chain_derived` order from the key on (at most `walk` of them), their
# holdings in the registry after the key. A page resumes inside a manifest, hence `>=` on the chains.
_DERIVED_SQL = """
SELECT rm.id, w.manifest_id, r.name, m.digest, w.layer_count - %(depth)s
FROM (
    SELECT c.layer_count, c.manifest_id FROM analytics_layerchain c
    WHERE c.chain = %(chain)s AND NOT c.is_top AND (c.layer_count, c.manifest_id) >= (%(k0)s, %(k1)s)
    ORDER BY c.layer_count, c.manifest_id
    LIMIT %(walk)s
) w
JOIN analytics_repositorymanifest rm ON rm.manifest_id = w.manifest_id {present}
JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %(registry)s
JOIN analytics_manifest m ON m.id = w.manifest_id AND m.kind = 'image'
WHERE (w.layer_count, w.manifest_id, rm.id) > (%(k0)s, %(k1)s, %(k2)s)
ORDER BY w.layer_count, w.manifest_id, rm.id
LIMIT %(limit)s
"""

# The last chain row the walk above read, when more follow it (the page was cut by the walk).
_WALK_END_SQL = """
SELECT c.layer_count, c.manifest_id FROM analytics_layerchain c
WHERE c.chain = %(chain)s AND NOT c.is_top AND (c.layer_count, c.manifest_id) >= (%(k0)s, %(k1)s)
ORDER BY c.layer_count, c.manifest_id
OFFSET %(walk)s - 1 LIMIT 2
"""


def image_derived(
    *,
    holding: RepositoryManifest,
    include_untagged: bool = False,
    after: tuple[int, ...] | None = None,
    limit: int = 50,
) -> tuple[list[DerivedImage], tuple[int, int, int] | None]:
    """Images in the same registry whose layers start with all of this image's layers (and more), as a
    keyset page: fewest extra layers first, then manifest id, then holding id.

    The key is (extra layers, manifest id, holding id) of the page's last row, None after the last
    page. Walks `layer_chain_derived` (chain, layer_count, manifest) from the key and stops after
    `limit` rows or `DERIVED_WALK` chain rows, whichever comes first, so a page costs the same for a
    base with 10 or 100,000 derived images; a page cut by the walk may hold fewer than `limit` rows
    (even none) and still have a next key. No count: it would cost the whole list.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT chain, depth FROM analytics_layerchain WHERE manifest_id = %s AND is_top",
            [holding.manifest_id],
        )
        top = cursor.fetchone()
        if top is None:  # no layers (or chains not written yet): nothing can start with them
            return [], None
        chain, depth = top
        extra, manifest_id, holding_id = after if after else (0, 0, 0)
        params = {
            "chain": chain,
            "depth": depth,
            "registry": holding.repository.registry_id,
            "k0": extra + depth,
            "k1": manifest_id,
            "k2": holding_id,
            "walk": max(DERIVED_WALK, limit + 1),
            "limit": limit + 1,
        }
        cursor.execute(_DERIVED_SQL.format(present="" if include_untagged else "AND rm.present"), params)
        rows = [DerivedImage(*row) for row in cursor.fetchall()]
        if len(rows) > limit:
            last = rows[limit - 1]
            return rows[:limit], (last.extra_layers, last.manifest_id, last.holding_id)
        cursor.execute(_WALK_END_SQL, params)
        end = cursor.fetchall()
    if len(end) < 2:
        return rows, None
    # Cut by the walk: every holding of the walked manifests is in `rows`; go on after the last one
    # (manifest ids are integers, so "after manifest m" is "from manifest m + 1, holding 0").
    return rows, (end[0][0] - depth, end[0][1] + 1, 0)


STILL_TAGGED_LIMIT = 20  # tags listed per row that still name the old digest


@dataclass(frozen=True)
class StaleBase:
    repository: str  # the base's repository and the tag that moved
    tag: str
    old_digest: str
    new_digest: str
    moved_at: object
    images: int
    image_bytes: int  # Σ of the affected images' sizes (manifest, config, layers)
    affected: tuple[tuple[int, str, str], ...]  # (holding id, repository, digest)
    # "repository:tag" of the registry's tags that still name the old digest (a mirror, a pinned copy):
    # the images are stale all the same, since the tag they were built from moved
    still_tagged: tuple[str, ...] = ()


# The images to look at. A whole registry starts from the moves of its current tags (`tag_event_moves`,
# a partial index on the moves only), the manifests the old digests named (or the children of an
# index they named), and the tagged images built on those (their chain ids): the answer's neighbourhood,
# never every image of the registry. An image stale on base B is found so: B is its chosen base and
# has a move naming it, so B is among those manifests and the image's chain reaches B's top chain.
_STALE_REGISTRY_BUILT = """
WITH moved AS (
    SELECT DISTINCT e.old_digest FROM analytics_tagevent e
    JOIN analytics_tag tg ON tg.id = e.tag_id AND tg.removed_at IS NULL
    JOIN analytics_repository r ON r.id = tg.repository_id AND r.registry_id = %(registry)s
    JOIN analytics_manifest cur ON cur.id = tg.manifest_id AND cur.digest <> e.old_digest
    WHERE e.old_digest <> '' AND e.new_digest <> ''
),
bases AS (
    SELECT m.id FROM moved JOIN analytics_manifest m ON m.digest = moved.old_digest
    UNION
    SELECT ie.child_id FROM moved JOIN analytics_manifest m ON m.digest = moved.old_digest
    JOIN analytics_indexentry ie ON ie.index_id = m.id
),
built AS (
    SELECT DISTINCT c.manifest_id
    FROM bases b
    JOIN analytics_layerchain t ON t.manifest_id = b.id AND t.is_top
    JOIN analytics_layerchain c ON c.chain = t.chain AND NOT c.is_top
)
SELECT manifest_id FROM built
"""

# The tagged images of the registry among the manifests built on moved bases (an array: its length is
# known to the planner, which otherwise joins every holding of the registry for a few thousand).
_STALE_BUILT_IMAGES = """
imgs AS (
    SELECT rm.id AS holding_id, rm.manifest_id, r.registry_id, r.name AS repository
    FROM analytics_repositorymanifest rm
    JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %(registry)s
    JOIN analytics_manifest m ON m.id = rm.manifest_id AND m.kind = 'image'
    WHERE rm.manifest_id = ANY(%(built)s::bigint[]) AND rm.present
)"""

# One image: the holding itself (tagged, an image, in the registry).
_STALE_ONE_IMAGE = """
imgs AS (
    SELECT rm.id AS holding_id, rm.manifest_id, r.registry_id, r.name AS repository
    FROM analytics_repositorymanifest rm
    JOIN analytics_repository r ON r.id = rm.repository_id
    JOIN analytics_manifest m ON m.id = rm.manifest_id AND m.kind = 'image'
    WHERE rm.id = %(holding)s AND rm.present AND r.registry_id = %(registry)s
)"""

# Every tagged image of the registry: the first statement of the question, kept to check the others.
_STALE_ALL_IMAGES = """
imgs AS (
    SELECT rm.id AS holding_id, rm.manifest_id, r.registry_id, r.name AS repository
    FROM analytics_repositorymanifest rm
    JOIN analytics_repository r ON r.id = rm.repository_id
    JOIN analytics_manifest m ON m.id = rm.manifest_id AND m.kind = 'image'
    WHERE rm.present AND r.registry_id = %(registry)s
)"""

# Two statements: the stale images first, then their moves, sizes and rows. As one statement the planner
# guessed 63 million stale images where a 1,000,000-image registry has 4,680, and read every manifest, blob
# and tag sequentially for the second half (8.3 s of which 4 s after the stale set was known).
_STALE_IMAGES_SQL = """
WITH {imgs},
based AS (
    -- the base among every manifest the registry ever held: a moved tag leaves the old base untagged
    SELECT i.*, b.base_id
    FROM imgs i CROSS JOIN LATERAL (
        SELECT t.manifest_id AS base_id
        FROM analytics_layerchain c
        JOIN analytics_layerchain t ON t.chain = c.chain AND t.is_top
        WHERE c.manifest_id = i.manifest_id AND NOT c.is_top AND EXISTS (
            SELECT 1 FROM analytics_repositorymanifest rm2
            JOIN analytics_repository r2 ON r2.id = rm2.repository_id
            WHERE rm2.manifest_id = t.manifest_id AND r2.registry_id = %(registry)s)
        ORDER BY c.depth DESC, (SELECT bool_or(rm3.present) FROM analytics_repositorymanifest rm3
                                WHERE rm3.manifest_id = t.manifest_id) DESC NULLS LAST, t.manifest_id
        LIMIT 1
    ) b
)
-- candidates: which of them a moved tag named is the second statement's join with the moves
SELECT holding_id, manifest_id, repository, base_id FROM based
"""

# The second statement: the stale images come in as arrays, so their count is known to the planner.
_STALE_ROWS_SQL = """
WITH stale AS (
    SELECT * FROM unnest(%(holdings)s::bigint[], %(manifests)s::bigint[], %(repositories)s::text[],
        %(bases)s::bigint[]) AS s(holding_id, manifest_id, repository, base_id)
),
named AS (
    -- digests a tag named when it reached the base: the base itself, or an index listing it
    SELECT s.base_id, bm.digest FROM (SELECT DISTINCT base_id FROM stale) s
    JOIN analytics_manifest bm ON bm.id = s.base_id
    UNION
    SELECT s.base_id, im.digest FROM (SELECT DISTINCT base_id FROM stale) s
    JOIN analytics_indexentry e ON e.child_id = s.base_id
    JOIN analytics_manifest im ON im.id = e.index_id
),
moves AS (
    SELECT DISTINCT ON (n.base_id, tg.id) n.base_id, tg.id AS tag_id, r.name AS repository, tg.name AS tag,
        e.old_digest, cur.digest AS new_digest, e.seen_at
    FROM named n
    -- old_digest <> '' lets the planner use the partial index of moves (tag_event_moves)
    JOIN analytics_tagevent e ON e.old_digest = n.digest AND e.old_digest <> '' AND e.new_digest <> ''
    JOIN analytics_tag tg ON tg.id = e.tag_id AND tg.removed_at IS NULL
    JOIN analytics_repository r ON r.id = tg.repository_id AND r.registry_id = %(registry)s
    JOIN analytics_manifest cur ON cur.id = tg.manifest_id AND cur.digest <> e.old_digest
    ORDER BY n.base_id, tg.id, e.seen_at DESC
),
sized AS (
    SELECT s.holding_id, m.size + coalesce(cb.size, 0) + m.layers_size AS bytes
    FROM stale s JOIN analytics_manifest m ON m.id = s.manifest_id
    LEFT JOIN analytics_blob cb ON cb.id = m.config_id
)
SELECT mv.repository, mv.tag, mv.old_digest, mv.new_digest, mv.seen_at,
    count(s.holding_id), coalesce(sum(z.bytes), 0),
    array_agg(s.holding_id || ' ' || s.repository || ' ' || m.digest ORDER BY s.holding_id),
    coalesce((SELECT array_agg(h.place ORDER BY h.place) FROM (
        SELECT r2.name || ':' || t2.name AS place FROM analytics_manifest om
        JOIN analytics_tag t2 ON t2.manifest_id = om.id AND t2.removed_at IS NULL
        JOIN analytics_repository r2 ON r2.id = t2.repository_id AND r2.registry_id = %(registry)s
        WHERE om.digest = mv.old_digest ORDER BY 1 LIMIT %(still_limit)s) h), '{}')
FROM moves mv
JOIN stale s ON s.base_id = mv.base_id
JOIN sized z ON z.holding_id = s.holding_id
JOIN analytics_manifest m ON m.id = s.manifest_id
GROUP BY mv.repository, mv.tag, mv.old_digest, mv.new_digest, mv.seen_at
ORDER BY count(s.holding_id) DESC, mv.repository, mv.tag, mv.old_digest, mv.new_digest, mv.seen_at
LIMIT %(limit)s OFFSET %(offset)s
"""


# A registry's rows as last materialized (`analytics.ingest.answers`): a range of the (registry, rank) index.
_STALE_MAINTAINED_SQL = """
SELECT repository, tag, old_digest, new_digest, moved_at, images, image_bytes, {affected}, still_tagged
FROM analytics_registrystalebase
WHERE registry_id = %(registry)s AND rank >= %(offset)s {below}
ORDER BY rank
"""


def stale_bases(
    *, registry_id: int, limit: int | None = None, offset: int = 0, affected_limit: int | None = None
) -> list[StaleBase]:
    """Tagged images whose base is no longer the current digest of the tag that named it (it moved).

    The base is looked for among every manifest the registry held, tagged or not; it is stale when
    a tag that once named it (or an index listing it) now names another digest, even while other tags
    still name it (a mirror, a pinned copy: `still_tagged`, the first `STILL_TAGGED_LIMIT`). One row
    per moved tag, with the images built on its old digest; most images first, then
    `limit` rows from `offset` (all without a limit), each with its first `affected_limit` affected
    images (all without one; `images` counts them all).

    Read from the registry's materialized rows when they are current (a page is an index range); else
    computed (`stale_bases_found`), the same answer.
    """
    if answers_stale(registry_ids=[registry_id], answer=STALE_BASES):
        rows = stale_bases_found(registry_id=registry_id, limit=limit, offset=offset)
        if affected_limit is None:
            return rows
        return [dataclasses.replace(r, affected=r.affected[:affected_limit]) for r in rows]
    sql = _STALE_MAINTAINED_SQL.format(
        affected="affected" if affected_limit is None else "affected[1:%(affected)s]",
        below="" if limit is None else "AND rank < %(offset)s + %(limit)s",
    )
    params = {"registry": registry_id, "offset": offset, "limit": limit, "affected": affected_limit}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return _stale_rows(cursor.fetchall())


def stale_bases_found(*, registry_id: int, limit: int | None = None, offset: int = 0) -> list[StaleBase]:
    """`stale_bases` computed: starts from the registry's tag moves, so it costs the moves and the images
    built on their old digests, not the registry (seconds at a million images, hence materialized)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(_STALE_REGISTRY_BUILT, {"registry": registry_id})
        built = [row[0] for row in cursor.fetchall()]
    params = {"registry": registry_id, "built": built, "limit": limit, "offset": offset}
    return _stale(_STALE_BUILT_IMAGES, params)


def stale_bases_computed(*, registry_id: int) -> list[StaleBase]:
    """`stale_bases` looking at every tagged image of the registry (costs the registry)."""
    return _stale(_STALE_ALL_IMAGES, {"registry": registry_id, "limit": None, "offset": 0})


def image_stale_base(*, holding: RepositoryManifest) -> list[StaleBase]:
    """`stale_bases` for one image: the moved tags that named its base (none when its base is current,
    it has none, or it is untagged), each with this image alone as `affected`. A few index probes."""
    params = {
        "registry": holding.repository.registry_id,
        "holding": holding.id,
        "limit": None,
        "offset": 0,
    }
    return _stale(_STALE_ONE_IMAGE, params, jit=True)  # its plan is too cheap to be compiled


def _stale(imgs: str, params: dict[str, object], *, jit: bool = False) -> list[StaleBase]:
    # The planner's estimate of the lateral base lookup is orders of magnitude too high, enough for JIT
    # compilation, which then takes longer than the query (1.7 s of 1.8 s at 20,000 images).
    with transaction.atomic() if not jit else nullcontext(), connection.cursor() as cursor:
        if not jit:
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(_STALE_IMAGES_SQL.format(imgs=imgs), params)
        stale = cursor.fetchall()
        if not stale:
            return []
        holdings, manifests, repositories, bases = (list(c) for c in zip(*stale, strict=True))
        cursor.execute(
            _STALE_ROWS_SQL,
            {
                **params,
                "holdings": holdings,
                "manifests": manifests,
                "repositories": repositories,
                "bases": bases,
                "still_limit": STILL_TAGGED_LIMIT,
            },
        )
        return _stale_rows(cursor.fetchall())


def _stale_rows(rows: list[tuple[Any, ...]]) -> list[StaleBase]:
    out = []
    for repo, tag, old, new, seen_at, n, size, affected, still_tagged in rows:
        parsed = tuple((int(h), r, d) for h, r, d in (a.split(" ", 2) for a in affected))
        out.append(StaleBase(repo, tag, old, new, seen_at, n, int(size), parsed, tuple(still_tagged)))
    return out
