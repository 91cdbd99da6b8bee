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
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Min, Q
from django.db.models.functions import Coalesce

from analytics.models import (
    ManifestPulls,
    Registry,
    RegistryEvent,
    Repository,
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


def _scope_where(*, registry_id: int, namespace: str | None, repository_id: int | None) -> tuple[str, list]:
    """The scope's repositories (`r`) as SQL: by registry, then repository or namespace, not a list of ids."""
    where, params = ["r.registry_id = %s"], [registry_id]
    if repository_id is not None:
        where.append("r.id = %s")
        params.append(repository_id)
    if namespace:
        ns = namespace.strip("/")
        where.append("(r.name = %s OR starts_with(r.name, %s))")
        params += [ns, ns + "/"]
    return " AND ".join(where), params


def _names_q(field: str, *, namespace: str | None, repository: str | None) -> Q:
    """The scope's repositories by name, for the rows keyed by name (registry events)."""
    if repository is not None:
        return Q(**{field: repository})
    if namespace:
        ns = namespace.strip("/")
        return Q(**{field: ns}) | Q(**{f"{field}__startswith": ns + "/"})
    return Q()


# Each current tag with the time a scan saw it reach its current digest: its latest TagEvent to that digest,
# else its first sight (a probe of the tag's events per tag, by the tag_id index). Times are read as
# microseconds since the epoch (exact): an integer is parsed many times faster than a timestamp
_TAGS_SQL = """
SELECT t.id, t.repository_id, t.name, t.manifest_id, m.digest,
    (extract(epoch FROM coalesce((SELECT max(e.seen_at) FROM analytics_tagevent e
              WHERE e.tag_id = t.id AND e.new_digest = m.digest), t.first_seen)) * 1000000)::bigint
FROM analytics_repository r
JOIN analytics_tag t ON t.repository_id = r.id AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
JOIN analytics_manifest m ON m.id = t.manifest_id
WHERE {where}
"""

_HOLDINGS_SQL = """
SELECT rm.repository_id, rm.manifest_id, m.digest, rm.present,
    (extract(epoch FROM rm.first_seen) * 1000000)::bigint
FROM analytics_repository r
JOIN analytics_repositorymanifest rm ON rm.repository_id = r.id
JOIN analytics_manifest m ON m.id = rm.manifest_id
WHERE {where}
"""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _at(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)


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
    """The images and tags of a scope, with their push (and pull) times: a few statements over the scope
    (the repositories by registry and name, never a list of ids), read as plain rows."""
    registry = Registry.objects.get(id=registry_id)
    repos = scope_repositories(registry_id=registry_id, namespace=namespace, repository_id=repository_id)
    rows = PlaceRows(
        registry=registry,
        repositories=repos,
        namespace=(namespace or "").strip("/") or None,
        repository_id=repository_id,
    )
    where, params = _scope_where(registry_id=registry_id, namespace=namespace, repository_id=repository_id)
    with connection.cursor() as cursor:
        cursor.execute(_TAGS_SQL.format(where=where), params)
        tags = cursor.fetchall()
        cursor.execute(_HOLDINGS_SQL.format(where=where), params)
        holdings = cursor.fetchall()
    names = _names_q(
        "repository",
        namespace=namespace,
        repository=repos.get(repository_id) if repository_id is not None else None,
    )
    pushes = (
        RegistryEvent.objects.filter(
            names,
            registry_id=registry_id,
            action=RegistryEvent.Action.PUSH,
            target=RegistryEvent.Target.MANIFEST,
        )
        .exclude(digest="")
        .values("repository", "digest")
    )
    by_digest = {
        (repo, digest): at
        for repo, digest, at in pushes.annotate(at=Min(Coalesce("occurred_at", "received_at"))).values_list(
            "repository", "digest", "at"
        )
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
        for repo, digest, at in ManifestPulls.objects.filter(
            _names_q(
                "repository__name",
                namespace=namespace,
                repository=repos.get(repository_id) if repository_id is not None else None,
            ),
            repository__registry_id=registry_id,
        ).values_list("repository_id", "digest", "last_pulled_at")
    }

    names_of: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
    for tag_id, repo_id, name, manifest_id, digest, micros in tags:
        scanned = _at(micros)
        names_of[(repo_id, manifest_id)].append((tag_id, name))
        event = by_tag.get((repos[repo_id], name, digest)) if by_tag else None
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
    for repo_id, manifest_id, digest, present, micros in holdings:
        named = names_of.get((repo_id, manifest_id))
        if present and not named:
            continue  # a child of a tagged index: part of that index's image
        first_seen = _at(micros)
        if named and len(named) > 1:
            named.sort(key=lambda t: t[1])
        event = by_digest.get((repos[repo_id], digest)) if by_digest else None
        at, source = (event, EVENTS) if event is not None and event <= first_seen else (first_seen, SCANS)
        rows.images.setdefault(repo_id, []).append(
            Image(
                repository_id=repo_id,
                repository=repos[repo_id],
                manifest_id=manifest_id,
                digest=digest,
                tags=tuple(n for _, n in named) if present and named else (),
                tag_ids=tuple(i for i, _ in named) if present and named else (),
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
