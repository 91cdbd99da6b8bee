"""What a policy is evaluated over, as SQL over the scope: per repository its images (as registries list
them: a directly tagged manifest with all its tags, or an untagged one) and its tags, each with a push
time and, where pulls are counted, a pull time. The formats' selections (`gitlab`, `ecr`, `harbor`) are
statements over these common table expressions: only what they select, and the counts the answer needs,
come back to Python.

- An image's push time is the earliest of its push events (registry events, while Layerlens keeps them)
  and the first time a scan saw the repository hold it (`RepositoryManifest.first_seen`). Both are at or
  after the true push, so the earlier is the better; `from_events` says it was an event's (on a tie too).
- A tag's push time is the earliest of the push events of that tag to its current digest and the time
  a scan saw the tag reach that digest (`Tag.current_since`, maintained by the ingest: its creation, or
  its latest move or return, as its latest `TagEvent` to a digest says).
- An image's pull time is the last pull of its digest in its repository (`ManifestPulls`, counted from
  pull events; never the scanner's reads); NULL when none was counted.
- Untagged images are the holdings no tag reaches any more (`present` false): what a scan last saw. The
  children of a tagged index are part of that index's image, as registries list them, never images of
  their own.

Tag names (and repository names) are matched by the formats' own matchers in Python
(`analytics.policies.patterns`), never translated to PostgreSQL regexes, whose semantics differ: the
scope's distinct tag names are read once (`tag_names`), matched, and the names each predicate takes go
back to SQL as one bit string per name (`name_bits`; bit k set when predicate k matches), aggregated per
image with `bit_or` (one of its tags matches) and `bit_and` (all of them do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Q

from analytics.infra.statements import local_settings
from analytics.models import Registry, RegistryEvent, Repository

EVENTS = "events"
SCANS = "scans"


@dataclass(frozen=True)
class Scope:
    registry: Registry
    repositories: dict[int, str]  # id -> name, the scope's repositories
    namespace: str | None = None  # the scope's namespace (a Harbor project), if it names one
    repository_id: int | None = None  # the scope's repository, if it names one

    @property
    def repository(self) -> str | None:
        return self.repositories.get(self.repository_id) if self.repository_id is not None else None


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


def scope_read(*, registry_id: int, namespace: str | None, repository_id: int | None) -> Scope:
    return Scope(
        registry=Registry.objects.get(id=registry_id),
        repositories=scope_repositories(
            registry_id=registry_id, namespace=namespace, repository_id=repository_id
        ),
        namespace=(namespace or "").strip("/") or None,
        repository_id=repository_id,
    )


def scope_sql(scope: Scope) -> tuple[str, str, dict]:
    """The scope's repositories (`r`) and its registry events (`e`, keyed by repository name) as SQL
    conditions, by registry then repository or namespace (never a list of ids), with their parameters."""
    where, events = ["r.registry_id = %(registry_id)s"], ["e.registry_id = %(registry_id)s"]
    params: dict = {"registry_id": scope.registry.id}
    if scope.repository_id is not None:
        where.append("r.id = %(repository_id)s")
        events.append("e.repository = %(repository)s")
        params["repository_id"] = scope.repository_id
        params["repository"] = scope.repository or ""
    if scope.namespace:
        where.append("(r.name = %(ns)s OR starts_with(r.name, %(ns_prefix)s))")
        events.append("(e.repository = %(ns)s OR starts_with(e.repository, %(ns_prefix)s))")
        params["ns"] = scope.namespace
        params["ns_prefix"] = scope.namespace + "/"
    params["push"] = RegistryEvent.Action.PUSH.value
    params["manifest"] = RegistryEvent.Target.MANIFEST.value
    return " AND ".join(where), " AND ".join(events), params


# A selection's sorts and hashes span every image or tag of its scope: a million rows at the bench's scale,
# which PostgreSQL's default work_mem (4 MB) sends to disk. Raised for its statements only.
WORK_MEM = "256MB"


def selection_fetch(sql: str, params: dict, *, one: bool = True):
    """Run one selection statement with WORK_MEM in a transaction of its own (restored after it, should the
    caller hold a transaction); its first row, or all of them. Always planned for its own parameters
    (`plan_cache_mode`): the connections prepare a statement run five times (DB_PREPARE_THRESHOLD), and a
    generic plan would not know how many names or repositories its arrays hold."""
    with local_settings({"work_mem": WORK_MEM, "plan_cache_mode": "force_custom_plan"}) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() if one else cursor.fetchall()


def tag_names(scope: Scope) -> list[str]:
    """The distinct names of the scope's current tags."""
    where, _, params = scope_sql(scope)
    rows = selection_fetch(
        f"""SELECT DISTINCT t.name FROM analytics_repository r
            JOIN analytics_tag t ON t.repository_id = r.id
                AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
            WHERE {where}""",
        params,
        one=False,
    )
    return [name for (name,) in rows]


