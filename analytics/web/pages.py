"""What each page shows, composed from the selectors the API already calls, with the API query that
returns the same figures so a script can reproduce the page.

Each page costs a bounded number of queries, whatever the size of the registry: figures come from the
rows ingest maintains, and where the API reads one item at a time (a layer's counts, an image's base) the
page reads all of its items in one statement over the same rows (tests/web/test_page_queries.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection
from django.urls import reverse

from analytics.engines import selectors as engine_reports
from analytics.errors import InvalidRequest, NotFound
from analytics.ingest.answers import answers_refresh
from analytics.models import (
    Engine,
    NamespaceFigures,
    PolicyEvaluation,
    Registry,
    RegistryBlob,
    Repository,
    RepositoryManifest,
    ScopeFigures,
)
from analytics.policies.preview import policy_parse, policy_preview, preview_answer, scope_check
from analytics.selectors import content, whatif
from analytics.selectors.answers import MISSED_SAVINGS
from analytics.selectors.images import (
    ImageTags,
    image_get_queryset,
    image_layers,
    image_sizes,
    image_tags,
    images,
)
from analytics.selectors.layers import layer_top
from analytics.selectors.lineage import BaseImage, image_lineage, image_stale_base
from analytics.selectors.lists import registry_list, registry_lookup, repository_list, tag_list
from analytics.selectors.policies import registry_policy_series
from analytics.selectors.pulls import image_pulls_of, pulls_annotations
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from analytics.selectors.trends import snapshot_series

# The overview ranks the largest repositories and namespaces by their maintained figures.
TOP_BARS = 12
# Each engine's `docker system df` reads its images and layers: the overview draws the first few.
ENGINE_LIMIT = 8
LINEAGE_LIMIT = 300
STACK_LIMIT = 1000


def api(name: str, *, args: tuple = (), **query: object) -> str:
    """The API URL behind a figure: the same selector, as a script would call it."""
    url = reverse(name, args=args)
    params = {k: v for k, v in query.items() if v not in (None, "")}
    return url + ("?" + urlencode(params, doseq=True) if params else "")


def registry_get(identifier: str | None) -> Registry | None:
    if identifier:
        return registry_lookup(identifier)
    return registry_list().order_by("id").first()


_FIGURE_FIELDS = ("images", "distinct_layers", "logical_bytes", "stored_bytes")


def _figures(row: dict) -> dict[str, object]:
    """A maintained figures row (`ScopeFigures`, `NamespaceFigures`) as the summary API reads it
    (`dedup_summary`): the same fields, the same arithmetic."""
    logical, stored = int(row["logical_bytes"]), int(row["stored_bytes"])
    return {
        "images": row["images"],
        "distinct_layers": row["distinct_layers"],
        "logical_bytes": logical,
        "stored_bytes": stored,
        "saved_bytes": logical - stored,
        "dedup_ratio": round(logical / stored, 4) if stored else 1.0,
    }


def _registry_rows() -> list[dict]:
    """Every registry with its summary: one query for the maintained rows; a registry without one
    (figures not built yet) is computed by the summary selector, as the API does."""
    registries = list(registry_list().order_by("name"))
    rows = {
        r["registry_id"]: r
        for r in ScopeFigures.objects.filter(
            registry_id__in=[reg.id for reg in registries], repository=None
        ).values()
    }
    out = []
    for reg in registries:
        row = rows.get(reg.id)
        figures = _figures(row) if row else dedup_summary(scope=Scope(registry_id=reg.id)).summary()
        out.append({"id": reg.id, "name": reg.name, **figures, "api": api("summary", registry=reg.id)})
    return out


def _engine_rows() -> tuple[list[dict], bool]:
    engines = list(Engine.objects.order_by("name")[: ENGINE_LIMIT + 1])
    out = []
    for engine in engines[:ENGINE_LIMIT]:
        df = engine_reports.engine_disk_usage(engine=engine)
        out.append(
            {
                "id": engine.id,
                "name": engine.name,
                "images": len(df.images),
                "logical_bytes": df.logical_bytes,
                "stored_bytes": df.stored_bytes,
                "saved_bytes": df.saved_bytes,
                "reclaimable_bytes": df.reclaimable_bytes,
                "api": api("engine-df", args=(engine.id,)),
            }
        )
    return out, len(engines) > ENGINE_LIMIT


def _ranked(*, name: str, figures: dict[str, object], query: dict[str, object]) -> dict:
    """One bar: a repository's or namespace's summary, with the API query that answers it and the
    what-if (page and API) of deleting every tag there (not computed here: one per bar would cost
    a what-if each)."""
    return {
        "name": name,
        **figures,
        "api_stored": api("summary", **query),
        "whatif": reverse("web:whatif") + "?" + urlencode(query),
        "api_whatif": api("whatif", details="false", **query),
    }


def largest_repositories(*, registry: Registry, limit: int = TOP_BARS) -> list[dict]:
    """The repositories of a registry with the most stored bytes, from their maintained figures (the
    rows the summary API reads for a repository): one query, whatever the number of repositories."""
    rows = (
        ScopeFigures.objects.filter(registry=registry, repository__isnull=False)
        .order_by("-stored_bytes", "repository__name")
        .values("repository__name", *_FIGURE_FIELDS)[:limit]
    )
    return [
        _ranked(
            name=row["repository__name"],
            figures=_figures(row),
            query={"registry": registry.id, "repository": row["repository__name"]},
        )
        for row in rows
    ]


def largest_namespaces(*, registry: Registry, limit: int = TOP_BARS) -> list[dict]:
    """The namespaces of a registry with the most stored bytes, from their maintained figures.

    The rows count strict path prefixes (`team/...`); the summary API computes a namespace that is
    also a repository's exact name (`team`) over that repository too, so such a namespace (rare) is
    read from the summary selector, as the API answers it: the figures shown are always the API's.
    """
    rows = list(
        NamespaceFigures.objects.filter(registry=registry)
        .order_by("-stored_bytes", "namespace")
        .values("namespace", *_FIGURE_FIELDS)[:limit]
    )
    named = set(
        Repository.objects.filter(registry=registry, name__in=[r["namespace"] for r in rows]).values_list(
            "name", flat=True
        )
    )
    out = []
    for row in rows:
        ns = row["namespace"]
        if ns in named:
            figures = dedup_summary(scope=Scope(registry_id=registry.id, namespace=ns)).summary()
        else:
            figures = _figures(row)
        out.append(_ranked(name=ns, figures=figures, query={"registry": registry.id, "namespace": ns}))
    return out


def overview(*, registry: Registry | None) -> dict:
    """Registries, engines, and for one registry its trend, its largest repositories and namespaces and
    the series of what its saved cleanup policies would reclaim.

    A bounded number of queries: maintained rows, never a figure per repository or namespace."""
    engines, engines_capped = _engine_rows()
    data: dict = {
        "registries": _registry_rows(),
        "engines": engines,
        "engines_capped": engines_capped,
        "engines_api": api("engine-list"),
        "registry": None,
    }
    if registry is None:
        return data
    data["registry"] = {"id": registry.id, "name": registry.name}
    data["trend"] = [
        {
            "taken_at": s.taken_at.isoformat(),
            "logical_bytes": s.logical_bytes,
            "stored_bytes": s.stored_bytes,
            "saved_bytes": s.saved_bytes,
        }
        for s in snapshot_series(registry_id=registry.id)
    ]
    data["trend_api"] = api("trends", registry=registry.id)
    data["repositories"] = largest_repositories(registry=registry)
    data["namespaces"] = largest_namespaces(registry=registry)
    data["repositories_api"] = api("repository-list", registry=registry.id)
    series, more = registry_policy_series(registry_id=registry.id)
    data["policies"] = [
        {
            "id": policy.id,
            "name": policy.name,
            "format": policy.format,
            "enabled": policy.enabled,
            "api": api("policy-series", args=(policy.id,)),
            "latest": _point(points[-1]) if points else None,
            "points": [_point(e) for e in points if not e.error],
        }
        for policy, points in series
    ]
    data["policies_capped"] = more
    data["policies_api"] = api("policy-list", registry=registry.id)
    return data


def _point(e: PolicyEvaluation) -> dict:
    return {"at": e.at.isoformat(), "freed_bytes": e.freed_bytes, "tags": e.tags_removed, "error": e.error}


def layers_page(*, registry: Registry, limit: int = 25) -> dict:
    ranked, _ = layer_top(registry_id=registry.id, order="images", limit=limit)
    answers_refresh(registry_id=registry.id, answers=[MISSED_SAVINGS])  # a probe when current
    missed = content.missed_savings(scope=Scope(registry_id=registry.id), limit=limit)
    return {
        "registry": {"id": registry.id, "name": registry.name},
        "layers": [
            {
                "digest": r.digest,
                "size": r.size,
                "images": r.images,
                "repositories": r.repositories,
                "saved_bytes": r.saved_bytes,
                "created_by": r.created_by,
            }
            for r in ranked
        ],
        "layers_api": api("layer-top", registry=registry.id, page_size=limit),
        "missed": [
            {
                "diff_id": m.diff_id,
                "copies": m.copies,
                "stored_bytes": m.stored_bytes,
                "saved_bytes": m.saved_bytes,
                "blobs": [list(b) for b in m.blobs],
            }
            for m in missed
        ],
        "missed_api": api("missed-savings", registry=registry.id, page_size=limit),
    }


def _label(holding: RepositoryManifest, tags: ImageTags) -> str:
    name, short = holding.repository.name, holding.manifest.digest[7:19]
    if not tags.names:
        return f"{name}@{short}"
    # a platform image reached through an index shares its tag with its siblings: tell them apart
    first = tags.names[0]
    return f"{name}:{first} {short}" if first in tags.index else f"{name}:{first}"


def layers_counts(*, blob_ids: list[int], registry_id: int) -> dict[int, tuple[int, int]]:
    """(images, repositories) holding each layer in a registry, from the maintained counts the API's
    `layer_counts` reads, in one query for the whole stack instead of one per layer."""
    rows = RegistryBlob.objects.filter(registry_id=registry_id, blob_id__in=blob_ids).values_list(
        "blob_id", "images", "repositories"
    )
    return {blob_id: (images, repositories) for blob_id, images, repositories in rows}


def image_page(*, holding_id: int) -> dict:
    try:
        # its pull figures in the same query: the page's query count stays as it was
        holding = image_get_queryset().annotate(**pulls_annotations()).get(id=holding_id)
    except RepositoryManifest.DoesNotExist as exc:
        raise NotFound(f"no image {holding_id}") from exc
    registry_id = holding.repository.registry_id
    sizes = image_sizes(holding_ids=[holding.id])[holding.id]
    tags = image_tags(holdings=[holding])[holding.id]
    pulled = image_pulls_of(holding)
    drawn = list(image_layers(manifest_id=holding.manifest_id)[:STACK_LIMIT])
    counts = layers_counts(blob_ids=[layer.blob_id for layer in drawn], registry_id=registry_id)
    stack = []
    for layer in drawn:
        images, repositories = counts.get(layer.blob_id, (0, 0))
        stack.append(
            {
                "position": layer.position,
                "digest": layer.blob.digest,
                "size": layer.blob.size,
                "uncompressed_size": layer.blob.uncompressed_size,
                "created_by": layer.created_by,
                "images": images,
                "repositories": repositories,
                "shared": images > 1,
            }
        )
    partners = content.image_partners(
        holding_id=holding.id,
        manifest_id=holding.manifest_id,
        scope=Scope(registry_id=registry_id),
        limit=10,
    )
    stale = [
        {
            "repository": s.repository,
            "tag": s.tag,
            "old_digest": s.old_digest,
            "new_digest": s.new_digest,
            "still_tagged": s.still_tagged,
        }
        for s in image_stale_base(holding=holding)
    ]
    # On a stale base the base may no longer be tagged: the chain then walks untagged holdings too, so
    # the page names the old base instead of claiming there is none.
    chain = image_lineage(holding=holding, include_untagged=bool(stale))
    tagged = set(
        RepositoryManifest.objects.filter(id__in=[b.holding_id for b in chain], present=True).values_list(
            "id", flat=True
        )
    )
    return {
        "id": holding.id,
        "label": _label(holding, tags),
        "repository": holding.repository.name,
        "digest": holding.manifest.digest,
        "registry": {"id": registry_id, "name": holding.repository.registry.name},
        "tags": tags.names,
        "index_tags": tags.index,
        "sizes": asdict(sizes),
        "pulls": asdict(pulled),
        "layers": stack,
        "layers_capped": holding.manifest.layer_count > len(stack),
        "chain": [{**asdict(b), "tagged": b.holding_id in tagged} for b in chain],
        "partners": [asdict(p) for p in partners],
        "stale": stale,
        "api": {
            "image": api("image-detail", args=(holding.id,)),
            "layers": api("image-layers", args=(holding.id,), page_size=STACK_LIMIT),
            "lineage": api("image-lineage", args=(holding.id,)),
            "partners": api("image-partners", args=(holding.id,), registry=registry_id),
            "stale": api("stale-bases", registry=registry_id),
        },
    }


# `image_base` of `analytics.selectors.lineage` for many images in one statement: the same candidates
# and order, one lateral probe of the chain index per image.
_BASES_SQL = """
SELECT p.holding_id, b.*
FROM unnest(%(holdings)s::bigint[], %(manifests)s::bigint[], %(repositories)s::bigint[])
    AS p(holding_id, manifest_id, repository_id)
