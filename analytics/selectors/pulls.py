"""Pull figures (counted from the registry's pull events by `analytics.events.pulls`) and the one rule of
what "not pulled in N days" means, shared by the cold-image answer and the what-if rule.

Warm and cold (per repository, since pulls are counted per repository and digest): a manifest held by
repository R is warm when, within the window (`last_pulled_at >= now - N days`, the boundary instant
included), R saw a pull of
- its own digest, or
- an index listing it, to any depth: a client pulling a multi-platform tag fetches the index and then
  one child; the pull of the index warms all of its children (the safe side: a platform nobody fetched
  recently still belongs to an index in use), or
- for an artifact (a signature, an SBOM, an attestation), the manifest it is about (`subject`), by the
  same rule: the referrers of an image in use stay with it.
Any other held manifest is cold. A tag is cold when every manifest it reaches (its own and, through
indexes, every child) is cold: deleting cold tags never untags a warm manifest.

The rule is one SQL predicate (`warm_sql`): a walk up from the manifest (index entries by child, the
subject by digest) probing `ManifestPulls (repository, digest)` for each manifest met, a few index
probes per manifest, never a scan of the repository's pulls.

Pulls exist only since the registry sent events (`Registry.pulls_counted_since`): over a longer window,
"not pulled" may be "not yet counted", and `pull_coverage` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import OuterRef, Q, Subquery

from analytics.errors import InvalidRequest
from analytics.models import ManifestPulls, Registry, Repository, RepositoryManifest

# A window stays within what dates can hold (README "Limits"); a window of 0 days would call every
# manifest cold, so it starts at 1.
MIN_NOT_PULLED_DAYS = 1
MAX_NOT_PULLED_DAYS = 36_500

PULLS_SOURCE = (
    "pull events the registry sends (distribution notifications, Harbor PULL_ARTIFACT webhooks), counted "
    "per repository and manifest digest; the scanner's own reads are not pulls"
)


def days_check(name: str, days: int | None) -> None:
    if days is not None and not MIN_NOT_PULLED_DAYS <= days <= MAX_NOT_PULLED_DAYS:
        raise InvalidRequest(
            f"{name} must be a whole number from {MIN_NOT_PULLED_DAYS} to {MAX_NOT_PULLED_DAYS}, not {days}"
        )


def not_pulled_cutoff(*, days: int, now: datetime) -> datetime:
    """The oldest pull that still counts as "pulled in the last `days` days"."""
    days_check("days", days)
    return now - timedelta(days=days)


def _walk_up(manifest: str) -> str:
    """The manifest (an id expression), the indexes listing it, the subject it is about, and theirs, as
    `up(id, digest, subject)`; UNION ends any cycle."""
    return f"""WITH RECURSIVE up(id, digest, subject) AS (
            SELECT m0.id, m0.digest, m0.subject FROM analytics_manifest m0 WHERE m0.id = {manifest}
            UNION
            SELECT x.id, x.digest, x.subject FROM up CROSS JOIN LATERAL (
                SELECT i.id, i.digest, i.subject FROM analytics_indexentry e
                JOIN analytics_manifest i ON i.id = e.index_id WHERE e.child_id = up.id
                UNION ALL
                SELECT s.id, s.digest, s.subject FROM analytics_manifest s
                WHERE up.subject <> '' AND s.digest = up.subject
            ) x
        )"""


def warm_sql(*, manifest: str, repository: str, cutoff: str = "%(cutoff)s") -> str:
    """SQL true when the manifest (id expression) is warm in the repository (id expression) since the
    cutoff (a parameter placeholder)."""
    return f"""EXISTS (
        {_walk_up(manifest)}
        SELECT 1 FROM up JOIN analytics_manifestpulls p
            ON p.repository_id = {repository} AND p.digest = up.digest
        WHERE p.last_pulled_at >= {cutoff}
    )"""


def last_pull_sql(*, manifest: str, repository: str) -> str:
    """SQL of the latest pull that warms the manifest in the repository (the walk of `warm_sql`), or
    NULL if none was ever counted."""
    return f"""(
        {_walk_up(manifest)}
        SELECT max(p.last_pulled_at) FROM up JOIN analytics_manifestpulls p
            ON p.repository_id = {repository} AND p.digest = up.digest
    )"""


def place_sql(
    *, registry_id: int | None, namespace: str | None, repository_id: int | None, alias: str = "r"
) -> tuple[str, dict[str, object]]:
    """The repositories of a place (registry, namespace, repository), as a condition on `alias`."""
    clauses, params = ["TRUE"], {}
    if registry_id is not None:
        clauses.append(f"{alias}.registry_id = %(p_registry)s")
        params["p_registry"] = registry_id
    if repository_id is not None:
        clauses.append(f"{alias}.id = %(p_repository)s")
        params["p_repository"] = repository_id
    if namespace:
        ns = namespace.strip("/")
        clauses.append(f"({alias}.name = %(p_ns)s OR {alias}.name LIKE %(p_ns_like)s)")
        params["p_ns"] = ns
        params["p_ns_like"] = ns.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
    return " AND ".join(clauses), params


def cold_tags_sql(
    *, registry_id: int | None, namespace: str | None, repository_id: int | None
) -> tuple[str, dict[str, object]]:
    """SQL selecting the ids of the place's cold current tags (every manifest they reach is cold); takes
    `cutoff` among its parameters."""
    where, params = place_sql(registry_id=registry_id, namespace=namespace, repository_id=repository_id)
    warm = warm_sql(manifest="down.id", repository="t.repository_id")
    sql = f"""
        SELECT t.id FROM analytics_tag t JOIN analytics_repository r ON r.id = t.repository_id
        WHERE {where} AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
        AND NOT EXISTS (
            WITH RECURSIVE down(id) AS (
                SELECT t.manifest_id
                UNION
                SELECT e.child_id FROM down JOIN analytics_indexentry e ON e.index_id = down.id
            )
            SELECT 1 FROM down WHERE {warm}
        )"""
    return sql, params


# --- coverage: since when pulls are counted ---------------------------------------------------------------


@dataclass(frozen=True)
class RegistryPulls:
    registry_id: int
    registry: str
    followed: bool  # it has an events secret: it is meant to send its events
    counted_since: datetime | None  # the oldest event handed to pull counting; None: none yet
    covered: bool  # counted_since is at or before the window's start


@dataclass(frozen=True)
class PullCoverage:
    """Where pull figures come from and whether they span the window asked for. `covered` is false when
    any registry of the answer began sending events after the window's start (or never did): there,
    "not pulled in N days" may only mean "not counted yet"."""

    source: str
    days: int
    cutoff: datetime
    covered: bool
    registries: list[RegistryPulls]


# A namespace named without a registry spans registries; the coverage lists at most this many.
COVERAGE_REGISTRIES = 100


def pull_coverage(
    *, registry_id: int | None, namespace: str | None, repository_id: int | None, days: int, now: datetime
) -> PullCoverage:
    cutoff = not_pulled_cutoff(days=days, now=now)
    if repository_id is not None:
        registries = Registry.objects.filter(repositories__id=repository_id)
    elif registry_id is not None:
        registries = Registry.objects.filter(id=registry_id)
    else:
        ns = (namespace or "").strip("/")
        names = Q(name=ns) | Q(name__startswith=ns + "/") if ns else Q()
        registries = Registry.objects.filter(
            id__in=Repository.objects.filter(names).values("registry_id").distinct()
        )
    rows = [
        RegistryPulls(
            registry_id=g.id,
            registry=g.name,
            followed=g.followed,
            counted_since=g.pulls_counted_since,
            covered=g.pulls_counted_since is not None and g.pulls_counted_since <= cutoff,
        )
        for g in registries.order_by("id").only(
            "id", "name", "events_secret_encrypted", "pulls_counted_since"
        )[:COVERAGE_REGISTRIES]
    ]
    return PullCoverage(
        source=PULLS_SOURCE,
        days=days,
        cutoff=cutoff,
        covered=bool(rows) and all(r.covered for r in rows),
        registries=rows,
    )


def coverage_data(coverage: PullCoverage) -> dict:
    """The coverage as JSON (times in ISO 8601), as the API and a what-if job's stored result show it."""
    return {
        "source": coverage.source,
        "days": coverage.days,
        "cutoff": coverage.cutoff.isoformat(),
        "covered": coverage.covered,
        "registries": [
            {
                "id": r.registry_id,
                "name": r.registry,
                "followed": r.followed,
                "counted_since": r.counted_since.isoformat() if r.counted_since else None,
                "covered": r.covered,
            }
            for r in coverage.registries
        ],
    }