def name_bits(
    names: Sequence[str], predicates: Sequence[Callable[[str], bool]]
) -> tuple[list[str], list[str]]:
    """The names some predicate takes, each with its bit string (bit k: predicate k takes it)."""
    kept, bits = [], []
    for name in names:
        b = "".join("1" if p(name) else "0" for p in predicates)
        if "1" in b:
            kept.append(name)
            bits.append(b)
    return kept, bits


# Bits travel as a bigint while there are at most 63 of them (every policy of the documented examples and the
# bench): bit_or and bit_and over a million integers take a fraction of what they take over bit strings.
BIGINT_BITS = 63


def bits_type(width: int) -> str:
    return "bigint" if width <= BIGINT_BITS else "varbit"


def bits_values(bits: Sequence[str], width: int) -> list:
    """Bit strings (name_bits's) as the parameter values of bits_type(width)."""
    if width <= BIGINT_BITS:
        return [int(b[::-1], 2) for b in bits]  # character k is bit k
    return list(bits)


def bit_sql(column: str, k: int, width: int) -> str:
    """SQL: bit k of `column` (of bits_type(width)) is set; NULL when the column is."""
    if width <= BIGINT_BITS:
        return f"({column} & {1 << k}::bigint) <> 0"
    return f"get_bit({column}, {k}) = 1"


# The scope's current tags with their push times (`tags`). The scan's time is the tag's `current_since`
# (maintained); the push events' digests are resolved to manifest ids first (events only, few), so the
# tags are matched by `manifest_id` and never joined with the manifests' table, the widest of the scope's.
TAGS_CTES = """
tag_pushes AS (
    SELECT r.id AS repository_id, e.tag, m.id AS manifest_id,
        min(coalesce(e.occurred_at, e.received_at)) AS at
    FROM analytics_registryevent e
    JOIN analytics_repository r ON r.registry_id = e.registry_id AND r.name = e.repository
    JOIN analytics_manifest m ON m.digest = e.digest
    WHERE {events} AND e.action = %(push)s AND e.target = %(manifest)s AND e.digest <> '' AND e.tag <> ''
    GROUP BY 1, 2, 3
),
tag_times AS (
    SELECT t.id, t.repository_id, t.name, t.current_since AS scanned, p.at AS pushed
    FROM analytics_repository r
    JOIN analytics_tag t ON t.repository_id = r.id AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
    LEFT JOIN tag_pushes p ON p.repository_id = t.repository_id AND p.tag = t.name
        AND p.manifest_id = t.manifest_id
    WHERE {where}
),
tags AS (
    SELECT id, repository_id, name,
        CASE WHEN pushed <= scanned THEN pushed ELSE scanned END AS pushed_at,
        coalesce(pushed <= scanned, false) AS from_events
    FROM tag_times
)"""

# The scope's holdings and current tags, one row per (repository, manifest) either has (`images`):
# `is_image` for the images a policy sees (tagged: a present holding some tag names; untagged: a holding
# no longer present), `tags` how many current tags name it, `tag_id` / `last_tag_id` the least and the
# greatest of their ids, `any_bits` / `every_bits` the bit_or / bit_and of their names' bits (when names
# are given), `rules` its repository's bits (when given).
IMAGES_CTES = """
pushes AS (
    SELECT r.id AS repository_id, m.id AS manifest_id, min(coalesce(e.occurred_at, e.received_at)) AS at
    FROM analytics_registryevent e
    JOIN analytics_repository r ON r.registry_id = e.registry_id AND r.name = e.repository
    JOIN analytics_manifest m ON m.digest = e.digest
    WHERE {events} AND e.action = %(push)s AND e.target = %(manifest)s AND e.digest <> ''
    GROUP BY 1, 2
),{pulls_cte}{names_cte}
named AS (
    SELECT t.repository_id, t.manifest_id, count(*) AS tags, min(t.id) AS tag_id,
        max(t.id) AS last_tag_id{bits_agg}
    FROM analytics_repository r
    JOIN analytics_tag t ON t.repository_id = r.id AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
    {names_join}
    WHERE {where}
    GROUP BY 1, 2
),
held AS (
    SELECT rm.repository_id, rm.manifest_id, rm.present,
        CASE WHEN p.at <= rm.first_seen THEN p.at ELSE rm.first_seen END AS pushed_at,
        coalesce(p.at <= rm.first_seen, false) AS from_events{pulled}{rules}
    FROM analytics_repository r
    JOIN analytics_repositorymanifest rm ON rm.repository_id = r.id
    LEFT JOIN pushes p ON p.repository_id = rm.repository_id AND p.manifest_id = rm.manifest_id
    {pulls_join}{rules_join}
    WHERE {where}
),
images AS (
    SELECT coalesce(h.repository_id, n.repository_id) AS repository_id,
        coalesce(h.manifest_id, n.manifest_id) AS manifest_id,
        coalesce(h.manifest_id IS NOT NULL AND (n.manifest_id IS NOT NULL OR NOT h.present), false)
            AS is_image,
        coalesce(h.present, false) AS tagged, coalesce(n.tags, 0) AS tags, n.tag_id, n.last_tag_id,
        h.pushed_at, h.from_events{pulled_h}{bits_n}{rules_h}
    FROM held h FULL JOIN named n ON n.repository_id = h.repository_id AND n.manifest_id = h.manifest_id
)"""

