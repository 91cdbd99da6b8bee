"""What-if deletion: the exact bytes a registry frees when a set of tags is deleted and it collects garbage.

Registry rule (distribution's `garbage-collect --delete-untagged`): a repository keeps the manifests its
remaining tags reach (through indexes, to any depth); a manifest's bytes stay while any repository of
the registry keeps it; a blob (config or layer) stays while any kept manifest of the registry references
it. Everything else the set held is freed; what stays is counted too (`kept_bytes`: the manifests other
repositories keep and the blobs kept manifests reference), so each untagged byte lands in exactly one of
the two. All of it is one SQL statement over the deleted tag ids.

At scale it never probes for keepers: the maintained counts (`analytics.ingest.figures`) say how many
holdings keep each manifest (`RegistryManifestRef.refs`) and blob (`RegistryBlob.refs`), so a manifest
or blob is freed exactly when the deletion removes as many holdings using it as the registry has. The
cost follows the affected repositories, however widely their blobs are shared.

Bounded (`whatif_bounded`, what the API and the page call): deleting every tag of a registry is read
from the maintained rows (`ScopeFigures`, `RegistryHeld`) in one probe, exactly; any other selection is
computed when its scope holds at most `WHATIF_SYNC_HOLDINGS` images and other holdings (or it lists its
tags or images one by one), else refused with `SelectionTooLarge`, which says to narrow it or run it as
a job (`analytics.jobs`). The lists of lost manifests and deleted tags are keyset pages of at most
`MAX_DETAILS` rows, never the whole set.

`not_pulled_days` selects the cold tags (`analytics.selectors.pulls`: every manifest they reach unpulled in
the window), so the cold-image answer's freed bytes are this module's, not a second size rule; an impact
of such a rule carries `pulls`, the coverage of its window.
"""

from __future__ import annotations

import heapq
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Q, QuerySet, Sum, Window
from django.db.models.expressions import RawSQL
from django.db.models.functions import RowNumber
from django.utils import timezone

from analytics.errors import InvalidRequest, SelectionTooLarge
from analytics.infra.sqlarrays import int_array
from analytics.models import (
    NamespaceFigures,
    RegistryHeld,
    Repository,
    RepositoryManifest,
    ScopeFigures,
    Tag,
)
from analytics.selectors import pulls
from analytics.selectors.kept import KeptBlob, KeptBlobHolders, kept_blob_holders
from analytics.selectors.scope import glob_regex


@dataclass(frozen=True)
class TagRule:
    """Which current tags to delete. Filters combine (AND); `keep_newest` ranks within what they leave."""

    registry_id: int | None = None
    namespace: str | None = None
    repository_id: int | None = None
    tag_glob: str | None = None
    not_seen_days: int | None = None  # last seen by a scan more than N days ago
    # reaching only manifests not pulled in N days (`analytics.selectors.pulls`: cold tags)
    not_pulled_days: int | None = None
    keep_newest: int | None = None  # all but the newest N per repository
    newest_by: str = "first_seen"  # or "created": the manifest's config `created`
    tags: tuple[tuple[str, str], ...] = ()  # explicit (repository, tag) pairs
    holding_ids: tuple[int, ...] = ()  # explicit images: the tags naming them directly in their repository


# A rule's numbers stay within what SQL and dates can hold, and what it lists one by one stays short:
# each listed tag or image is one more term of the query (README "Limits").
MAX_NOT_SEEN_DAYS = 36_500
MAX_KEEP_NEWEST = 1_000_000
MAX_LISTED = 1000


def too_many_listed(name: str) -> str:
    return (
        f"{name}: at most {MAX_LISTED} may be listed; select more by rule instead "
        "(registry, namespace, repository, tag_glob, not_seen_days, not_pulled_days, keep_newest)"
    )


