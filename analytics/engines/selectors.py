"""Read side for Docker Engines: `docker system df` computed from the layers a scan recorded.

An engine shares by ChainID (a layer together with everything under it), as dockerd 20.10 does in
`daemon/images/image_list.go` and `daemon/images/service.go`:

- the images counted are the top images: tagged or digested, or untagged with no child image
  (intermediate images of the classic builder are left out);
- an image's `size` is the sum of its layers' DiffSize (every ChainID of its stack);
- a ChainID is shared when more than one counted image has it; `shared` sums those layers' sizes and
  `unique = size - shared` (what `docker system df -v` prints);
- `stored_bytes` (the engine's `LayersSize`) sums each ChainID the counted images use, once.

A registry shares by blob digest instead (`analytics.selectors`); the two rules are never mixed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db.models import Count, Q, Sum

from analytics.errors import NotFound
from analytics.models import Engine, EngineImage, EngineImageLayer, EngineLayer


@dataclass(frozen=True)
class EngineImageUsage:
    id: str
    tags: list[str]
    digests: list[str]
    created: datetime | None
    containers: int
    size_bytes: int | None
    shared_bytes: int | None
    unique_bytes: int | None


@dataclass(frozen=True)
class EngineDiskUsage:
    engine: str
    endpoint: str
    images: list[EngineImageUsage]
    active: int  # images with at least one container
    stored_bytes: int | None  # the engine's LayersSize
    logical_bytes: int | None  # sum of the images' sizes: what they would take with nothing shared
    saved_bytes: int | None  # logical - stored: what sharing by ChainID saves on this node
    reclaimable_bytes: int | None  # `docker system df` RECLAIMABLE: stored less what images in use hold
    # layers whose size the engine's history did not settle; figures that need them are None
    unknown_layers: list[str] = field(default_factory=list)

    def as_report(self) -> dict[str, object]:
        """The shape `manage.py report --engine --json` prints."""
        return {
            "engine": self.engine,
            "endpoint": self.endpoint,
            "images": [
                {
                    "id": i.id,
                    "tags": i.tags,
                    "size_bytes": i.size_bytes,
                    "shared_bytes": i.shared_bytes,
                    "unique_bytes": i.unique_bytes,
                    "containers": i.containers,
                }
                for i in self.images
            ],
            "stored_bytes": self.stored_bytes,
            "logical_bytes": self.logical_bytes,
            "saved_bytes": self.saved_bytes,
            "reclaimable_bytes": self.reclaimable_bytes,
            "active": self.active,
        }

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def engine_lookup(identifier: str) -> Engine:
    """An engine by id, name or endpoint (`unix:///...`, `tcp://...`)."""
    ident = identifier.strip()
    if ident.startswith("engine:"):
        ident = ident[len("engine:") :]
    qs = Engine.objects.all()
    found = (
        qs.filter(id=int(ident)).first()
        if ident.isdigit()
        else qs.filter(Q(name=ident) | Q(endpoint=ident)).first()
    )
    if found is None:
        raise NotFound(f"no engine {identifier!r}")
    return found


def engine_endpoints(*, limit: int) -> list[str]:
    """The first `limit` engines' endpoints, for an error naming one that is not there."""
    return list(Engine.objects.order_by("endpoint").values_list("endpoint", flat=True)[:limit])


