"""Images (single-platform manifests per repository): lists, tags, layers, history, and their size,
shared and unique bytes as `docker system df -v` defines them."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from analytics.models import HistoryEntry, Manifest, ManifestLayer, RepositoryManifest, Tag
from analytics.selectors.scope import Scope


@dataclass(frozen=True)
class ImageSizes:
    size_bytes: int
    shared_bytes: int
    unique_bytes: int
    layers_size_bytes: int
    layers_shared_bytes: int
    layers_unique_bytes: int


_IMAGE_SIZES_SQL = """
WITH page AS (
    SELECT rm.id AS holding_id, r.registry_id, m.id AS manifest_id, m.size AS manifest_size, m.config_id
    FROM analytics_repositorymanifest rm
    JOIN analytics_repository r ON r.id = rm.repository_id
    JOIN analytics_manifest m ON m.id = rm.manifest_id
    WHERE rm.id = ANY(%s)
),
page_refs AS (
    SELECT DISTINCT p.holding_id, p.registry_id, 'b' || ml.blob_id AS ref, b.size, TRUE AS is_layer
    FROM page p JOIN analytics_manifestlayer ml ON ml.manifest_id = p.manifest_id
    JOIN analytics_blob b ON b.id = ml.blob_id
    UNION
    SELECT p.holding_id, p.registry_id, 'b' || b.id, b.size, FALSE
    FROM page p JOIN analytics_blob b ON b.id = p.config_id
    UNION
    SELECT p.holding_id, p.registry_id, 'm' || p.manifest_id, p.manifest_size, FALSE FROM page p
),
scope_images AS (
    SELECT rm.id AS holding_id, r.registry_id, m.id AS manifest_id, m.config_id
    FROM analytics_repositorymanifest rm
    JOIN analytics_repository r ON r.id = rm.repository_id
    JOIN analytics_manifest m ON m.id = rm.manifest_id
    WHERE m.kind = 'image' AND {where} AND {registry_match}
),
scope_refs AS (
    SELECT s.holding_id, s.registry_id, 'b' || ml.blob_id AS ref
    FROM scope_images s JOIN analytics_manifestlayer ml ON ml.manifest_id = s.manifest_id
    WHERE ml.blob_id IN (
        SELECT ml2.blob_id FROM page p2 JOIN analytics_manifestlayer ml2 ON ml2.manifest_id = p2.manifest_id
    )
    UNION ALL
    SELECT s.holding_id, s.registry_id, 'b' || s.config_id FROM scope_images s
    WHERE s.config_id IN (SELECT config_id FROM page)
    UNION ALL
    SELECT s.holding_id, s.registry_id, 'm' || s.manifest_id FROM scope_images s
    WHERE s.manifest_id IN (SELECT manifest_id FROM page)
),
holders AS (
    SELECT {group_registry} AS registry_id, ref, count(DISTINCT holding_id) AS n
    FROM scope_refs GROUP BY 1, 2
)
SELECT pr.holding_id,
    sum(pr.size),
    sum(pr.size) FILTER (WHERE coalesce(h.n, 1) > 1),
    sum(pr.size) FILTER (WHERE coalesce(h.n, 1) <= 1),
    sum(pr.size) FILTER (WHERE pr.is_layer),
    sum(pr.size) FILTER (WHERE pr.is_layer AND coalesce(h.n, 1) > 1),
    sum(pr.size) FILTER (WHERE pr.is_layer AND coalesce(h.n, 1) <= 1)