def rule_check(rule: TagRule) -> None:
    """A rule every entry point may pass on (API, pages, command): an unusable value is an InvalidRequest
    naming it."""
    for name, value, most in (
        ("not_seen_days", rule.not_seen_days, MAX_NOT_SEEN_DAYS),
        ("keep_newest", rule.keep_newest, MAX_KEEP_NEWEST),
    ):
        if value is not None and not 0 <= value <= most:
            raise InvalidRequest(f"{name} must be a whole number from 0 to {most}, not {value}")
    pulls.days_check("not_pulled_days", rule.not_pulled_days)
    if rule.tag_glob:
        glob_regex(rule.tag_glob)
    for name, listed in (("tags", rule.tags), ("images", rule.holding_ids)):
        if len(listed) > MAX_LISTED:
            raise InvalidRequest(too_many_listed(name))


def rule_tags(*, rule: TagRule, now: datetime | None = None) -> QuerySet[Tag]:
    """The current tags a rule selects."""
    rule_check(rule)
    qs = Tag.objects.filter(removed_at=None, manifest__isnull=False)
    if rule.registry_id is not None:
        qs = qs.filter(repository__registry_id=rule.registry_id)
    if rule.repository_id is not None:
        qs = qs.filter(repository_id=rule.repository_id)
    if rule.namespace:
        ns = rule.namespace.strip("/")
        qs = qs.filter(Q(repository__name=ns) | Q(repository__name__startswith=ns + "/"))
    if rule.tag_glob:
        qs = qs.filter(name__regex=glob_regex(rule.tag_glob))
    if rule.not_seen_days is not None:
        qs = qs.filter(last_seen__lt=(now or timezone.now()) - timedelta(days=rule.not_seen_days))
    if rule.not_pulled_days is not None:
        # the cold tags of the rule's place, in the same statement (a hashed subplan)
        sql, params = pulls.cold_tags_sql(
            registry_id=rule.registry_id, namespace=rule.namespace, repository_id=rule.repository_id
        )
        cutoff = pulls.not_pulled_cutoff(days=rule.not_pulled_days, now=now or timezone.now())
        # RawSQL takes positional parameters: the named ones in the order they appear
        positional, values = _positional(sql, {**params, "cutoff": cutoff})
        qs = qs.filter(id__in=RawSQL(positional, values))
    if rule.tags:
        pairs = Q()
        for repository, tag in rule.tags:
            pairs |= Q(repository__name=repository, name=tag)
        qs = qs.filter(pairs)
    if rule.holding_ids:
        held = RepositoryManifest.objects.filter(id__in=rule.holding_ids)
        pairs = Q()
        for repository_id, manifest_id in held.values_list("repository_id", "manifest_id"):
            pairs |= Q(repository_id=repository_id, manifest_id=manifest_id)
        qs = qs.filter(pairs) if pairs else qs.none()
    if rule.keep_newest is not None:
        order = F("manifest__created") if rule.newest_by == "created" else F("first_seen")
        ranked = qs.annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("repository_id")],
                order_by=[order.desc(nulls_last=True), F("name").desc()],
            )
        ).values("id", "rank")
        # A window cannot be filtered in the same query; rank in a subquery, then filter by id.
        qs = Tag.objects.filter(id__in=_ranked_ids(ranked, rule.keep_newest))
    return qs


def _positional(sql: str, params: dict[str, object]) -> tuple[str, list[object]]:
    """`%(name)s` placeholders as `%s` with their values in order (the ORM's raw SQL is positional)."""
    values: list[object] = []

    def one(match: re.Match) -> str:
        values.append(params[match.group(1)])
        return "%s"

    return re.sub(r"%\((\w+)\)s", one, sql), values


def _ranked_ids(ranked: QuerySet, keep: int) -> list[int]:
    sql, params = ranked.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM ({sql}) ranked WHERE rank > %s", [*params, keep])
        return [row[0] for row in cursor.fetchall()]


@dataclass(frozen=True)
class LostManifest:
    repository_id: int
    repository: str
    manifest_id: int
    digest: str
    kind: str
    size: int
    freed: bool  # no other repository of the registry keeps it


@dataclass(frozen=True)
class RepositoryImpact:
    """One repository's part of a deletion. Freed bytes are attributed to the repository whose lost
    holdings alone held them; what several repositories of the deletion all lost is `SharedFreed`, so the
    repositories' freed_bytes and the shared line add up to the deletion's freed_bytes exactly."""

    repository_id: int
    repository: str
    tags: int  # tags deleted
    manifests_untagged: int  # its holdings no remaining tag reaches
    manifests_freed: int  # of those, freed and attributed to it
    blobs_freed: int
    freed_bytes: int


