"""Layers at registry scale, read from the maintained counts of `analytics.ingest.figures`.

Every list is a keyset page (`after` = the last row's sort key, `limit + 1` rows read to know whether a
next page exists): no `count(*)` and no OFFSET, so the first and the thousandth page of a layer held by
100,000 images cost the same index range scan. Counts come from `RegistryBlob` (maintained by ingest).
Tagged (present) holdings only; artifacts and indexes never count as images.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery

from analytics.errors import NotFound
from analytics.models import Blob, ManifestLayer, RepositoryManifest
from analytics.selectors.images import created_by_subquery, images
from analytics.selectors.scope import Scope


def _rows(sql: str, params: dict[str, object]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@dataclass(frozen=True)
class RankedLayer:
    blob_id: int
    digest: str
    size: int
    diff_id: str
    images: int
    repositories: int
    saved_bytes: int
    created_by: str | None


# The history line of the oldest manifest (lowest id) listing the layer: a deterministic choice.
_CREATED_BY = """
SELECT b.id, (
    SELECT h.created_by FROM analytics_manifestlayer ml
    JOIN analytics_manifest m ON m.id = ml.manifest_id
    JOIN analytics_historyentry h ON h.config_id = m.config_id AND h.layer_position = ml.position
    WHERE ml.blob_id = b.id ORDER BY ml.manifest_id, ml.position LIMIT 1
) FROM analytics_blob b WHERE b.id = ANY(%(ids)s)
"""


def layers_created_by(*, blob_ids: list[int]) -> dict[int, str | None]:
    """`created_by` per layer, from the oldest manifest holding it (one index probe per layer)."""
    return dict(_rows(_CREATED_BY, {"ids": list(blob_ids)})) if blob_ids else {}


_TOP = """
SELECT rb.blob_id, b.digest, b.size, b.diff_id, rb.images, rb.repositories,
    rb.size * (rb.images - 1) AS saved
