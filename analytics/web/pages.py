"""What each page shows, composed from the selectors the API already calls (no figure is computed here),
with the API query that returns the same figures so a script can reproduce the page."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from urllib.parse import urlencode

from django.urls import reverse

from analytics.engines import selectors as engine_reports
from analytics.errors import InvalidRequest, NotFound
from analytics.models import Engine, Registry, RepositoryManifest
from analytics.selectors import content, whatif
from analytics.selectors.images import image_get_queryset, image_layers, image_sizes, image_tags, images
from analytics.selectors.layers import layer_counts, layer_top
from analytics.selectors.lineage import image_base, image_lineage, stale_bases
from analytics.selectors.lists import registry_list, registry_lookup, repository_list, tag_list
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from analytics.selectors.trends import snapshot_series

# The overview asks one what-if per repository or namespace for its unique bytes; cap how many.
RANKED_LIMIT = 40
TOP_BARS = 12
LINEAGE_LIMIT = 300
# The image page counts the holders of each layer it draws: one query per layer.
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


@dataclass
class Ranked:
    name: str
    stored_bytes: int
    unique_bytes: int
    api_stored: str
    api_unique: str


def _ranked(*, registry: Registry, names: list[str], namespace: bool) -> list[Ranked]:
    """Stored bytes (the summary) and unique bytes (what deleting every tag there would free: the what-if)."""
    rows = []
    for name in names[:RANKED_LIMIT]:
        if namespace:
            scope = Scope(registry_id=registry.id, namespace=name)
            rule = whatif.TagRule(registry_id=registry.id, namespace=name)
            query = {"registry": registry.id, "namespace": name}
        else:
            repo_id = repository_list().get(registry=registry, name=name).id
            scope = Scope(registry_id=registry.id, repository_id=repo_id)
            rule = whatif.TagRule(registry_id=registry.id, repository_id=repo_id)
            query = {"registry": registry.id, "repository": name}
        rows.append(
            Ranked(
                name=name,
                stored_bytes=dedup_summary(scope=scope).stored_bytes,
                unique_bytes=whatif.whatif(rule=rule, details=False).freed_bytes,
                api_stored=api("summary", **query),
                api_unique=api("whatif", details="false", **query),
            )
        )
    return rows


def overview(*, registry: Registry | None) -> dict:
    registries = []
    for reg in registry_list().order_by("name"):
        summary = dedup_summary(scope=Scope(registry_id=reg.id))
        registries.append(
            {"id": reg.id, "name": reg.name, **summary.summary(), "api": api("summary", registry=reg.id)}
        )
    engines = []
    for engine in Engine.objects.order_by("name"):
        df = engine_reports.engine_disk_usage(engine=engine)
        engines.append(
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
    data: dict = {"registries": registries, "engines": engines, "registry": None}
    if registry is None:
        return data
    series = snapshot_series(registry_id=registry.id)
    repos = list(repository_list().filter(registry=registry).order_by("name").values_list("name", flat=True))
    namespaces = sorted({n.rpartition("/")[0] for n in repos if "/" in n})
    repo_rows = _ranked(registry=registry, names=repos, namespace=False)
    ns_rows = _ranked(registry=registry, names=namespaces, namespace=True)

    def top(rows: list[Ranked], key: str) -> list[dict]:
        return [asdict(r) for r in sorted(rows, key=lambda r: (-getattr(r, key), r.name))[:TOP_BARS]]

    data["registry"] = {"id": registry.id, "name": registry.name}
    data["trend"] = [
        {
            "taken_at": s.taken_at.isoformat(),
            "logical_bytes": s.logical_bytes,
            "stored_bytes": s.stored_bytes,
            "saved_bytes": s.saved_bytes,
        }
        for s in series
    ]
    data["trend_api"] = api("trends", registry=registry.id)
    data["repositories"] = {
        "stored": top(repo_rows, "stored_bytes"),
        "unique": top(repo_rows, "unique_bytes"),
    }
    data["namespaces"] = {"stored": top(ns_rows, "stored_bytes"), "unique": top(ns_rows, "unique_bytes")}
    data["repositories_capped"] = len(repos) > RANKED_LIMIT
    return data


def layers_page(*, registry: Registry, limit: int = 25) -> dict:
    ranked, _ = layer_top(registry_id=registry.id, order="images", limit=limit)
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


def _label(holding: RepositoryManifest, tags: list[str]) -> str:
    name, short = holding.repository.name, holding.manifest.digest[7:19]
    if not tags:
        return f"{name}@{short}"
    # a platform image reached through an index shares its tag with its siblings: tell them apart
    return f"{name}:{tags[0]} {short}" if "(" in tags[0] else f"{name}:{tags[0]}"


def image_page(*, holding_id: int) -> dict:
    try:
        holding = image_get_queryset().get(id=holding_id)
    except RepositoryManifest.DoesNotExist as exc:
        raise NotFound(f"no image {holding_id}") from exc
    registry_id = holding.repository.registry_id
    sizes = image_sizes(holding_ids=[holding.id])[holding.id]
    tags = image_tags(holdings=[holding]).get(holding.id, [])
    stack = []
    for layer in image_layers(manifest_id=holding.manifest_id)[:STACK_LIMIT]:
        images, repositories = layer_counts(blob_id=layer.blob_id, registry_id=registry_id)
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
        {"repository": s.repository, "tag": s.tag, "old_digest": s.old_digest, "new_digest": s.new_digest}
        for s in stale_bases(registry_id=registry_id)
        if any(a[0] == holding.id for a in s.affected)
    ]
    # On a stale base the base is no longer tagged: the chain then walks untagged holdings too, so
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
        "digest": holding.manifest.digest,
        "registry": {"id": registry_id, "name": holding.repository.registry.name},
        "tags": tags,
        "sizes": asdict(sizes),
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


def lineage_page(*, registry: Registry) -> dict:
    """Each tagged image with its base (a root has none), sized by its bytes."""
    holdings = list(
        images(scope=Scope(registry_id=registry.id))
        .select_related("repository")
        .order_by("id")[:LINEAGE_LIMIT]
    )
    sizes = image_sizes(holding_ids=[h.id for h in holdings])
    tags = image_tags(holdings=holdings)
    nodes = []
    for h in holdings:
        base = image_base(manifest_id=h.manifest_id, registry_id=registry.id, repository_id=h.repository_id)
        nodes.append(
            {
                "id": h.id,
                "name": _label(h, tags.get(h.id, [])),
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
        "keep_newest": form.keep_newest,
        "tags": form.tags,
    }
    data = asdict(impact)
    data["deleted_tags"] = [list(map(str, t)) for t in impact.deleted_tags]
    return {"impact": data, "api": api("whatif", **query)}


def tag_choices(*, registry: Registry) -> list[str]:
    """Current tags of a registry, repository:tag, for choosing by hand."""
    rows = tag_list().filter(repository__registry=registry).order_by("repository__name", "name")
    return [f"{r}:{t}" for r, t in rows.values_list("repository__name", "name")[:500]]