@dataclass(frozen=True)
class SharedFreed:
    """Freed manifests and blobs that two or more repositories of the deletion lost: counted once, here."""

    manifests: int = 0
    blobs: int = 0
    freed_bytes: int = 0


@dataclass(frozen=True)
class DeletionImpact:
    tags: int
    manifests_untagged: int  # (repository, manifest) holdings no remaining tag reaches
    manifests_freed: int  # manifest digests no repository of the registry keeps any more
    blobs_freed: int
    freed_bytes: int  # manifests + blobs freed: what garbage collection removes
    freed_manifest_bytes: int
    freed_blob_bytes: int
    shared_blobs: int  # blobs of the untagged manifests that stay: a manifest the registry keeps uses them
    shared_bytes: int  # their bytes: blobs only (the manifests that stay are shared_manifest_bytes)
    # untagged manifests that stay: another repository of the registry (another namespace, say) keeps them
    shared_manifests: int = 0
    shared_manifest_bytes: int = 0
    # what stays of the selection: shared_manifest_bytes + shared_bytes. freed_bytes + kept_bytes is the
    # distinct bytes (per registry) of the untagged manifests and their blobs; see `deletion_impact`
    kept_bytes: int = 0
    manifests: list[LostManifest] = field(default_factory=list)
    deleted_tags: list[tuple[int, str, str, str]] = field(default_factory=list)  # id, repo, tag, digest
    # how it was answered: "maintained" (read off the maintained rows) or "computed" (the statement)
    answered_by: str = "computed"
    # the lists are pages: a row past the last one listed exists (page on with `after` = the last key)
    manifests_more: bool = False
    deleted_tags_more: bool = False
    # a rule with not_pulled_days: where pulls come from, since when they are counted, and whether that
    # spans the window (`pulls.coverage_data`); None otherwise
    pulls: dict | None = None
    # with by_repository: each repository's part, largest freed first, and the part several shared; the
    # repositories' freed_bytes plus shared_freed's are freed_bytes. kept_largest: the largest blobs that
    # stay (at most KEPT_LARGEST), each with how many holdings keep it
    repositories: list[RepositoryImpact] = field(default_factory=list)
    shared_freed: SharedFreed | None = None
    kept_largest: list[KeptBlobHolders] = field(default_factory=list)