FROM page_refs pr
LEFT JOIN holders h ON h.ref = pr.ref AND {holder_join}
GROUP BY pr.holding_id
"""


def image_sizes(*, holding_ids: list[int], scope: Scope | None = None) -> dict[int, ImageSizes]:
    """Size, shared and unique bytes per image, as `docker system df -v` defines them.

    An image's size counts its manifest, config and layers; a part is shared when another image in
    the scope references the same digest. Without a scope, each image is measured within its own
    registry (tagged images only).
    """
    if not holding_ids:
        return {}
    # A plain registry measures its images within it: their own registry, as with no scope.
    plain_registry = (
        scope is not None and scope.registry_id is not None and scope == Scope(registry_id=scope.registry_id)
    )
    if scope is None or plain_registry:
        registry_id = scope.registry_id if scope is not None else None
        maintained = image_sizes_maintained(holding_ids=list(holding_ids), registry_id=registry_id)
        if maintained is not None:
            return {h: ImageSizes(*values) for h, values in maintained.items()}
    if scope is None:
        where, params = Scope().where()
        sql = _IMAGE_SIZES_SQL.format(
            where=where,
            registry_match="r.registry_id IN (SELECT registry_id FROM page)",
            group_registry="registry_id",
            holder_join="h.registry_id = pr.registry_id",
        )
    else:
        where, params = scope.where()
        sql = _IMAGE_SIZES_SQL.format(
            where=where, registry_match="TRUE", group_registry="0", holder_join="TRUE"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(holding_ids), *params])
        rows = cursor.fetchall()
    return {row[0]: ImageSizes(*(int(v or 0) for v in row[1:])) for row in rows}


def images(*, scope: Scope) -> QuerySet[RepositoryManifest]:
    """Images (single-platform manifests per repository) in a scope."""
    return (
        scope.holdings()
        .filter(manifest__kind="image")
        .select_related("repository__registry", "manifest", "manifest__config")
    )


@dataclass(frozen=True)
class ImageTags:
    """The current tags naming an image: `names`, each once, sorted; `index` those of them naming a
    tagged index that lists the image (a multi-platform tag), rather than the image itself."""

    names: list[str] = field(default_factory=list)
    index: list[str] = field(default_factory=list)


def image_tags(*, holdings: list[RepositoryManifest]) -> dict[int, ImageTags]:
    """Current tags naming each image: its own, and those of tagged indexes listing it (in `index` too)."""
    own: dict[int, set[str]] = {h.id: set() for h in holdings}
    via: dict[int, set[str]] = {h.id: set() for h in holdings}
    by_key = {(h.repository_id, h.manifest_id): h.id for h in holdings}
    if holdings:
        repo_ids = {h.repository_id for h in holdings}
        manifest_ids = {h.manifest_id for h in holdings}
        for repo_id, manifest_id, name in Tag.objects.filter(
            repository_id__in=repo_ids, manifest_id__in=manifest_ids, removed_at=None
        ).values_list("repository_id", "manifest_id", "name"):
            if (repo_id, manifest_id) in by_key:
                own[by_key[(repo_id, manifest_id)]].add(name)
        for repo_id, child_id, name in Tag.objects.filter(
            repository_id__in=repo_ids, removed_at=None, manifest__entries__child_id__in=manifest_ids
        ).values_list("repository_id", "manifest__entries__child_id", "name"):
            if (repo_id, child_id) in by_key:
                via[by_key[(repo_id, child_id)]].add(name)
    return {h: ImageTags(names=sorted(own[h] | via[h]), index=sorted(via[h])) for h in own}


def created_by_subquery() -> Subquery:
    """The history line that produced a layer, from any image config that lists it at that position
    (or from the manifest's own history: schema 1)."""
    return Subquery(
        HistoryEntry.objects.filter(
            Q(config__id=OuterRef("manifest__config_id")) | Q(manifest_id=OuterRef("manifest_id")),
            layer_position=OuterRef("position"),
        ).values("created_by")[:1]
    )


def image_layers(*, manifest_id: int) -> QuerySet[ManifestLayer]:
    """An image's layers bottom to top, each with its blob and the `created_by` that produced it."""
    return (
        ManifestLayer.objects.filter(manifest_id=manifest_id)
        .select_related("blob")
        .annotate(created_by=created_by_subquery())
        .order_by("position")
    )


def image_history(*, manifest_id: int) -> QuerySet[HistoryEntry]:
    """All history entries, empty layers included, oldest first (docker shows newest first).

    The config's, or for a schema 1 image (no config) the manifest's own."""
    config_id = Manifest.objects.filter(id=manifest_id).values("config_id")[:1]
    layer = ManifestLayer.objects.filter(manifest_id=manifest_id, position=OuterRef("layer_position"))
    return (
        HistoryEntry.objects.filter(Q(config_id=Subquery(config_id)) | Q(manifest_id=manifest_id))
        .annotate(
            layer_digest=Subquery(layer.values("blob__digest")[:1]),
            layer_size=Subquery(layer.values("blob__size")[:1]),
        )
        .order_by("position")
    )


_IMAGE_SIZES = """
WITH page AS (
    SELECT rm.id AS holding_id, r.registry_id, m.id AS manifest_id, m.size, m.config_id, rm.present
    FROM analytics_repositorymanifest rm
    JOIN analytics_repository r ON r.id = rm.repository_id
    JOIN analytics_manifest m ON m.id = rm.manifest_id
    WHERE rm.id = ANY(%(ids)s)
),
parts AS (
    SELECT DISTINCT p.holding_id, p.registry_id, ml.blob_id, b.size, TRUE AS is_layer
    FROM page p JOIN analytics_manifestlayer ml ON ml.manifest_id = p.manifest_id
    JOIN analytics_blob b ON b.id = ml.blob_id
    UNION
    SELECT p.holding_id, p.registry_id, b.id, b.size, FALSE
    FROM page p JOIN analytics_blob b ON b.id = p.config_id
),
shared AS (
    SELECT parts.*, CASE WHEN parts.is_layer THEN coalesce(rb.images, 0) > 1
                         ELSE coalesce(rb.refs, 0) > 1 END AS shared
    FROM parts LEFT JOIN analytics_registryblob rb
        ON rb.registry_id = parts.registry_id AND rb.blob_id = parts.blob_id
    UNION ALL
    SELECT p.holding_id, p.registry_id, NULL, p.size, FALSE, coalesce(x.refs, 0) > 1
    FROM page p LEFT JOIN analytics_registrymanifestref x
        ON x.registry_id = p.registry_id AND x.manifest_id = p.manifest_id
)
SELECT holding_id, sum(size), sum(size) FILTER (WHERE shared), sum(size) FILTER (WHERE NOT shared),
    sum(size) FILTER (WHERE is_layer), sum(size) FILTER (WHERE is_layer AND shared),
    sum(size) FILTER (WHERE is_layer AND NOT shared)
FROM shared GROUP BY holding_id
"""


def image_sizes_maintained(
    *, holding_ids: list[int], registry_id: int | None = None
) -> dict[int, tuple[int, ...]] | None:
    """Per-image size, shared and unique bytes within its registry, from the maintained counts.

    A layer is shared when another tagged image of the registry lists it (`RegistryBlob.images`), a
    config or the manifest when another holding references it. Costs the page's layers, never the
    number of images holding them. None when a page image is untagged (its own count is not in the
    maintained figures) or, given `registry_id`, is in another registry: the caller computes those.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT bool_and(rm.present AND (%s::int IS NULL OR r.registry_id = %s::int))
               FROM analytics_repositorymanifest rm JOIN analytics_repository r ON r.id = rm.repository_id
               WHERE rm.id = ANY(%s)""",
            [registry_id, registry_id, holding_ids],
        )
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(_IMAGE_SIZES, {"ids": holding_ids})
        return {row[0]: tuple(int(v or 0) for v in row[1:]) for row in cursor.fetchall()}


def image_get_queryset() -> QuerySet[RepositoryManifest]:
    """Any image by holding id, tagged or not (a retrieve by id should find what a scan once saw)."""
    return images(scope=Scope(include_untagged=True))


def images_with_tag(qs: QuerySet[RepositoryManifest], tag: str) -> QuerySet[RepositoryManifest]:
    """Images a current tag names, directly or through a tagged index listing them."""
    direct = Tag.objects.filter(
        repository_id=OuterRef("repository_id"),
        manifest_id=OuterRef("manifest_id"),
        name=tag,
        removed_at=None,
    )
    via_index = Tag.objects.filter(
        repository_id=OuterRef("repository_id"),
        manifest__entries__child_id=OuterRef("manifest_id"),
        name=tag,
        removed_at=None,
    )
    return qs.filter(Q(Exists(direct)) | Q(Exists(via_index)))