def _sum(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def engine_disk_usage(*, engine: Engine) -> EngineDiskUsage:
    """`docker system df` and `docker system df -v` (images) for one engine, from its recorded layers."""
    images = list(EngineImage.objects.filter(engine=engine, present=True).order_by("-created", "image_id"))
    parents = {i.parent_id for i in images if i.parent_id}
    top = [i for i in images if i.repo_tags or i.repo_digests or i.image_id not in parents]
    stacks: dict[int, list[int]] = {i.id: [] for i in top}
    for image_id, layer_id in (
        EngineImageLayer.objects.filter(image__in=top)
        .order_by("image_id", "position")
        .values_list("image_id", "layer_id")
    ):
        stacks[image_id].append(layer_id)
    sizes = dict(EngineLayer.objects.filter(image_layers__image__in=top).distinct().values_list("id", "size"))
    refs: dict[int, int] = {}
    for stack in stacks.values():
        for layer_id in set(stack):
            refs[layer_id] = refs.get(layer_id, 0) + 1
    usages: list[EngineImageUsage] = []
    for img in top:
        stack = stacks[img.id]
        size = _sum([sizes[layer] for layer in stack])
        shared = _sum([sizes[layer] for layer in stack if refs[layer] > 1])
        usages.append(
            EngineImageUsage(
                id=img.image_id,
                tags=list(img.repo_tags),
                digests=list(img.repo_digests),
                created=img.created,
                containers=img.containers,
                size_bytes=size,
                shared_bytes=shared,
                unique_bytes=None if size is None or shared is None else size - shared,
            )
        )
    stored = _sum(list(sizes.values()))
    logical = _sum([u.size_bytes for u in usages])
    in_use = _sum([u.unique_bytes for u in usages if u.containers])
    unknown = sorted(
        EngineLayer.objects.filter(id__in=[k for k, v in sizes.items() if v is None]).values_list(
            "chain_id", flat=True
        )
    )
    return EngineDiskUsage(
        engine=engine.name,
        endpoint=engine.endpoint,
        images=usages,
        active=sum(1 for u in usages if u.containers),
        stored_bytes=stored,
        logical_bytes=logical,
        saved_bytes=None if logical is None or stored is None else logical - stored,
        reclaimable_bytes=None if stored is None or in_use is None else stored - in_use,
        unknown_layers=unknown,
    )


@dataclass(frozen=True)
class FleetLayer:
    chain_id: str
    diff_id: str
    size: int | None
    engines: int
    images: int


def fleet_layers(*, min_engines: int = 1, limit: int = 100) -> list[FleetLayer]:
    """Which layers the fleet holds: per ChainID, on how many engines and in how many images (present)."""
    rows = (
        EngineLayer.objects.filter(image_layers__image__present=True)
        .annotate(
            n_engines=Count("image_layers__image__engine", distinct=True),
            n_images=Count("image_layers__image", distinct=True),
        )
        .filter(n_engines__gte=min_engines)
        .order_by("-n_engines", "-n_images", "-size", "chain_id")[:limit]
    )
    return [FleetLayer(r.chain_id, r.diff_id, r.size, r.n_engines, r.n_images) for r in rows]


@dataclass(frozen=True)
class FleetImage:
    image_id: str
    tags: list[str]
    engines: int


def fleet_images(*, limit: int = 100) -> list[FleetImage]:
    """Which images the fleet holds: per image ID, on how many engines (present), with their tags."""
    rows = (
        EngineImage.objects.filter(present=True)
        .values("image_id")
        .annotate(engines=Count("engine", distinct=True))
        .order_by("-engines", "image_id")[:limit]
    )
    tags: dict[str, set[str]] = {}
    ids = [r["image_id"] for r in rows]
    for image_id, repo_tags in EngineImage.objects.filter(present=True, image_id__in=ids).values_list(
        "image_id", "repo_tags"
    ):
        tags.setdefault(image_id, set()).update(repo_tags)
    return [FleetImage(r["image_id"], sorted(tags.get(r["image_id"], ())), r["engines"]) for r in rows]


def fleet_savings() -> list[dict[str, object]]:
    """Disk saved by sharing on each node: per engine, logical, stored and saved bytes."""
    out = []
    for engine in Engine.objects.annotate(n=Sum("images__layer_count")).order_by("name"):
        usage = engine_disk_usage(engine=engine)
        out.append(
            {
                "engine": engine.name,
                "endpoint": engine.endpoint,
                "images": len(usage.images),
                "logical_bytes": usage.logical_bytes,
                "stored_bytes": usage.stored_bytes,
                "saved_bytes": usage.saved_bytes,
            }
        )
    return out