_WHATIF_SQL = """
WITH RECURSIVE
del AS (
    SELECT t.id, t.repository_id FROM analytics_tag t
    WHERE t.id = ANY(%(tags)s::bigint[]) AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
),
arepo AS (
    SELECT DISTINCT d.repository_id, r.registry_id FROM del d
    JOIN analytics_repository r ON r.id = d.repository_id
),
reach(repository_id, manifest_id) AS (
    SELECT t.repository_id, t.manifest_id FROM analytics_tag t
    WHERE t.repository_id IN (SELECT repository_id FROM arepo) AND t.removed_at IS NULL
      -- NOT IN a materialized set is a hashed subplan: NOT (t.id = ANY(array)) compares each tag with every
      -- deleted id (a bound parameter is never hashed), 1.5 s of 20,000 ids over 29,000 tags
      AND t.manifest_id IS NOT NULL AND t.id NOT IN (SELECT id FROM del)
    UNION
    SELECT reach.repository_id, e.child_id
    FROM reach JOIN analytics_indexentry e ON e.index_id = reach.manifest_id
),
lost AS (
    SELECT rm.repository_id, a.registry_id, rm.manifest_id
    FROM analytics_repositorymanifest rm JOIN arepo a ON a.repository_id = rm.repository_id
    WHERE rm.present AND NOT EXISTS (
        SELECT 1 FROM reach
        WHERE reach.repository_id = rm.repository_id AND reach.manifest_id = rm.manifest_id)
),
lost_n AS (
    SELECT l.registry_id, l.manifest_id, count(*) AS n FROM lost l GROUP BY 1, 2
),
judged_m AS (
    -- RegistryManifestRef.refs counts the repositories holding it: freed when all of them lose it,
    -- else kept by the others (in another namespace, say)
    -- the size by a probe per row: a join unfiltered would be planned as a scan of every manifest
    SELECT ln.registry_id, ln.manifest_id, coalesce(x.refs, 0) <= ln.n AS freed,
        (SELECT m.size FROM analytics_manifest m WHERE m.id = ln.manifest_id) AS size
    FROM lost_n ln
    LEFT JOIN analytics_registrymanifestref x
        ON x.registry_id = ln.registry_id AND x.manifest_id = ln.manifest_id
),
mblobs AS (
    -- each lost holding references each distinct blob of its manifest (layer or config) once
    SELECT ln.registry_id, ln.manifest_id, ln.n, ml.blob_id FROM lost_n ln
    JOIN analytics_manifestlayer ml ON ml.manifest_id = ln.manifest_id
    UNION
    SELECT ln.registry_id, ln.manifest_id, ln.n, m.config_id FROM lost_n ln
    JOIN analytics_manifest m ON m.id = ln.manifest_id WHERE m.config_id IS NOT NULL
),
lost_refs AS (
    SELECT registry_id, blob_id, sum(n) AS n FROM mblobs GROUP BY 1, 2
),
judged AS (
    -- RegistryBlob.refs counts the present holdings referencing it: freed when the deletion removes all;
    -- else the holdings left referencing it (kept_by) keep it
    SELECT lr.registry_id, lr.blob_id, coalesce(rb.refs, 0) <= lr.n AS freed,
        greatest(coalesce(rb.refs, 0) - lr.n, 0)::bigint AS kept_by
    FROM lost_refs lr
    LEFT JOIN analytics_registryblob rb ON rb.registry_id = lr.registry_id AND rb.blob_id = lr.blob_id
),
owners AS (
    -- by_repository only: the repositories whose lost holdings reference each blob (first = last: one)
    SELECT mb.registry_id, mb.blob_id, min(l.repository_id) AS first, max(l.repository_id) AS last
    FROM mblobs mb JOIN lost l ON l.registry_id = mb.registry_id AND l.manifest_id = mb.manifest_id
    GROUP BY 1, 2
)
SELECT CASE WHEN j.freed THEN 'f' ELSE 'k' END, j.registry_id, j.manifest_id, j.size, NULL::bigint
FROM judged_m j
UNION ALL SELECT 'l', l.repository_id, l.manifest_id, l.registry_id, NULL FROM lost l
UNION ALL SELECT CASE WHEN x.freed THEN 'b' ELSE 's' END, {blob_who}, x.blob_id, b.size, x.kept_by
    FROM judged x JOIN analytics_blob b ON b.id = x.blob_id {owners_join}
UNION ALL SELECT 'd', d.repository_id, d.id, NULL, NULL FROM del d
"""
# the repository a freed blob is attributed to: the one repository whose lost holdings referenced it, 0
# when several did (the "shared between removed repositories" line); the registry when not asked
_BY_REPOSITORY = {
    "blob_who": "CASE WHEN NOT x.freed THEN x.registry_id WHEN o.first = o.last THEN o.first ELSE 0 END",
    "owners_join": "LEFT JOIN owners o ON o.registry_id = x.registry_id AND o.blob_id = x.blob_id",
}
_TOTALS_ONLY = {"blob_who": "x.registry_id", "owners_join": ""}