FROM analytics_registryblob rb JOIN analytics_blob b ON b.id = rb.blob_id
WHERE rb.registry_id = %(registry)s AND rb.images > 0 AND {after}
ORDER BY {order}
LIMIT %(limit)s
"""


def layer_top(
    *, registry_id: int, order: str = "images", after: tuple[int, int] | None = None, limit: int = 50
) -> tuple[list[RankedLayer], tuple[int, int] | None]:
    """Layers of a registry ranked by images holding them (`order="images"`) or bytes saved.

    Returns the page and the key of the next page (None on the last). By images, the order is an
    index range scan (`registry_blob_rank`); by bytes saved, one over `registry_blob_saved`
    (`RegistryBlob.size * (images - 1)`, the size copied from the blob).
    """
    if order == "images":
        value = "rb.images"
    elif order == "saved_bytes":
        value = "rb.size * (rb.images - 1)"  # the expression of the registry_blob_saved index
    else:
        raise ValueError(f"unknown order {order!r}")
    params: dict[str, object] = {"registry": registry_id, "limit": limit + 1}
    if after is not None:
        params.update(k0=after[0], k1=after[1])
    # spelled out (not a row comparison) so the planner walks the (registry, images DESC, blob) index
    key = f"({value} < %(k0)s OR ({value} = %(k0)s AND rb.blob_id > %(k1)s))"
    rows = _rows(_TOP.format(after=key if after else "TRUE", order=f"{value} DESC, rb.blob_id"), params)
    more = len(rows) > limit
    rows = rows[:limit]
    lines = layers_created_by(blob_ids=[r[0] for r in rows])
    page = [RankedLayer(*r[:6], saved_bytes=int(r[6]), created_by=lines.get(r[0])) for r in rows]
    if not more or not page:
        return page, None
    last = page[-1]
    return page, ((last.images if order == "images" else last.saved_bytes), last.blob_id)


_HOLDERS = """
SELECT rm.id, ml.manifest_id
FROM analytics_manifestlayer ml
JOIN analytics_manifest m ON m.id = ml.manifest_id AND m.kind = 'image'
JOIN analytics_repositorymanifest rm ON rm.manifest_id = ml.manifest_id AND rm.present
JOIN analytics_repository r ON r.id = rm.repository_id {registry}
WHERE ml.blob_id = %(blob)s AND {after}
ORDER BY ml.manifest_id, rm.id
LIMIT %(limit)s
"""


def layer_holders(
    *, blob_id: int, registry_id: int | None = None, after: tuple[int, int] | None = None, limit: int = 50
) -> tuple[list[int], tuple[int, int] | None]:
    """Holding ids (images) listing a layer, oldest manifest first, as a keyset page.

    Walks `manifest_layer_by_blob (blob_id, manifest_id)` in order and stops after `limit + 1`
    rows, however many images hold the layer. A layer listed twice in one manifest appears once.
    """
    params: dict[str, object] = {"blob": blob_id, "limit": limit + 1, "registry": registry_id}
    key = "(ml.manifest_id, rm.id) > (%(k0)s, %(k1)s)" if after else "TRUE"
    if after:
        params.update(k0=after[0], k1=after[1])
    reg = "AND r.registry_id = %(registry)s" if registry_id is not None else ""
    rows, seen = [], set()
    for holding_id, manifest_id in _rows(_HOLDERS.format(registry=reg, after=key), params):
        if holding_id not in seen:
            seen.add(holding_id)
            rows.append((holding_id, manifest_id))
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = (rows[-1][1], rows[-1][0]) if more and rows else None
    return [h for h, _ in rows], nxt


def layer_counts(*, blob_id: int, registry_id: int | None = None) -> tuple[int, int]:
    """(images, repositories) holding a layer: maintained, one row per registry."""
    reg = "AND registry_id = %(registry)s" if registry_id is not None else ""
    rows = _rows(
        f"""SELECT coalesce(sum(images), 0), coalesce(sum(repositories), 0) FROM analytics_registryblob
            WHERE blob_id = %(blob)s {reg}""",
        {"blob": blob_id, "registry": registry_id},
    )
    return int(rows[0][0]), int(rows[0][1])


@dataclass(frozen=True)
class LayerRepository:
    repository_id: int
    registry_id: int
    name: str
    images: int


def layer_repositories(
    *, blob_id: int, registry_id: int | None = None, after: int | None = None, limit: int = 50
) -> tuple[list[LayerRepository], int | None]:
    """Repositories whose images list a layer, with how many images each (keyset on repository id)."""
    reg = "AND r.registry_id = %(registry)s" if registry_id is not None else ""
    rows = _rows(
        f"""SELECT rb.repository_id, r.registry_id, r.name, rb.images FROM analytics_repositoryblob rb
            JOIN analytics_repository r ON r.id = rb.repository_id {reg}
            WHERE rb.blob_id = %(blob)s AND rb.repository_id > %(after)s AND rb.images > 0
            ORDER BY rb.repository_id LIMIT %(limit)s""",
        {"blob": blob_id, "registry": registry_id, "after": after or 0, "limit": limit + 1},
    )
    page = [LayerRepository(*r) for r in rows[:limit]]
    return page, (page[-1].repository_id if len(rows) > limit and page else None)


def layer_blob_id(*, digest: str) -> int:
    """The blob id of a digest; `NotFound` (404) when no blob has it."""
    rows = _rows("SELECT id FROM analytics_blob WHERE digest = %(d)s", {"d": digest})
    if not rows:
        raise NotFound(f"no layer {digest!r}")
    return int(rows[0][0])


# The ranking's default order read from the maintained counts, per registry: most images first, then
# most bytes saved, then blob id, all spelled ascending (times -1, as the index spells them) so a row
# comparison walks `registry_blob_ranking` (registry, images * -1, size * (images - 1) * -1, blob)
# WHERE images > 0 from the key on. With no registry,
# each registry's first rows after the key are merged (a layer counts once per registry: the registry
# rule), the registry id breaking ties. A blob id is an integer, so `blob > k2 - 1` is `blob >= k2`: the
# registries after the key's own include the key's layer.
_RANKING_SQL = """
SELECT x.* FROM unnest(%(registries)s::int[]) AS reg(id) CROSS JOIN LATERAL (
    SELECT rb.registry_id, rb.blob_id, rb.images, rb.repositories, rb.size * (rb.images - 1) AS saved
    FROM analytics_registryblob rb
    WHERE rb.registry_id = reg.id AND rb.images > 0 AND {after}
    ORDER BY rb.images * -1, rb.size * (rb.images - 1) * -1, rb.blob_id
    LIMIT %(limit)s
) x
ORDER BY x.images DESC, x.saved DESC, x.blob_id, x.registry_id
LIMIT %(limit)s
"""
_RANKING_AFTER = """(rb.images * -1, rb.size * (rb.images - 1) * -1, rb.blob_id)
    > (-%(k0)s::int, -%(k1)s::bigint, %(k2)s - (reg.id > %(k3)s)::int)"""


def _first_lines(blob_ids: list[int]) -> QuerySet[Blob]:
    """The page's blobs with `created_by` as `layer_ranking` finds it (any manifest's line for the layer)."""
    first_line = ManifestLayer.objects.filter(blob_id=OuterRef("id")).annotate(cb=created_by_subquery())
    return Blob.objects.filter(id__in=blob_ids).annotate(
        created_by=Subquery(first_line.exclude(cb=None).values("cb")[:1])
    )


def layer_ranking_maintained(
    *, registry_ids: list[int], after: tuple[int, ...] | None = None, limit: int = 50
) -> tuple[list[Blob], tuple[int, int, int, int] | None]:
    """`layer_ranking`'s default order for plain registries, as a keyset page over `RegistryBlob`.

    Each row is a layer of one registry with the registry's maintained counts (`images`: tagged image
    holdings listing it; `repositories`; `saved_bytes` = size * (images - 1)), the Blob with `images`,
    `repositories`, `saved_bytes`, `created_by` and `registry_id` set. The key is (images, saved bytes,
    blob id, registry id) of the page's last row; None on the last page. Costs the page, not the registry.
    """
    params: dict[str, object] = {"registries": list(registry_ids), "limit": limit + 1}
    if after is not None:
        params.update(k0=after[0], k1=after[1], k2=after[2], k3=after[3])
    rows = _rows(_RANKING_SQL.format(after=_RANKING_AFTER if after else "TRUE"), params)
    more = len(rows) > limit
    rows = rows[:limit]
    blobs = {b.id: b for b in _first_lines([r[1] for r in rows])}
    page = []
    for registry_id, blob_id, n_images, n_repositories, saved in rows:
        blob = copy.copy(blobs[blob_id])  # one blob may rank in several registries
        blob.registry_id, blob.images, blob.repositories = registry_id, n_images, n_repositories
        blob.saved_bytes = int(saved)
        page.append(blob)
    if not more or not page:
        return page, None
    last = page[-1]
    return page, (last.images, last.saved_bytes, last.id, last.registry_id)


def layer_maintained(*, digest: str, registry_id: int | None = None) -> Blob:
    """One layer as `layer_ranking` ranks it in a plain registry (or every registry), from the maintained
    counts: the Blob with `images`, `repositories`, `saved_bytes` and `created_by` set. A layer no tagged
    image of the scope lists is `NotFound`, as in the computed ranking. Costs one row per registry,
    whatever the layer's fan-out."""
    blob_id = layer_blob_id(digest=digest)
    n_images, n_repositories = layer_counts(blob_id=blob_id, registry_id=registry_id)
    if n_images == 0:
        raise NotFound(f"no layer {digest!r} in this scope")
    blob = _first_lines([blob_id]).get()
    blob.images, blob.repositories = n_images, n_repositories
    blob.saved_bytes = blob.size * (n_images - 1)
    return blob


def layer_ranking(*, scope: Scope) -> QuerySet[Blob]:
    """Layer blobs in a scope with how many images and repositories hold them and the bytes sharing saves."""
    holding_filter = Q(manifest_layers__manifest__holdings__in=scope.holdings())
    first_line = ManifestLayer.objects.filter(blob_id=OuterRef("id")).annotate(cb=created_by_subquery())
    return (
        Blob.objects.filter(holding_filter)
        .annotate(
            images=Count("manifest_layers__manifest__holdings", filter=holding_filter, distinct=True),
            repositories=Count(
                "manifest_layers__manifest__holdings__repository", filter=holding_filter, distinct=True
            ),
        )
        .annotate(
            saved_bytes=F("size") * (F("images") - 1),
            created_by=Subquery(first_line.exclude(cb=None).values("cb")[:1]),
        )
        .order_by("-images", "-saved_bytes", "digest")
    )


def layer_images(*, digest: str, scope: Scope) -> QuerySet[RepositoryManifest]:
    """The images in a scope that hold a layer, by the layer's digest."""
    return images(scope=scope).filter(manifest__manifest_layers__blob__digest=digest).distinct()
