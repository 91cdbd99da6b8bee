"""What a policy is evaluated over, read from Layerlens's rows: per repository its images (as registries
list them: a directly tagged manifest with all its tags, or an untagged one) and its tags, each with a
push time and, where pulls are counted, a pull time.

- An image's push time is the earliest of its push events (registry events, while Layerlens keeps them)
  and the first time a scan saw the repository hold it (`RepositoryManifest.first_seen`). Both are at or
  after the true push, so the earlier is the better; `pushed_from` says which one it was.
- A tag's push time is the earliest of the push events of that tag to its current digest and the time
  a scan saw the tag reach that digest (its latest `TagEvent` to it, else `Tag.first_seen`).
- An image's pull time is the last pull of its digest in its repository (`ManifestPulls`, counted from
  pull events; never the scanner's reads); None when none was counted.
- Untagged images are the holdings no tag reaches any more (`present` false): what a scan last saw. The
  children of a tagged index are part of that index's image, as registries list them, never images of
  their own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Max, Min, Q
from django.db.models.functions import Coalesce

from analytics.models import (
    ManifestPulls,
    Registry,
    RegistryEvent,
    Repository,
    RepositoryManifest,
    Tag,
    TagEvent,
)

EVENTS = "events"
SCANS = "scans"


@dataclass(frozen=True)
class Image:
    repository_id: int
    repository: str
    manifest_id: int
    digest: str
    tags: tuple[str, ...]  # empty: an untagged image
    tag_ids: tuple[int, ...]
    pushed_at: datetime
    pushed_from: str  # EVENTS or SCANS
    pulled_at: datetime | None = None


@dataclass(frozen=True)
class TagRow:
    id: int
    repository_id: int
    repository: str
    name: str
    manifest_id: int
    digest: str
    pushed_at: datetime
    pushed_from: str


@dataclass
class PlaceRows:
    registry: Registry
    repositories: dict[int, str]  # id -> name, the scope's repositories
    namespace: str | None = None  # the scope's namespace (a Harbor project), if it names one
    repository_id: int | None = None  # the scope's repository, if it names one
    images: dict[int, list[Image]] = field(default_factory=dict)  # by repository id
    tags: dict[int, list[TagRow]] = field(default_factory=dict)


def scope_repositories(
    *, registry_id: int, namespace: str | None, repository_id: int | None
) -> dict[int, str]:
    qs = Repository.objects.filter(registry_id=registry_id)
    if repository_id is not None:
        qs = qs.filter(id=repository_id)
    if namespace:
        ns = namespace.strip("/")
        qs = qs.filter(Q(name=ns) | Q(name__startswith=ns + "/"))
    return dict(qs.order_by("name").values_list("id", "name"))


def place_rows(*, registry_id: int, namespace: str | None, repository_id: int | None) -> PlaceRows:
    """The images and tags of a scope, with their push (and pull) times."""
    registry = Registry.objects.get(id=registry_id)
    repos = scope_repositories(registry_id=registry_id, namespace=namespace, repository_id=repository_id)
    rows = PlaceRows(
        registry=registry,
        repositories=repos,
        namespace=(namespace or "").strip("/") or None,
        repository_id=repository_id,
    )
    tags = list(
        Tag.objects.filter(repository_id__in=repos, removed_at=None, manifest__isnull=False).values_list(
            "id", "repository_id", "name", "manifest_id", "manifest__digest", "first_seen"
        )
    )
    # when a scan saw each tag reach its current digest
    moved = {
        (tag_id, digest): seen
        for tag_id, digest, seen in TagEvent.objects.filter(tag_id__in=[t[0] for t in tags])
        .values("tag_id", "new_digest")
        .annotate(seen=Max("seen_at"))
        .values_list("tag_id", "new_digest", "seen")
    }
    pushes = RegistryEvent.objects.filter(
        registry_id=registry_id,
        action=RegistryEvent.Action.PUSH,
        target=RegistryEvent.Target.MANIFEST,
        repository__in=list(repos.values()),
    ).exclude(digest="")
    by_digest = {
        (repo, digest): at
        for repo, digest, at in pushes.values("repository", "digest")
        .annotate(at=Min(Coalesce("occurred_at", "received_at")))
        .values_list("repository", "digest", "at")
    }
    by_tag = {
        (repo, tag, digest): at
        for repo, tag, digest, at in pushes.exclude(tag="")
        .values("repository", "tag", "digest")
        .annotate(at=Min(Coalesce("occurred_at", "received_at")))
        .values_list("repository", "tag", "digest", "at")
    }
    pulled = {
        (repo, digest): at
        for repo, digest, at in ManifestPulls.objects.filter(repository_id__in=repos).values_list(
            "repository_id", "digest", "last_pulled_at"
        )
    }

    names_of: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
    for tag_id, repo_id, name, manifest_id, digest, first_seen in tags:
        names_of[(repo_id, manifest_id)].append((tag_id, name))
        scanned = moved.get((tag_id, digest), first_seen)
        event = by_tag.get((repos[repo_id], name, digest))
        at, source = (event, EVENTS) if event is not None and event <= scanned else (scanned, SCANS)
        rows.tags.setdefault(repo_id, []).append(
            TagRow(
                id=tag_id,
                repository_id=repo_id,
                repository=repos[repo_id],
                name=name,
                manifest_id=manifest_id,
                digest=digest,
                pushed_at=at,
                pushed_from=source,
            )
        )
    holdings = RepositoryManifest.objects.filter(repository_id__in=repos).values_list(
        "repository_id", "manifest_id", "manifest__digest", "present", "first_seen"
    )
    for repo_id, manifest_id, digest, present, first_seen in holdings:
        named = sorted(names_of.get((repo_id, manifest_id), []), key=lambda t: t[1])
        if present and not named:
            continue  # a child of a tagged index: part of that index's image
        event = by_digest.get((repos[repo_id], digest))
        at, source = (event, EVENTS) if event is not None and event <= first_seen else (first_seen, SCANS)
        rows.images.setdefault(repo_id, []).append(
            Image(
                repository_id=repo_id,
                repository=repos[repo_id],
                manifest_id=manifest_id,
                digest=digest,
                tags=tuple(n for _, n in named) if present else (),
                tag_ids=tuple(i for i, _ in named) if present else (),
                pushed_at=at,
                pushed_from=source,
                pulled_at=pulled.get((repo_id, digest)),
            )
        )
    return rows


@dataclass
class Selection:
    """What a policy removes: current tags (deleting an image deletes every tag naming it) and untagged
    images (their manifests deleted by digest)."""

    tag_ids: set[int] = field(default_factory=set)
    untagged: list[Image] = field(default_factory=list)

    def image_remove(self, image: Image) -> None:
        if image.tags:
            self.tag_ids.update(image.tag_ids)
        else:
            self.untagged.append(image)


def newest_first(images: list[Image]) -> list[Image]:
    """By push time, newest first; equal times by digest, so an answer never depends on row order."""
    return sorted(images, key=lambda i: (i.pushed_at, i.digest), reverse=True)