def deletion_impact(
    *,
    tag_ids: list[int],
    details: bool = True,
    limit: int | None = None,
    manifests_after: tuple[str, str] | None = None,
    tags_after: tuple[str, str] | None = None,
    by_repository: bool = False,
) -> DeletionImpact:
    """What deleting these tags and then collecting garbage frees, per registry, summed.

    With `by_repository`, the same statement also says each repository's part (`RepositoryImpact`, every
    repository that loses a holding or a tag) and the largest blobs that stay (`kept_largest`).

    Counts follow the registry: a manifest held by two repositories of one registry is freed only when
    both lose it; the same digest in two registries is two copies, each judged in its own registry.
    With a `limit`, the lists are pages of that many rows after the keys given ((repository, digest),
    (repository, tag)), in that order.

    Every byte the deletion untags is counted once, freed or kept: an untagged manifest is freed or
    stays (`shared_manifests`: another repository keeps it), and each distinct blob of the untagged
    manifests is freed or stays (`shared_blobs`: a manifest the registry keeps references it). So
    `freed_bytes + kept_bytes` is the distinct bytes, per registry, of the untagged manifests and their
    blobs, whatever the selection. Deleting every tag of a scope (a registry, a namespace, a repository)
    untags every present holding of it, and that sum is the scope's `stored_bytes`
    (`dedup_summary`, DESIGN section 3), except in two cases where the definitions differ (tested):
    - foreign (non-distributable) layers: the summary leaves them out of `stored_bytes` (they are its
      `foreign_bytes`), the what-if counts them as blobs, as `RegistryBlob` and `RegistryHeld` do; the
      sum is `stored_bytes + foreign_bytes`;
    - a scope over several registries (a namespace named without a registry): the summary counts a digest
      once however many registries hold it, the what-if once per registry (each registry collects its own
      garbage); the sum is the scopes' `stored_bytes` of each registry, added.
    """
    sql = _WHATIF_SQL.format(**(_BY_REPOSITORY if by_repository else _TOTALS_ONLY))
    with connection.cursor() as cursor:
        cursor.execute(sql, {"tags": int_array(tag_ids)})
        rows = cursor.fetchall()
    freed = {(g, m): int(s) for kind, g, m, s, _ in rows if kind == "f"}
    kept = [int(s) for kind, _, _, s, _ in rows if kind == "k"]
    lost = [(r, m) for kind, r, m, _, _ in rows if kind == "l"]
    blob_sizes = [int(s) for kind, _, _, s, _ in rows if kind == "b"]
    shared_sizes = [int(s) for kind, _, _, s, _ in rows if kind == "s"]
    deleted = [t for kind, _, t, _, _ in rows if kind == "d"]
    # the same digest freed in two registries is two copies, one per registry
    freed_manifest_bytes = sum(freed.values())
    manifests, manifests_more, tag_rows, tags_more = [], False, [], False
    if details:
        manifests, manifests_more = _lost_rows(lost, freed, limit=limit, after=manifests_after)
        tag_rows, tags_more = _tag_rows(deleted, limit=limit, after=tags_after)
    return DeletionImpact(
        tags=len(deleted),
        manifests_untagged=len(lost),
        manifests_freed=len(freed),
        blobs_freed=len(blob_sizes),
        freed_bytes=freed_manifest_bytes + sum(blob_sizes),
        freed_manifest_bytes=freed_manifest_bytes,
        freed_blob_bytes=sum(blob_sizes),
        shared_blobs=len(shared_sizes),
        shared_bytes=sum(shared_sizes),
        shared_manifests=len(kept),
        shared_manifest_bytes=sum(kept),
        kept_bytes=sum(kept) + sum(shared_sizes),
        manifests=manifests,
        deleted_tags=tag_rows,
        manifests_more=manifests_more,
        deleted_tags_more=tags_more,
        **(_by_repository(rows) if by_repository else {}),
    )


# the largest kept blobs a breakdown names
KEPT_LARGEST = 10


