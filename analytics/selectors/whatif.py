"""What-if deletion: the exact bytes a registry frees when a set of tags is deleted and it collects garbage.

Registry rule (distribution's `garbage-collect --delete-untagged`): a repository keeps the manifests its
remaining tags reach (through indexes, to any depth); a manifest's bytes stay while any repository of
the registry keeps it; a blob (config or layer) stays while any kept manifest of the registry references
it. Everything else the set held is freed; what stays is counted too (`kept_bytes`: the manifests other
repositories keep and the blobs kept manifests reference), so each untagged byte lands in exactly one of
the two. All of it is one SQL statement over the deleted tag ids, which aggregates: it returns the totals,
each repository's part, the largest blobs that stay and one page of lost holdings, never a row per
holding or blob.

At scale it never probes for keepers: the maintained counts (`analytics.ingest.figures`) say how many
holdings keep each manifest (`RegistryManifestRef.refs`) and blob (`RegistryBlob.refs`), so a manifest
or blob is freed exactly when the deletion removes as many holdings using it as the registry has. The
cost follows the lost holdings' blob references (each lost manifest's distinct layers and config),
however widely those blobs are shared: about 0.58 M references for GitLab's selection over the 100,000-image
bench, 2 s of database CPU. A selection of `WHATIF_HASHED_TAGS` tags or more runs with hash joins
(`statement_settings`); the answer is the same. Without a breakdown by repository, a selection of more
than `PRICE_FROM_KEPT_SHARE` of the registries' current tags is priced from what stays instead
(`whatif_statement`): the kept holdings' blob references, fewer than the lost ones.

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

import re
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
from analytics.infra.statements import local_settings
from analytics.models import (
    NamespaceFigures,
    RegistryHeld,
    RepositoryManifest,
    ScopeFigures,
    Tag,
)
from analytics.selectors import pulls
from analytics.selectors.kept import KeptBlob, KeptBlobHolders, holders_named, kept_blob_holders
from analytics.selectors.scope import glob_regex
from analytics.selectors.whatif_columns import (
    columns_rows,
    deleted_tags_reach,
    holders_found,
    repository_names,
)
from analytics.selectors.whatif_statement import (
    KEPT_LARGEST,
    WHATIF_KEPT_SQL,
    WHATIF_SETTINGS,
    WHATIF_SQL,
    priced_from_kept,
    statement_settings,
)


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
    newest_by: str = "first_seen"  # one of NEWEST_BY
    tags: tuple[tuple[str, str], ...] = ()  # explicit (repository, tag) pairs
    holding_ids: tuple[int, ...] = ()  # explicit images: the tags naming them directly in their repository


# How `keep_newest` ranks a repository's tags, newest first: `first_seen`, when a scan first saw the tag's
# name (a tag moved to another image keeps its rank); `current_since`, when it got its current image (its
# creation, last move or return after removal: what a registry calls the tag's push); `created`, its image's
# config `created`.
NEWEST_BY = ("first_seen", "current_since", "created")
_NEWEST_ORDER = {
    "first_seen": F("first_seen"),
    "current_since": F("current_since"),
    "created": F("manifest__created"),
}

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
    if rule.newest_by not in NEWEST_BY:
        raise InvalidRequest(f"newest_by must be one of {', '.join(NEWEST_BY)}, not {rule.newest_by!r}")
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
        order = _NEWEST_ORDER[rule.newest_by]
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


def deletion_impact(
    *,
    tag_ids: list[int],
    details: bool = True,
    limit: int | None = None,
    manifests_after: tuple[str, str] | None = None,
    tags_after: tuple[str, str] | None = None,
    by_repository: bool = False,
    registry_id: int | None = None,
) -> DeletionImpact:
    """What deleting these tags and then collecting garbage frees, per registry, summed.

    With `registry_id` (every tag is of that registry, as a policy's selection is), a selection of at
    least `WHATIF_COLUMNS_TAGS` tags is judged over the registry's columns at its current content version
    (`whatif_columns`: the statement's rule over arrays, the same rows), when they are kept (a scan's
    end keeps them) or the selection is half the registry's tags or more (then read); else, or when
    the columns cannot be had at one version, by the statement.

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

    The statement aggregates: it returns the totals, each repository's part, the largest kept blobs and
    one page of lost holdings, never a row per holding or blob (`statement_settings` says how it runs).
    """
    after_r, after_d = manifests_after or ("", "")
    params = {
        "by_repository": by_repository,
        "kept_largest": KEPT_LARGEST,
        "details": details,
        "after_r": after_r,
        "after_d": after_d,
        "page": None if limit is None else limit + 1,  # LIMIT NULL: every row
    }
    rows = None
    if registry_id is not None and 0 < settings.WHATIF_COLUMNS_TAGS <= len(tag_ids):
        rows = columns_rows(
            registry_id=registry_id,
            tag_ids=tag_ids,
            details=details,
            by_repository=by_repository,
            after_r=after_r,
            after_d=after_d,
            page=params["page"],
        )
    if rows is None:
        with local_settings(statement_settings(len(tag_ids))) as cursor:
            kept = not by_repository and priced_from_kept(len(tag_ids))
            cursor.execute(WHATIF_KEPT_SQL if kept else WHATIF_SQL, {**params, "tags": int_array(tag_ids)})
            rows = cursor.fetchall()
    one = {row[0]: row[1:] for row in rows if row[0] in "DLMB"}
    tags, untagged = int(one["D"][0]), int(one["L"][0])
    m_freed, m_freed_bytes, m_kept, m_kept_bytes, m_shared, m_shared_bytes = map(int, one["M"][:6])
    b_freed, b_freed_bytes, b_kept, b_kept_bytes = map(int, one["B"][:4])
    manifests, manifests_more, tag_rows, tags_more = [], False, [], False
    if details:
        # sums make the columns numeric: every number back to int
        page = sorted(
            (r[7], r[8], int(r[1]), int(r[2]), r[9], int(r[3]), bool(r[4])) for r in rows if r[0] == "P"
        )
        manifests_more = limit is not None and len(page) > limit
        manifests = [
            LostManifest(
                repository_id=r,
                repository=name,
                manifest_id=m,
                digest=digest,
                kind=kind,
                size=size,
                freed=freed,
            )
            for name, digest, r, m, kind, size, freed in (page[:limit] if limit is not None else page)
        ]
        deleted = next((r[1:] for r in rows if r[0] == "T"), None)  # the columns': repositories, tag ids
        tag_rows, tags_more = _tag_rows(
            tag_ids if deleted is None else deleted_tags_reach(*deleted, limit=limit, after=tags_after),
            repositories=[int(r[1]) for r in rows if r[0] == "A"],
            limit=limit,
            after=tags_after,
        )
    breakdown = {}
    if by_repository:
        breakdown = _by_repository(
            parts=[tuple(map(int, r[1:7])) for r in rows if r[0] == "R"],
            shared=SharedFreed(
                manifests=m_shared,
                blobs=int(one["B"][4]),
                freed_bytes=m_shared_bytes + int(one["B"][5]),
            ),
            kept=[
                KeptBlob(registry_id=int(r[1]), blob_id=int(r[2]), size=int(r[3]), kept_by=int(r[4]))
                for r in sorted(
                    (r for r in rows if r[0] == "K"), key=lambda r: (r[3], r[4], r[1], r[2]), reverse=True
                )
            ],
            tag_ids=tag_ids,
            found=holders_found(rows) if any(r[0] == "H" for r in rows) else None,
        )
    return DeletionImpact(
        tags=tags,
        manifests_untagged=untagged,
        manifests_freed=m_freed,
        blobs_freed=b_freed,
        freed_bytes=m_freed_bytes + b_freed_bytes,
        freed_manifest_bytes=m_freed_bytes,
        freed_blob_bytes=b_freed_bytes,
        shared_blobs=b_kept,
        shared_bytes=b_kept_bytes,
        shared_manifests=m_kept,
        shared_manifest_bytes=m_kept_bytes,
        kept_bytes=m_kept_bytes + b_kept_bytes,
        manifests=manifests,
        deleted_tags=tag_rows,
        manifests_more=manifests_more,
        deleted_tags_more=tags_more,
        **breakdown,
    )


def _by_repository(
    *,
    parts: list[tuple[int, ...]],
    shared: SharedFreed,
    kept: list[KeptBlob],
    tag_ids: list[int],
    found: dict[tuple[int, int], list[tuple]] | None = None,
) -> dict:
    """Each repository's part (the statement's sums), the shared part, and who keeps the largest blobs
    that stay (`found`: their holders, when the columns read them)."""
    names = repository_names([p[0] for p in parts])
    repositories = sorted(
        (
            RepositoryImpact(
                repository_id=r,
                repository=names[r],
                tags=tags,
                manifests_untagged=untagged,
                manifests_freed=manifests,
                blobs_freed=blobs,
                freed_bytes=freed,
            )
            for r, tags, untagged, manifests, blobs, freed in parts
        ),
        key=lambda x: (-x.freed_bytes, x.repository, x.repository_id),
    )
    return {
        "repositories": repositories,
        "shared_freed": shared,
        "kept_largest": (
            holders_named(kept=kept, found=found, deleted_tag_ids=tag_ids)
            if found is not None
            else kept_blob_holders(kept=kept, affected=[p[0] for p in parts], deleted_tag_ids=tag_ids)
        ),
    }


# A page of deleted tags by repository name then tag name: the repositories losing a tag walked in name
# order, each one's tags by name, a tag listed when it is among the deleted (a hashed set), stopping at the
# page's end; a large deletion's page never sorts every deleted tag. NOT (... NOT IN) keeps the set a hashed
# subplan, built once: as IN, the planner joins each repository's tags with it, hashing it per repository
_DELETED_TAGS_PAGE = """
WITH gone AS MATERIALIZED (SELECT unnest(%(tags)s::bigint[]) AS id)
SELECT t.id, r.name, t.name, m.digest
FROM analytics_repository r
CROSS JOIN LATERAL (
    SELECT t.id, t.name, t.manifest_id FROM analytics_tag t
    WHERE t.repository_id = r.id AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
        AND NOT (t.id NOT IN (SELECT id FROM gone)) AND (r.name > %(repo)s OR t.name > %(key)s)
    ORDER BY t.name LIMIT %(n)s
) t
JOIN analytics_manifest m ON m.id = t.manifest_id
WHERE r.id = ANY(%(repositories)s::bigint[]) AND r.name >= %(repo)s
ORDER BY r.name, t.name LIMIT %(n)s
"""


def _tag_rows(
    deleted: list[int],
    *,
    repositories: list[int],
    limit: int | None = None,
    after: tuple[str, str] | None = None,
) -> tuple[list[tuple[int, str, str, str]], bool]:
    """The current tags naming a manifest among `deleted` (in `repositories`, those losing one), as the
    statement counts them: a page of `limit` after the (repository, tag) key `after`."""
    repo, key = after or ("", "")
    params = {
        "tags": int_array(deleted),
        "repositories": int_array(repositories),
        "repo": repo,
        "key": key,
        "n": None if limit is None else limit + 1,
    }
    with local_settings(WHATIF_SETTINGS) as cursor:  # the hashed set in memory
        cursor.execute(_DELETED_TAGS_PAGE, params)
        rows = [tuple(row) for row in cursor.fetchall()]
    if limit is None:
        return rows, False  # type: ignore[return-value]
    return rows[:limit], len(rows) > limit  # type: ignore[return-value]


def whatif(*, rule: TagRule, details: bool = True) -> DeletionImpact:
    """Select tags by a rule, then measure what deleting them frees."""
    now = timezone.now()
    ids = list(rule_tags(rule=rule, now=now).values_list("id", flat=True))
    impact = deletion_impact(tag_ids=ids, details=details, registry_id=rule.registry_id)
    return with_coverage(impact, rule=rule, now=now)


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