# --- per image ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImagePulls:
    pulls: int
    first_pulled_at: datetime | None
    last_pulled_at: datetime | None


NO_PULLS = ImagePulls(pulls=0, first_pulled_at=None, last_pulled_at=None)


def image_pulls(*, holdings: list[RepositoryManifest]) -> dict[int, ImagePulls]:
    """Pulls of each image's own digest in its repository, for a page of images in one query (an image
    never pulled has 0 and no times). Needs `manifest` loaded on the holdings (the image lists do)."""
    if not holdings:
        return {}
    by_key = {(h.repository_id, h.manifest.digest): h.id for h in holdings}
    rows = ManifestPulls.objects.filter(
        repository_id__in={r for r, _ in by_key}, digest__in={d for _, d in by_key}
    ).values_list("repository_id", "digest", "pulls", "first_pulled_at", "last_pulled_at")
    found = {h.id: NO_PULLS for h in holdings}
    for repository_id, digest, pulls, first, last in rows:
        holding_id = by_key.get((repository_id, digest))
        if holding_id is not None:
            found[holding_id] = ImagePulls(pulls=pulls, first_pulled_at=first, last_pulled_at=last)
    return found


def pulls_annotations() -> dict[str, Subquery]:
    """`image_pulls` for one image fetched anyway: its pull figures as columns of that same query
    (`_pulls`, `_first_pulled_at`, `_last_pulled_at`; read them back with `image_pulls_of`)."""
    own = ManifestPulls.objects.filter(
        repository_id=OuterRef("repository_id"), digest=OuterRef("manifest__digest")
    )
    return {
        f"_{name}": Subquery(own.values(name)[:1]) for name in ("pulls", "first_pulled_at", "last_pulled_at")
    }


def image_pulls_of(holding: RepositoryManifest) -> ImagePulls:
    """The figures `pulls_annotations` put on a holding."""
    pulls = getattr(holding, "_pulls", None)
    if pulls is None:
        return NO_PULLS
    return ImagePulls(
        pulls=pulls,
        first_pulled_at=getattr(holding, "_first_pulled_at", None),
        last_pulled_at=getattr(holding, "_last_pulled_at", None),
    )