def _by_repository(rows: list[tuple]) -> dict:
    """Each repository's part of the statement's rows, the shared part, and the largest kept blobs."""
    losers: dict[tuple[int, int], list[int]] = defaultdict(list)  # (registry, manifest) -> repositories
    for kind, r, m, g, _ in rows:
        if kind == "l":
            losers[(g, m)].append(r)
    parts: dict[int, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("tags", "untagged", "manifests", "blobs", "bytes"), 0)
    )
    shared = dict.fromkeys(("manifests", "blobs", "bytes"), 0)
    for kind, who, m, size, _ in rows:
        if kind == "d":
            parts[who]["tags"] += 1
        elif kind == "l":
            parts[who]["untagged"] += 1
        elif kind == "f":
            held_by = losers[(who, m)]
            if len(held_by) == 1:
                part = parts[held_by[0]]
                part["manifests"] += 1
                part["bytes"] += int(size)
            else:
                shared["manifests"] += 1
                shared["bytes"] += int(size)
        elif kind == "b":
            if who:
                parts[who]["blobs"] += 1
                parts[who]["bytes"] += int(size)
            else:
                shared["blobs"] += 1
                shared["bytes"] += int(size)
    names = dict(Repository.objects.filter(id__in=parts).values_list("id", "name"))
    repositories = sorted(
        (
            RepositoryImpact(
                repository_id=r,
                repository=names[r],
                tags=p["tags"],
                manifests_untagged=p["untagged"],
                manifests_freed=p["manifests"],
                blobs_freed=p["blobs"],
                freed_bytes=p["bytes"],
            )
            for r, p in parts.items()
        ),
        key=lambda x: (-x.freed_bytes, x.repository, x.repository_id),
    )
    kept = heapq.nlargest(
        KEPT_LARGEST,
        ((int(size), int(kept_by), g, blob) for kind, g, blob, size, kept_by in rows if kind == "s"),
    )
    return {
        "repositories": repositories,
        "shared_freed": SharedFreed(
            manifests=shared["manifests"], blobs=shared["blobs"], freed_bytes=shared["bytes"]
        ),
        "kept_largest": kept_blob_holders(
            kept=[KeptBlob(registry_id=g, blob_id=b, size=size, kept_by=n) for size, n, g, b in kept],
            lost=[(r, m) for kind, r, m, _, _ in rows if kind == "l"],
            deleted_tag_ids=[t for kind, _, t, _, _ in rows if kind == "d"],
        ),
    }


# A page of lost holdings in (repository, digest) order, as Python orders strings (COLLATE "C"), read in
# one statement over the lost pairs: a large deletion's page never builds every row in Python
_LOST_PAGE = """
SELECT l.r, r.name, l.m, m.digest, m.kind, m.size, r.registry_id
FROM unnest(%(r)s::bigint[], %(m)s::bigint[]) AS l(r, m)
JOIN analytics_repository r ON r.id = l.r
JOIN analytics_manifest m ON m.id = l.m
WHERE (r.name COLLATE "C", m.digest COLLATE "C") > (%(after_r)s, %(after_d)s)
ORDER BY r.name COLLATE "C", m.digest COLLATE "C"
LIMIT %(n)s
"""


def _lost_rows(
    lost: list[tuple[int, int]],
    freed: dict[tuple[int, int], int],
    *,
    limit: int | None = None,
    after: tuple[str, str] | None = None,
) -> tuple[list[LostManifest], bool]:
    if not lost:
        return [], False
    after_r, after_d = after or ("", "")
    params = {
        "r": int_array(r for r, _ in lost),
        "m": int_array(m for _, m in lost),
        "after_r": after_r,
        "after_d": after_d,
        "n": len(lost) + 1 if limit is None else limit + 1,
    }
    with connection.cursor() as cursor:
        cursor.execute(_LOST_PAGE, params)
        rows = cursor.fetchall()
    more = limit is not None and len(rows) > limit
    return [
        LostManifest(
            repository_id=r,
            repository=name,
            manifest_id=m,
            digest=digest,
            kind=kind,
            size=size,
            freed=(registry_id, m) in freed,
        )
        for r, name, m, digest, kind, size, registry_id in (rows[:limit] if limit is not None else rows)
    ], more


def _tag_rows(
    deleted: list[int], *, limit: int | None = None, after: tuple[str, str] | None = None
) -> tuple[list[tuple[int, str, str, str]], bool]:
    # the ids as one array parameter (`= ANY`), not an IN list of as many parameters
    qs = Tag.objects.filter(id__in=RawSQL("SELECT unnest(%s::bigint[])", [int_array(deleted)]))
    if after is not None:
        qs = qs.filter(Q(repository__name__gt=after[0]) | Q(repository__name=after[0], name__gt=after[1]))
    qs = qs.order_by("repository__name", "name").values_list(
        "id", "repository__name", "name", "manifest__digest"
    )
    if limit is None:
        return list(qs), False
    rows = list(qs[: limit + 1])
    return rows[:limit], len(rows) > limit


def whatif(*, rule: TagRule, details: bool = True) -> DeletionImpact:
    """Select tags by a rule, then measure what deleting them frees."""
    now = timezone.now()
    ids = list(rule_tags(rule=rule, now=now).values_list("id", flat=True))
    return with_coverage(deletion_impact(tag_ids=ids, details=details), rule=rule, now=now)


