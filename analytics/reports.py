"""The read side: what is shared, what it costs, what deduplication saves (DESIGN section 3).

A scope is a set of held manifests: `RepositoryManifest` rows, present ones only unless asked. An image
is a single-platform manifest in one repository. Registry figures share by blob digest, as a registry
stores them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery

from analytics.models import (
    Blob,
    HistoryEntry,
    Manifest,
    ManifestLayer,
    Repository,
    RepositoryManifest,
    Tag,
)
from workers.registry.records import FOREIGN_LAYER_TYPES


@dataclass(frozen=True)
class Scope:
    """Which held manifests a figure is about. Empty fields mean "all"."""

    registry_id: int | None = None
    namespace: str | None = None  # a repository path prefix, e.g. "team" or "team/sub"
    repository_id: int | None = None
    include_untagged: bool = False
    # Filters on top of the place: a current tag matching a glob names the manifest (directly or
    # through a tagged index); config labels contain every key=value; platform os/arch[/variant];
    # the holding was last seen by a scan before / at-or-after a time.
    tag_glob: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    platform: str | None = None
    last_seen_before: datetime | None = None
    last_seen_after: datetime | None = None

    def describe(self) -> dict[str, object]:
        """The non-default fields, JSON-ready: what the answer says it was computed over."""
        out: dict[str, object] = {}
        for key, value in asdict(self).items():
            if value in (None, False, ()):
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif key == "labels":
                value = dict(value)
            out[key] = value
        return out

    def _platform_parts(self) -> list[tuple[str, str]]:
        parts = (self.platform or "").strip("/").split("/")
        return [(f, v) for f, v in zip(("os", "architecture", "variant"), parts, strict=False) if v]

    def where(self, alias_rm: str = "rm", alias_r: str = "r") -> tuple[str, list[object]]:
        clauses, params = ["TRUE"], []
        if not self.include_untagged:
            clauses.append(f"{alias_rm}.present")
        if self.registry_id is not None:
            clauses.append(f"{alias_r}.registry_id = %s")
            params.append(self.registry_id)
        if self.repository_id is not None:
            clauses.append(f"{alias_r}.id = %s")
            params.append(self.repository_id)
        if self.namespace:
            ns = self.namespace.strip("/")
            clauses.append(f"({alias_r}.name = %s OR {alias_r}.name LIKE %s)")
            params += [ns, ns.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"]
        if self.tag_glob:
            # Two probes by manifest (a tag naming it, or a tag naming an index listing it), each on
            # the tag's manifest index; one EXISTS with the OR inside would read every tag of the
            # holding's repository for each holding (a summary of 12% of a million images: 134 s, now 6 s).
            clauses.append(
                f"""(EXISTS (SELECT 1 FROM analytics_tag t WHERE t.manifest_id = {alias_rm}.manifest_id
                    AND t.repository_id = {alias_rm}.repository_id AND t.removed_at IS NULL AND t.name ~ %s)
                OR EXISTS (SELECT 1 FROM analytics_indexentry e
                    JOIN analytics_tag t ON t.manifest_id = e.index_id
                    WHERE e.child_id = {alias_rm}.manifest_id AND t.repository_id = {alias_rm}.repository_id
                    AND t.removed_at IS NULL AND t.name ~ %s))"""
            )
            params += [glob_regex(self.tag_glob)] * 2
        manifest_filters, manifest_params = [], []
        if self.labels:
            manifest_filters.append("labels @> %s::jsonb")
            manifest_params.append(json.dumps(dict(self.labels)))
        for column, value in self._platform_parts():
            manifest_filters.append(f"{column} = %s")
            manifest_params.append(value)
        if manifest_filters:
            clauses.append(
                f"{alias_rm}.manifest_id IN (SELECT id FROM analytics_manifest WHERE "
                + " AND ".join(manifest_filters)
                + ")"
            )
            params += manifest_params
        if self.last_seen_before is not None:
            clauses.append(f"{alias_rm}.last_seen < %s")
            params.append(self.last_seen_before)
        if self.last_seen_after is not None:
            clauses.append(f"{alias_rm}.last_seen >= %s")
            params.append(self.last_seen_after)
        return " AND ".join(clauses), params

    def holdings(self) -> QuerySet[RepositoryManifest]:
        qs = RepositoryManifest.objects.all()
        if not self.include_untagged:
            qs = qs.filter(present=True)
        if self.registry_id is not None:
            qs = qs.filter(repository__registry_id=self.registry_id)
        if self.repository_id is not None:
            qs = qs.filter(repository_id=self.repository_id)
        if self.namespace:
            ns = self.namespace.strip("/")
            qs = qs.filter(Q(repository__name=ns) | Q(repository__name__startswith=ns + "/"))
        if self.tag_glob:
            tags = Tag.objects.filter(
                repository_id=OuterRef("repository_id"),
                removed_at=None,
                name__regex=glob_regex(self.tag_glob),
            )
            qs = qs.filter(
                Q(Exists(tags.filter(manifest_id=OuterRef("manifest_id"))))
                | Q(Exists(tags.filter(manifest__entries__child_id=OuterRef("manifest_id"))))
            )
        if self.labels:
            qs = qs.filter(manifest__labels__contains=dict(self.labels))
        for column, value in self._platform_parts():
            qs = qs.filter(**{f"manifest__{column}": value})
        if self.last_seen_before is not None:
            qs = qs.filter(last_seen__lt=self.last_seen_before)
        if self.last_seen_after is not None:
            qs = qs.filter(last_seen__gte=self.last_seen_after)
        return qs


def glob_regex(pattern: str) -> str:
    """A shell glob (`*`, `?`, `[...]`) as an anchored PostgreSQL regular expression."""
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + "$"


def scope_resolve(
    *,
    registry: str | None = None,
    namespace: str | None = None,
    repository: str | None = None,
    include_untagged: bool = False,
    tag_glob: str | None = None,
    labels: dict[str, str] | None = None,
    platform: str | None = None,
    last_seen_before: datetime | None = None,
    last_seen_after: datetime | None = None,
) -> Scope:
    """Build a scope from user-facing names: a registry by name, host:port or URL; a repository name."""
    from analytics.services import registry_lookup  # local: services import reports

    reg = registry_lookup(registry) if registry else None
    repo_id = None
    if repository:
        qs = Repository.objects.filter(name=repository.strip("/"))
        if reg is not None:
            qs = qs.filter(registry=reg)
        repos = list(qs[:2])
        if not repos:
            from analytics.services import NotFound

            raise NotFound(f"no repository named {repository!r}" + (f" in {reg}" if reg else ""))
        if len(repos) > 1:
            from analytics.services import InvalidRequest

            raise InvalidRequest(f"repository {repository!r} exists in several registries; name the registry")
        repo_id = repos[0].id
    return Scope(
        registry_id=reg.id if reg else None,
        namespace=namespace or None,
        repository_id=repo_id,
        include_untagged=include_untagged,
        tag_glob=tag_glob or None,
        labels=tuple(sorted((labels or {}).items())),
        platform=platform or None,
        last_seen_before=last_seen_before,
        last_seen_after=last_seen_after,
    )


@dataclass(frozen=True)
class DedupSummary:
    images: int
    distinct_layers: int
    logical_bytes: int
    stored_bytes: int
    saved_bytes: int
    dedup_ratio: float
    layers_logical_bytes: int
    layers_stored_bytes: int
    manifests: int
    indexes: int
    repositories: int
    tagged_only: bool
    scope: dict[str, object] = field(default_factory=dict)
    # foreign / non-distributable layers: named by images, stored elsewhere, so in neither figure above
    foreign_bytes: int = 0
    # Uncompressed figures (what nodes unpack), over the layers whose uncompressed size is known (from
    # an engine's pull-through or a deep scan); never added to the compressed ones. Null when none is.
    # `uncompressed_known_compressed_bytes` is those same layers' compressed stored bytes, to compare.
    uncompressed_known_layers: int = 0
    uncompressed_coverage: float = 0.0  # known / distinct_layers
    uncompressed_logical_bytes: int | None = None
    uncompressed_stored_bytes: int | None = None
    uncompressed_known_compressed_bytes: int | None = None

    SUMMARY_FIELDS = (
        "images",
        "distinct_layers",
        "logical_bytes",
        "stored_bytes",
        "saved_bytes",
        "dedup_ratio",
    )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.SUMMARY_FIELDS}


_SUMMARY_SQL = """
WITH held AS (
    SELECT rm.repository_id, m.id AS manifest_id, m.kind, m.size, m.config_id
    FROM analytics_repositorymanifest rm
    JOIN analytics_repository r ON r.id = rm.repository_id
    JOIN analytics_manifest m ON m.id = rm.manifest_id
    WHERE {where}
),
refs AS (
    -- distinct blobs per holding: a layer listed twice in one manifest is stored once
    SELECT DISTINCT h.repository_id, h.manifest_id, ml.blob_id, TRUE AS is_layer
    FROM held h JOIN analytics_manifestlayer ml ON ml.manifest_id = h.manifest_id
    UNION
    SELECT h.repository_id, h.manifest_id, h.config_id, FALSE
    FROM held h WHERE h.config_id IS NOT NULL
),
blobs AS (
    SELECT refs.*, b.size, b.uncompressed_size, b.media_type IN ({foreign}) AS is_foreign
    FROM refs JOIN analytics_blob b ON b.id = refs.blob_id
),
sized AS (
    SELECT repository_id, manifest_id, blob_id, is_layer, size, uncompressed_size FROM blobs
    WHERE NOT is_foreign
),
known AS (
    -- layers whose uncompressed size is known (engine linking, deep scan): the uncompressed_* fields
    SELECT blob_id, size, uncompressed_size FROM sized WHERE is_layer AND uncompressed_size IS NOT NULL
)
SELECT
    (SELECT count(*) FROM held WHERE kind = 'image'),
    (SELECT count(*) FROM held),
    (SELECT count(*) FROM held WHERE kind = 'index'),
    (SELECT count(DISTINCT repository_id) FROM held),
    (SELECT count(DISTINCT blob_id) FROM sized WHERE is_layer),
    (SELECT coalesce(sum(size), 0) FROM held) + (SELECT coalesce(sum(size), 0) FROM sized),
    (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT manifest_id, size FROM held) m)
      + (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT blob_id, size FROM sized) b),
    (SELECT coalesce(sum(size), 0) FROM sized WHERE is_layer),
    (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT blob_id, size FROM sized WHERE is_layer) l),
    (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT blob_id, size FROM blobs WHERE is_foreign) f),
    (SELECT count(DISTINCT blob_id) FROM known),
    (SELECT coalesce(sum(uncompressed_size), 0) FROM known),
    (SELECT coalesce(sum(uncompressed_size), 0)
        FROM (SELECT DISTINCT blob_id, uncompressed_size FROM known) u),
    (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT blob_id, size FROM known) c)
