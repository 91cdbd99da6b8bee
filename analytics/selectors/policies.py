"""Saved cleanup policies and their series of evaluations, as the API, the admin, the command, the
overview page and `/metrics` read them."""

from __future__ import annotations

from django.db.models import F, Prefetch, QuerySet, Window
from django.db.models.functions import RowNumber

from analytics.errors import NotFound
from analytics.models import CleanupPolicy, PolicyEvaluation

# The overview draws at most this many policies of a registry, each with at most this many latest points.
SERIES_POLICIES = 12
SERIES_POINTS = 200


def _latest(queryset: QuerySet[PolicyEvaluation]) -> QuerySet[PolicyEvaluation]:
    # one row per policy: DISTINCT ON over the (policy, -at, -id) index
    return queryset.order_by("policy_id", "-at", "-id").distinct("policy_id")


def policy_list() -> QuerySet[CleanupPolicy]:
    """Policies with their registry and, as `latest` (a list of at most one), their latest point: one
    query more per page, whatever the series' lengths."""
    return CleanupPolicy.objects.select_related("registry").prefetch_related(
        Prefetch("evaluations", queryset=_latest(PolicyEvaluation.objects.all()), to_attr="latest")
    )


def policy_get(policy_id: int) -> CleanupPolicy:
    policy = policy_list().filter(id=policy_id).first()
    if policy is None:
        raise NotFound(f"no cleanup policy {policy_id}")
    return policy


def policy_series(*, policy_id: int) -> QuerySet[PolicyEvaluation]:
    """A policy's points, newest first (the caller pages them)."""
    return PolicyEvaluation.objects.filter(policy_id=policy_id).order_by("-at", "-id")


def latest_figures() -> list[tuple[CleanupPolicy, PolicyEvaluation | None, PolicyEvaluation | None]]:
    """Every policy with its latest point and its latest point with figures (no error): `/metrics`."""
    policies = list(CleanupPolicy.objects.select_related("registry").order_by("registry__name", "name"))
    latest = {e.policy_id: e for e in _latest(PolicyEvaluation.objects.all())}
    figured = {e.policy_id: e for e in _latest(PolicyEvaluation.objects.filter(error=""))}
    return [(p, latest.get(p.id), figured.get(p.id)) for p in policies]


def registry_policy_series(
    *, registry_id: int, policies: int = SERIES_POLICIES, points: int = SERIES_POINTS
) -> tuple[list[tuple[CleanupPolicy, list[PolicyEvaluation]]], bool]:
    """The registry's first `policies` policies by name, each with its latest `points` points oldest
    first, and whether more policies exist: two queries, whatever the policies and their series."""
    chosen = list(
        CleanupPolicy.objects.filter(registry_id=registry_id).order_by("name", "id")[: policies + 1]
    )
    more = len(chosen) > policies
    chosen = chosen[:policies]
    rank = Window(RowNumber(), partition_by=[F("policy_id")], order_by=[F("at").desc(), F("id").desc()])
    rows = (
        PolicyEvaluation.objects.filter(policy_id__in=[p.id for p in chosen])
        .annotate(rank=rank)
        .filter(rank__lte=points)
        .order_by("policy_id", "at", "id")
    )
    by_policy: dict[int, list[PolicyEvaluation]] = {p.id: [] for p in chosen}
    for row in rows:
        by_policy[row.policy_id].append(row)
    return [(p, by_policy[p.id]) for p in chosen], more