def with_coverage(impact: DeletionImpact, *, rule: TagRule, now: datetime) -> DeletionImpact:
    """The impact of a rule naming not_pulled_days, with the pulls' coverage of that window."""
    if rule.not_pulled_days is None:
        return impact
    coverage = pulls.pull_coverage(
        registry_id=rule.registry_id,
        namespace=rule.namespace,
        repository_id=rule.repository_id,
        days=rule.not_pulled_days,
        now=now,
    )
    return replace(impact, pulls=pulls.coverage_data(coverage))


# --- bounded: what the API and the pages ask ----------------------------------------------------------------

# The lists of a bounded answer are pages of this many rows by default, at most MAX_DETAILS.
DEFAULT_DETAILS = 100
MAX_DETAILS = 1000


def whole_registry(rule: TagRule) -> bool:
    """Every current tag of one registry, nothing narrower: answered from the maintained rows."""
    return rule.registry_id is not None and not any(
        [
            rule.namespace,
            rule.repository_id is not None,
            rule.tag_glob,
            rule.not_seen_days is not None,
            rule.not_pulled_days is not None,
            rule.keep_newest is not None,
            rule.tags,
            rule.holding_ids,
        ]
    )


def selection_holdings(rule: TagRule) -> int:
    """The present holdings (images, indexes, artifacts) of the rule's scope, from the maintained rows:
    what the statement's cost follows, whatever the filters leave of it."""
    if rule.repository_id is not None:
        rows = ScopeFigures.objects.filter(repository_id=rule.repository_id)
        return int(rows.aggregate(n=Sum("manifests"))["n"] or 0)
    registry = {} if rule.registry_id is None else {"registry_id": rule.registry_id}
    if rule.namespace:
        ns = rule.namespace.strip("/")
        below = NamespaceFigures.objects.filter(namespace=ns, **registry).aggregate(n=Sum("manifests"))["n"]
        named = ScopeFigures.objects.filter(
            repository__name=ns, **{f"repository__{k}": v for k, v in registry.items()}
        ).aggregate(n=Sum("manifests"))["n"]
        return int(below or 0) + int(named or 0)
    rows = ScopeFigures.objects.filter(repository=None, **registry)
    return int(rows.aggregate(n=Sum("manifests"))["n"] or 0)


def too_large(held: int, cap: int) -> str:
    return (
        f"this selection's scope holds {held:,} images and other manifests; a request computes a what-if "
        f"over at most {cap:,}. Narrow it (a repository or namespace, or list the tags), or POST the same "
        "rule to /api/v1/whatif/jobs/ to run it as a job and fetch its result (deleting every tag of a "
        "whole registry is answered at once)"
    )


def whatif_bounded(
    *,
    rule: TagRule,
    details: bool = True,
    limit: int = DEFAULT_DETAILS,
    manifests_after: tuple[str, str] | None = None,
    tags_after: tuple[str, str] | None = None,
) -> DeletionImpact:
    """The what-if a request may answer: a whole registry from the maintained rows, a selection whose
    scope holds at most `WHATIF_SYNC_HOLDINGS` by the statement, anything else `SelectionTooLarge`.
    Lists are pages of `limit` rows (at most MAX_DETAILS)."""
    rule_check(rule)
    if not 1 <= limit <= MAX_DETAILS:
        raise InvalidRequest(f"details_limit must be a whole number from 1 to {MAX_DETAILS}, not {limit}")
    if whole_registry(rule):
        return registry_whole_impact(
            registry_id=rule.registry_id,  # type: ignore[arg-type]
            details=details,
            limit=limit,
            manifests_after=manifests_after,
            tags_after=tags_after,
        )
    if not (rule.tags or rule.holding_ids):  # listed ones cost their repositories, at most MAX_LISTED
        cap = settings.WHATIF_SYNC_HOLDINGS
        held = selection_holdings(rule)
        if held > cap:
            raise SelectionTooLarge(too_large(held, cap))
    now = timezone.now()
    ids = list(rule_tags(rule=rule, now=now).values_list("id", flat=True))
    impact = deletion_impact(
        tag_ids=ids, details=details, limit=limit, manifests_after=manifests_after, tags_after=tags_after
    )
    return with_coverage(impact, rule=rule, now=now)