# The digests are read only where they decide something (a tie, an untagged image listed), never for every
# image: the manifests' table is the widest of the scope's (a quarter of a gigabyte at a million images).
_DIGEST = "(SELECT m.digest FROM analytics_manifest m WHERE m.id = {row}.manifest_id)"


def newest_first_sql(k: int, flag: str, key: str) -> tuple[str, str]:
    """Window expressions ranking the images (`i`) of each repository where the boolean column `flag`
    holds, newest first by `key` then digest (as Python compares strings): `tie{k}` (for a first select:
    how many share the image's `key`), then `rank{k}` (for a second one over the first: its position).
    The position is counted from the oldest (the number of rows less the ascending row number), so that
    the second sort only extends the first; digests are read for the tied rows only."""
    tie = f"count(*) OVER (PARTITION BY i.repository_id, i.{flag}, {key}) AS tie{k}"
    digest = _DIGEST.format(row="i")
    rank = (
        f"count(*) OVER (PARTITION BY i.repository_id, i.{flag}) - row_number() OVER ("
        f"PARTITION BY i.repository_id, i.{flag} ORDER BY {key}, "
        f'CASE WHEN i.{flag} AND i.tie{k} > 1 THEN {digest} END COLLATE "C") + 1 AS rank{k}'
    )
    return tie, rank


def images_ctes(
    scope: Scope,
    *,
    width: int = 0,
    names: Sequence[str] = (),
    bits: Sequence[str] = (),
    pulls: bool = False,
    repositories: tuple[Sequence[int], Sequence[str]] | None = None,
) -> tuple[str, dict]:
    """IMAGES_CTES for the scope: with `width` predicates, the images' any_bits and every_bits from the
    `names` some predicate takes and their `bits` (name_bits); with `pulls`, their pull times; with
    `repositories` (ids and bit strings of at most 63 bits), their repository's `rules` as a bigint (NULL
    for the repositories not listed)."""
    where, events, params = scope_sql(scope)
    sql = IMAGES_CTES.format(
        where=where,
        events=events,
        names_cte=(
            # grouped: the planner then knows the names are distinct, and hashes them, not the tags
            "\nnames AS (SELECT x.name, min(x.bits)::{type} AS bits FROM unnest(%(names)s::text[],"
            " %(bits)s::{param}[]) AS x(name, bits) GROUP BY x.name),".format(
                type=bits_type(width), param="bigint" if width <= BIGINT_BITS else "text"
            )
            if width
            else ""
        ),
        bits_agg=(
            ", bit_or(x.bits) AS any_bits,"
            f" bit_and(coalesce(x.bits, %(zero)s::text::{bits_type(width)})) AS every_bits"
            if width
            else ""
        ),
        names_join="LEFT JOIN names x ON x.name = t.name" if width else "",
        pulls_cte=(
            "\npulls AS (SELECT mp.repository_id, m.id AS manifest_id, mp.last_pulled_at"
            " FROM analytics_repository r JOIN analytics_manifestpulls mp ON mp.repository_id = r.id"
            f" JOIN analytics_manifest m ON m.digest = mp.digest WHERE {where}),"
            if pulls
            else ""
        ),
        pulled=", mp.last_pulled_at AS pulled_at" if pulls else "",
        pulls_join=(
            "LEFT JOIN pulls mp ON mp.repository_id = rm.repository_id"
            " AND mp.manifest_id = rm.manifest_id\n    "
            if pulls
            else ""
        ),
        rules=", a.rules" if repositories is not None else "",
        rules_join=(
            "LEFT JOIN unnest(%(repo_ids)s::bigint[], %(repo_bits)s::bigint[]) AS a(id, rules) ON a.id = r.id"
            if repositories is not None
            else ""
        ),
        pulled_h=", h.pulled_at" if pulls else "",
        bits_n=", n.any_bits, n.every_bits" if width else "",
        rules_h=", h.rules" if repositories is not None else "",
    )
    if width:
        params.update(
            names=list(names), bits=bits_values(bits, width), zero=bits_values(["0" * width], width)[0]
        )
    if repositories is not None:  # a bigint each: Harbor has at most 15 rules
        ids, repo_bits = repositories
        params.update(repo_ids=list(ids), repo_bits=[int(b[::-1], 2) for b in repo_bits])
    return sql, params