CROSS JOIN LATERAL (
    SELECT rm2.id, t.manifest_id, m.digest, r2.name, c.depth
    FROM analytics_layerchain c
    JOIN analytics_layerchain t ON t.chain = c.chain AND t.is_top
    JOIN analytics_repositorymanifest rm2 ON rm2.manifest_id = t.manifest_id AND rm2.present
    JOIN analytics_repository r2 ON r2.id = rm2.repository_id AND r2.registry_id = %(registry)s
    JOIN analytics_manifest m ON m.id = t.manifest_id
    WHERE c.manifest_id = p.manifest_id AND NOT c.is_top
    ORDER BY c.depth DESC, (rm2.repository_id = p.repository_id) DESC, rm2.present DESC, rm2.id
    LIMIT 1
) b
"""


def image_bases(*, holdings: list[RepositoryManifest], registry_id: int) -> dict[int, BaseImage]:
    """Each tagged image's base (the API's `images/{id}/lineage/` base), by holding id; a root has none."""
    if not holdings:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            _BASES_SQL,
            {
                "holdings": [h.id for h in holdings],
                "manifests": [h.manifest_id for h in holdings],
                "repositories": [h.repository_id for h in holdings],
                "registry": registry_id,
            },
        )
        return {row[0]: BaseImage(*row[1:]) for row in cursor.fetchall()}


def lineage_page(*, registry: Registry) -> dict:
    """Each tagged image with its base (a root has none), sized by its bytes."""
    holdings = list(
        images(scope=Scope(registry_id=registry.id))
        .select_related("repository")
        .order_by("id")[:LINEAGE_LIMIT]
    )
    sizes = image_sizes(holding_ids=[h.id for h in holdings])
    tags = image_tags(holdings=holdings)
    bases = image_bases(holdings=holdings, registry_id=registry.id)
    nodes = []
    for h in holdings:
        base = bases.get(h.id)
        nodes.append(
            {
                "id": h.id,
                "name": _label(h, tags[h.id]),
                "size_bytes": sizes[h.id].size_bytes,
                "unique_bytes": sizes[h.id].unique_bytes,
                "base": base.holding_id if base else None,
                "url": reverse("web:image", args=(h.id,)),
                "api": api("image-lineage", args=(h.id,)),
            }
        )
    return {
        "registry": {"id": registry.id, "name": registry.name},
        "nodes": nodes,
        "capped": len(holdings) >= LINEAGE_LIMIT,
        "images_api": api("image-list", registry=registry.id),
    }


@dataclass
class WhatIfForm:
    registry: int
    namespace: str = ""
    repository: str = ""
    tag_glob: str = ""
    not_seen_days: int | None = None
    not_pulled_days: int | None = None
    keep_newest: int | None = None
    tags: list[str] = field(default_factory=list)


def whatif_page(*, form: WhatIfForm) -> dict:
    repo_id = None
    if form.repository:
        repo = repository_list().filter(registry_id=form.registry, name=form.repository.strip("/")).first()
        if repo is None:
            raise NotFound(f"no repository named {form.repository!r}")
        repo_id = repo.id
    picked = []
    for name in form.tags:
        repository, sep, tag = name.rpartition(":")
        if not sep or not repository:
            raise InvalidRequest(f"tags are repository:tag, not {name!r}")
        picked.append((repository, tag))
    rule = whatif.TagRule(
        registry_id=form.registry,
        namespace=form.namespace or None,
        repository_id=repo_id,
        tag_glob=form.tag_glob or None,
        not_seen_days=form.not_seen_days,
        not_pulled_days=form.not_pulled_days,
        keep_newest=form.keep_newest,
        tags=tuple(picked),
    )
    impact = whatif.whatif_bounded(rule=rule)  # a whole registry maintained, a large selection a 4xx
    query = {
        "registry": form.registry,
        "namespace": form.namespace,
        "repository": form.repository,
        "tag_glob": form.tag_glob,
        "not_seen_days": form.not_seen_days,
        "not_pulled_days": form.not_pulled_days,
        "keep_newest": form.keep_newest,
        "tags": form.tags,
    }
    data = asdict(impact)
    data["deleted_tags"] = [list(map(str, t)) for t in impact.deleted_tags]
    return {"impact": data, "api": api("whatif", **query)}


def policy_page(
    *, registry: Registry, text: str, format: str | None, namespace: str, repository: str
) -> dict:
    """A pasted cleanup policy previewed as the API previews it (`POST policies/preview/`), bounded alike."""
    policy = policy_parse(text, format=format or None)
    repo_id = None
    if repository:
        repo = repository_list().filter(registry_id=registry.id, name=repository.strip("/")).first()
        if repo is None:
            raise NotFound(f"no repository named {repository!r}")
        repo_id = repo.id
    namespace = namespace.strip("/") or None  # type: ignore[assignment]
    scope_check(
        registry_id=registry.id,
        namespace=namespace,
        repository_id=repo_id,
        most=settings.POLICY_PREVIEW_MAX_HOLDINGS,
    )
    preview = policy_preview(
        policy=policy,
        registry_id=registry.id,
        namespace=namespace,
        repository_id=repo_id,
        limit=whatif.DEFAULT_DETAILS,
        columns=False,
    )
    return {"preview": preview_answer(preview, limit=whatif.DEFAULT_DETAILS), "api": api("policy-preview")}


def tag_choices(*, registry: Registry) -> list[str]:
    """Current tags of a registry, repository:tag, for choosing by hand."""
    rows = tag_list().filter(repository__registry=registry).order_by("repository__name", "name")
    return [f"{r}:{t}" for r, t in rows.values_list("repository__name", "name")[:500]]