# Lost manifests of a whole registry: every present holding, by repository name then digest; a
# repository's holdings are sorted within it, so a page reads a few repositories, not the registry.
_HELD_PAGE = """
SELECT r.id, r.name, h.id, h.digest, h.kind, h.size
FROM analytics_repository r
CROSS JOIN LATERAL (
    SELECT m.id, m.digest, m.kind, m.size FROM analytics_repositorymanifest rm
    JOIN analytics_manifest m ON m.id = rm.manifest_id
    WHERE rm.repository_id = r.id AND rm.present AND (r.name > %(repo)s OR m.digest > %(key)s)
    ORDER BY m.digest LIMIT %(n)s
) h
WHERE r.registry_id = %(registry)s AND r.name >= %(repo)s
ORDER BY r.name, h.digest LIMIT %(n)s
"""

# Deleted tags of a whole registry: every current tag naming a manifest, by repository then name.
_TAGS_PAGE = """
SELECT t.id, r.name, t.name, m.digest
FROM analytics_repository r
CROSS JOIN LATERAL (
    SELECT t.id, t.name, t.manifest_id FROM analytics_tag t
    WHERE t.repository_id = r.id AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
        AND (r.name > %(repo)s OR t.name > %(key)s)
    ORDER BY t.name LIMIT %(n)s
) t
JOIN analytics_manifest m ON m.id = t.manifest_id
WHERE r.registry_id = %(registry)s AND r.name >= %(repo)s
ORDER BY r.name, t.name LIMIT %(n)s
"""


def registry_whole_impact(
    *,
    registry_id: int,
    details: bool = True,
    limit: int = DEFAULT_DETAILS,
    manifests_after: tuple[str, str] | None = None,
    tags_after: tuple[str, str] | None = None,
) -> DeletionImpact:
    """Deleting every current tag of a registry, read off the maintained rows: every present holding is
    lost, and every manifest and blob the registry holds is freed (`RegistryHeld`); nothing is shared.
    The same figures as `whatif(rule=TagRule(registry_id=...))`, in one probe (tested)."""
    holdings = (
        ScopeFigures.objects.filter(registry_id=registry_id, repository=None)
        .values_list("manifests", flat=True)
        .first()
    )
    held = RegistryHeld.objects.filter(registry_id=registry_id).first() or RegistryHeld(
        registry_id=registry_id
    )
    manifests: list[LostManifest] = []
    tag_rows: list[tuple[int, str, str, str]] = []
    manifests_more = tags_more = False
    if details:
        with connection.cursor() as cursor:
            repo, key = manifests_after or ("", "")
            cursor.execute(_HELD_PAGE, {"registry": registry_id, "repo": repo, "key": key, "n": limit + 1})
            rows = cursor.fetchall()
            manifests = [
                LostManifest(
                    repository_id=r_id,
                    repository=r,
                    manifest_id=m_id,
                    digest=d,
                    kind=k,
                    size=size,
                    freed=True,
                )
                for r_id, r, m_id, d, k, size in rows[:limit]
            ]
            manifests_more = len(rows) > limit
            repo, key = tags_after or ("", "")
            cursor.execute(_TAGS_PAGE, {"registry": registry_id, "repo": repo, "key": key, "n": limit + 1})
            rows = cursor.fetchall()
            tag_rows, tags_more = [tuple(r) for r in rows[:limit]], len(rows) > limit
    return DeletionImpact(
        tags=held.tags,
        manifests_untagged=int(holdings or 0),
        manifests_freed=held.manifests,
        blobs_freed=held.blobs,
        freed_bytes=held.manifest_bytes + held.blob_bytes,
        freed_manifest_bytes=held.manifest_bytes,
        freed_blob_bytes=held.blob_bytes,
        shared_blobs=0,
        shared_bytes=0,
        shared_manifests=0,
        shared_manifest_bytes=0,
        kept_bytes=0,
        manifests=manifests,
        deleted_tags=tag_rows,  # type: ignore[arg-type]
        answered_by="maintained",
        manifests_more=manifests_more,
        deleted_tags_more=tags_more,
    )