"""
_FOREIGN_SQL = ", ".join(f"'{t}'" for t in sorted(FOREIGN_LAYER_TYPES))


def _uncompressed_fields(
    distinct_layers: int, known: int, logical: int, stored: int, compressed: int
) -> dict[str, object]:
    """The `uncompressed_*` fields of a summary (see DedupSummary)."""
    if not known:
        return {}
    return {
        "uncompressed_known_layers": known,
        "uncompressed_coverage": round(known / distinct_layers, 4) if distinct_layers else 0.0,
        "uncompressed_logical_bytes": logical,
        "uncompressed_stored_bytes": stored,
        "uncompressed_known_compressed_bytes": compressed,
    }


def _maintained_row(scope: Scope) -> dict[str, int] | None:
    """The maintained row answering a plain registry, repository or namespace scope, if the scope is one.

    A namespace of one registry is served by its `NamespaceFigures` row (strict path prefixes only);
    a namespace that is also a repository's exact name, or spans registries, is computed.
    """
    from analytics.models import NamespaceFigures, ScopeFigures

    namespace = namespace_rows_scope(scope) if scope.registry_id is not None else None
    if namespace is not None:
        _, ns = namespace
        return NamespaceFigures.objects.filter(registry_id=scope.registry_id, namespace=ns).values().first()
    plain = Scope(registry_id=scope.registry_id, repository_id=scope.repository_id)
    if scope != plain or (scope.registry_id is None and scope.repository_id is None):
        return None
    if scope.repository_id is not None:
        qs = ScopeFigures.objects.filter(repository_id=scope.repository_id)
        if scope.registry_id is not None:
            qs = qs.filter(registry_id=scope.registry_id)
    else:
        qs = ScopeFigures.objects.filter(registry_id=scope.registry_id, repository=None)
    row = qs.values().first()
    if row is None:  # never scanned (or figures not built yet): compute
        return None
    return row


def namespace_rows_scope(scope: Scope) -> tuple[list[int], str] | None:
    """(registries, namespace) when the maintained namespace rows answer `scope` exactly: a plain
    namespace (tagged, no filter) of one registry or of all. The rows count strict path prefixes, so not
    when a repository is named like the namespace itself (it belongs to the scope, not to the rows)."""
    from analytics.models import Registry

    ns = (scope.namespace or "").strip("/")
    if not ns or scope != Scope(registry_id=scope.registry_id, namespace=scope.namespace):
        return None
    if scope.registry_id is not None:
        registries = [scope.registry_id]
    else:
        registries = list(Registry.objects.values_list("id", flat=True))
    if Repository.objects.filter(registry_id__in=registries, name=ns).exists():
        return None
    return registries, ns


def dedup_summary(*, scope: Scope) -> DedupSummary:
    """Images, distinct layers, logical, stored and saved bytes and the ratio, for one scope.

    A plain registry, repository or namespace scope (tagged only, no filter) reads the figures ingest
    maintains (`analytics.figures`); any other scope is computed from the holdings.
    """
    row = _maintained_row(scope)
    if row is None:
        return dedup_summary_computed(scope=scope)
    logical, stored = int(row["logical_bytes"]), int(row["stored_bytes"])
    return DedupSummary(
        images=row["images"],
        distinct_layers=row["distinct_layers"],
        logical_bytes=logical,
        stored_bytes=stored,
        saved_bytes=logical - stored,
        dedup_ratio=round(logical / stored, 4) if stored else 1.0,
        layers_logical_bytes=int(row["layers_logical_bytes"]),
        layers_stored_bytes=int(row["layers_stored_bytes"]),
        manifests=row["manifests"],
        indexes=row["indexes"],
        repositories=row["repositories"],
        tagged_only=True,
        scope=scope.describe(),
        foreign_bytes=int(row["foreign_bytes"]),
        # maintained too (analytics.figures, and a trigger when a blob's uncompressed size arrives)
        **_uncompressed_fields(
            row["distinct_layers"],
            int(row["uncompressed_known_layers"]),
            int(row["uncompressed_logical_bytes"]),
            int(row["uncompressed_stored_bytes"]),
            int(row["uncompressed_known_compressed_bytes"]),
        ),
    )


def dedup_summary_computed(*, scope: Scope) -> DedupSummary:
    """`dedup_summary` recomputed from the holdings: any scope, cost in proportion to it."""
    where, params = scope.where()
    with connection.cursor() as cursor:
        cursor.execute(_SUMMARY_SQL.format(where=where, foreign=_FOREIGN_SQL), params)
        (images, manifests, indexes, repos, layers, logical, stored, l_logical, l_stored, foreign, *unc) = (
            cursor.fetchone()
        )
    logical, stored = int(logical), int(stored)
    return DedupSummary(
        images=images,
        distinct_layers=layers,
        logical_bytes=logical,
        stored_bytes=stored,
        saved_bytes=logical - stored,
        dedup_ratio=round(logical / stored, 4) if stored else 1.0,
        layers_logical_bytes=int(l_logical),
        layers_stored_bytes=int(l_stored),
        manifests=manifests,
        indexes=indexes,
        repositories=repos,
        tagged_only=not scope.include_untagged,
        scope=scope.describe(),
        foreign_bytes=int(foreign),
        **_uncompressed_fields(layers, *(int(v) for v in unc)),
    )


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
    if scope is None:
        from analytics.queries.layers import image_sizes_maintained

        maintained = image_sizes_maintained(holding_ids=list(holding_ids))
        if maintained is not None:
            return {h: ImageSizes(*values) for h, values in maintained.items()}
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


def image_tags(*, holdings: list[RepositoryManifest]) -> dict[int, list[str]]:
    """Current tags naming each image: its own, and those of tagged indexes listing it (`tag@platform`)."""
    result: dict[int, list[str]] = {h.id: [] for h in holdings}
    by_key = {(h.repository_id, h.manifest_id): h.id for h in holdings}
    if not holdings:
        return result
    repo_ids = {h.repository_id for h in holdings}
    manifest_ids = {h.manifest_id for h in holdings}
    for repo_id, manifest_id, name in Tag.objects.filter(
        repository_id__in=repo_ids, manifest_id__in=manifest_ids, removed_at=None
    ).values_list("repository_id", "manifest_id", "name"):
        if (repo_id, manifest_id) in by_key:
            result[by_key[(repo_id, manifest_id)]].append(name)
    for repo_id, child_id, name in Tag.objects.filter(
        repository_id__in=repo_ids, removed_at=None, manifest__entries__child_id__in=manifest_ids
    ).values_list("repository_id", "manifest__entries__child_id", "name"):
        if (repo_id, child_id) in by_key:
            result[by_key[(repo_id, child_id)]].append(f"{name} (index)")
    for names in result.values():
        names.sort()
    return result


def _created_by_subquery() -> Subquery:
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
        .annotate(created_by=_created_by_subquery())
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


def layer_ranking(*, scope: Scope) -> QuerySet[Blob]:
    """Layer blobs in a scope with how many images and repositories hold them and the bytes sharing saves."""
    holding_filter = Q(manifest_layers__manifest__holdings__in=scope.holdings())
    first_line = ManifestLayer.objects.filter(blob_id=OuterRef("id")).annotate(cb=_created_by_subquery())
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