@dataclass
class Selection:
    """What a policy removes: current tags (deleting an image deletes every tag naming it) and untagged
    images (their manifests deleted by digest); with the scope's current tags counted and, for a format
    reading push times of its own, how many of the times it read came from events and from scans."""

    tag_ids: list[int] = field(default_factory=list)
    untagged: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    tags_current: int = 0
    pushed_from: dict[str, int] | None = None  # {EVENTS: n, SCANS: n}


# The images statement's answer, in one pass over `decided`: counts, the expired untagged images, the
# expired images' tag ids. An image's least and greatest tag ids come with its group (all its tags when it
# has one or two, as most have at the bench's scale); the tags between them, of the expired images with
# three or more, are read again: by their manifest when they are few, else by hashing them against one
# pass over the tags (`+ 0` keeps that join off the indexes: the planner cannot count an array's rows, and
# would probe an index once per image however many they are).
SEVERAL_PROBED = 10_000


def images_answer(probed: int = SEVERAL_PROBED) -> str:
    """IMAGES_ANSWER, the images with three or more tags read by their manifest up to `probed` of them."""
    return """
SELECT c.tags, c.images, c.from_events, c.repository_ids, c.digests, c.tag_ids || coalesce(
    CASE WHEN coalesce(cardinality(c.several_manifest_ids), 0) <= {probed} THEN (
        SELECT array_agg(t.id) FROM {several}
        JOIN analytics_tag t ON t.manifest_id = s.manifest_id AND t.repository_id = s.repository_id
            AND t.removed_at IS NULL AND t.id > s.least_id AND t.id < s.greatest_id)
    ELSE (
        SELECT array_agg(t.id) FROM {several}
        JOIN analytics_tag t ON t.manifest_id + 0 = s.manifest_id AND t.repository_id + 0 = s.repository_id
            AND t.removed_at IS NULL AND t.id > s.least_id AND t.id < s.greatest_id)
    END, '{{}}')
FROM (
    SELECT coalesce(sum(tags), 0)::bigint AS tags, count(*) FILTER (WHERE is_image) AS images,
        count(*) FILTER (WHERE is_image AND from_events) AS from_events,
        coalesce(array_agg(repository_id) FILTER (WHERE expired AND NOT tagged), '{{}}') AS repository_ids,
        coalesce(array_agg({digest}) FILTER (WHERE expired AND NOT tagged), '{{}}') AS digests,
        coalesce(array_agg(tag_id) FILTER (WHERE expired AND tagged AND tags > 0), '{{}}')
            || coalesce(array_agg(last_tag_id) FILTER (WHERE expired AND tagged AND tags > 1), '{{}}')
            AS tag_ids,
        array_agg(repository_id) FILTER (WHERE expired AND tagged AND tags > 2) AS several_repository_ids,
        array_agg(manifest_id) FILTER (WHERE expired AND tagged AND tags > 2) AS several_manifest_ids,
        array_agg(tag_id) FILTER (WHERE expired AND tagged AND tags > 2) AS several_least,
        array_agg(last_tag_id) FILTER (WHERE expired AND tagged AND tags > 2) AS several_greatest
    FROM decided d
) c
""".format(
        probed=probed,
        several="unnest(c.several_repository_ids, c.several_manifest_ids, c.several_least,"
        " c.several_greatest) AS s(repository_id, manifest_id, least_id, greatest_id)",
        digest=_DIGEST.format(row="d"),
    )


IMAGES_ANSWER = images_answer()


def images_select(scope: Scope, sql: str, params: dict) -> Selection:
    """Run a format's images statement (IMAGES_CTES, then `decided`: each row with `expired`) and read its
    answer (IMAGES_ANSWER) as a Selection."""
    tags, images, from_events, repo_ids, digests, tag_ids = selection_fetch(sql + IMAGES_ANSWER, params)
    return Selection(
        tag_ids=list(tag_ids),
        untagged=[(scope.repositories[r], d) for r, d in zip(repo_ids, digests, strict=True)],
        tags_current=tags,
        pushed_from={EVENTS: from_events, SCANS: images - from_events},
    )


def tags_current(scope: Scope) -> int:
    """How many current tags the scope holds."""
    where, _, params = scope_sql(scope)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT count(*) FROM analytics_repository r
                JOIN analytics_tag t ON t.repository_id = r.id AND t.removed_at IS NULL
                    AND t.manifest_id IS NOT NULL
                WHERE {where}""",
            params,
        )
        return cursor.fetchone()[0]
