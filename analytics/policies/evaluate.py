"""Saved policies evaluated: what each would reclaim now, appended to its series (`PolicyEvaluation`).

1. After a registry scan ends, a stand-alone repository scan changed something, or a registry's events
   were applied with changes (`analytics.scans.state`, `analytics.events.apply`), the worker evaluates
   the registry's enabled policies, once that work has committed: `registry_policies_evaluate`.
2. A point is keyed on (policy, revision, the registry's content version, `ScopeFigures.content_version`):
   a policy already evaluated at this version is not evaluated again (a retried task, a rescan that
   changed nothing), and the insert itself is `ON CONFLICT`, so two workers never add two points. A
   failed point (an `error`) may be replaced by a later evaluation at the same version.
3. A policy's series keeps its latest `POLICY_SERIES_KEEP` points (older ones are deleted as a point is
   added), so it is bounded however often its registry changes.
4. Each policy is evaluated in its own transaction, bounded by `POLICY_EVALUATION_SECONDS`: every
   statement under that `statement_timeout`, and no statement started past the deadline. A policy
   refused (pulls not counted, a repository gone, too long, a pattern timing out) records its error as
   the point; nothing raises into the scan or the events applier.

The figures are `policy_totals`' (`policy_preview`'s totals, by the same selection and what-if, without
its lists and parts), so a point's `freed_bytes` is the what-if's for the same policy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from analytics.errors import InvalidRequest, LayerlensError
from analytics.infra.statements import is_statement_timeout, local_settings
from analytics.infra.text import printable
from analytics.models import CleanupPolicy, PolicyEvaluation, Repository
from analytics.policies.preview import policy_parse, policy_totals
from analytics.selectors.answers import answer_inputs

logger = logging.getLogger(__name__)


class _TooLong(Exception):
    pass


@dataclass
class _Deadline:
    """A query wrapper: no statement starts once the policy's time is spent."""

    deadline: float

    def __call__(self, execute, sql, params, many, context):
        if time.monotonic() > self.deadline:
            raise _TooLong()
        return execute(sql, params, many, context)


def content_version(*, registry_id: int) -> int:
    """The registry's content version (0 before its first ingest)."""
    return answer_inputs(registry_ids=[registry_id])[registry_id][0] or 0


_INSERT_SQL = """
INSERT INTO analytics_policyevaluation AS e (policy_id, at, revision, content_version, freed_bytes,
    tags_removed, manifests_freed, blobs_freed, untagged_expired, push_times, seconds, error)
VALUES (%(policy)s, %(at)s, %(revision)s, %(version)s, %(freed_bytes)s, %(tags_removed)s,
    %(manifests_freed)s, %(blobs_freed)s, %(untagged_expired)s, %(push_times)s, %(seconds)s, %(error)s)
ON CONFLICT (policy_id, revision, content_version) DO UPDATE SET
    at = EXCLUDED.at, freed_bytes = EXCLUDED.freed_bytes, tags_removed = EXCLUDED.tags_removed,
    manifests_freed = EXCLUDED.manifests_freed, blobs_freed = EXCLUDED.blobs_freed,
    untagged_expired = EXCLUDED.untagged_expired, push_times = EXCLUDED.push_times,
    seconds = EXCLUDED.seconds, error = EXCLUDED.error
WHERE e.error <> ''
RETURNING e.id
"""


# Over the (policy, -at, -id) index: the points past the kept ones, oldest last.
_TRIM_SQL = """
DELETE FROM analytics_policyevaluation WHERE id IN (
    SELECT id FROM analytics_policyevaluation WHERE policy_id = %(policy)s
    ORDER BY at DESC, id DESC OFFSET %(keep)s
)
"""


def _figures(policy: CleanupPolicy, now) -> dict[str, object]:
    repository_id = None
    if policy.repository:
        repository_id = (
            Repository.objects.filter(registry_id=policy.registry_id, name=policy.repository)
            .values_list("id", flat=True)
            .first()
        )
        if repository_id is None:
            raise InvalidRequest(
                f"repository {policy.repository} is no longer recorded in the registry: nothing to evaluate"
            )
    totals = policy_totals(
        policy=policy_parse(policy.text, format=policy.format),
        registry_id=policy.registry_id,
        namespace=policy.namespace or None,
        repository_id=repository_id,
        now=now,
    )
    return {
        "freed_bytes": totals.freed_bytes,
        "tags_removed": totals.tags_removed,
        "manifests_freed": totals.manifests_freed,
        "blobs_freed": totals.blobs_freed,
        "untagged_expired": totals.untagged_expired,
        "push_times": totals.push_times[:32],
    }


def _bounded(policy: CleanupPolicy, now, limit: float) -> dict[str, object]:
    """The policy's figures within `limit` seconds, in a transaction of its own; the statement timeout
    is set for that transaction only (restored after it, should the caller hold a transaction)."""
    deadline = _Deadline(time.monotonic() + limit)
    milliseconds = max(1, round(limit * 1000))
    with local_settings({"statement_timeout": f"{milliseconds}ms"}), connection.execute_wrapper(deadline):
        return _figures(policy, now)


def policy_evaluate(*, policy: CleanupPolicy, now=None) -> PolicyEvaluation:
    """Evaluate `policy` at the registry's content version and record the point; a point already
    recorded (without error) at this revision and version is returned as it is, not computed again."""
    version = content_version(registry_id=policy.registry_id)
    key = {"policy": policy, "revision": policy.revision, "content_version": version}
    kept = PolicyEvaluation.objects.filter(**key, error="").first()
    if kept is not None:
        return kept
    now = now or timezone.now()
    limit = settings.POLICY_EVALUATION_SECONDS
    started = time.monotonic()
    figures: dict[str, object] = dict.fromkeys(
        ("freed_bytes", "tags_removed", "manifests_freed", "blobs_freed", "untagged_expired")
    )
    figures["push_times"] = ""
    error = ""
    try:
        figures = _bounded(policy, now, limit)
    except LayerlensError as exc:  # refused rather than guessed: pulls not counted, a pattern's timeout
        error = str(exc)
    except (_TooLong, DatabaseError) as exc:
        if not isinstance(exc, _TooLong) and not is_statement_timeout(exc):
            logger.exception("policy %s (%s) could not be evaluated", policy.id, policy.name)
            error = f"the evaluation failed: {type(exc).__name__}: {exc}"
        else:
            error = (
                f"the evaluation took longer than {limit:g} s (POLICY_EVALUATION_SECONDS) and was stopped; "
                "narrow the policy's scope (a namespace or repository)"
            )
    except Exception as exc:  # a scan or the events applier must not fail for a policy
        logger.exception("policy %s (%s) could not be evaluated", policy.id, policy.name)
        error = f"the evaluation failed: {type(exc).__name__}: {exc}"
    row = {
        **figures,
        "policy": policy.id,
        "at": now,
        "revision": policy.revision,
        "version": version,
        "seconds": round(time.monotonic() - started, 3),
        "error": printable(error[:2000]),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, row)
        inserted = cursor.fetchone()
        if inserted is not None:  # the series keeps its latest POLICY_SERIES_KEEP points
            cursor.execute(_TRIM_SQL, {"policy": policy.id, "keep": settings.POLICY_SERIES_KEEP})
    if inserted is None:  # a point without error was there already (another worker's)
        return PolicyEvaluation.objects.get(**key)
    return PolicyEvaluation.objects.get(id=inserted[0])


def saved_policy_evaluate(*, policy_id: int) -> PolicyEvaluation | None:
    """A policy just saved, by id (the task's argument); None when it was deleted or disabled since."""
    policy = CleanupPolicy.objects.filter(id=policy_id, enabled=True).first()
    return policy_evaluate(policy=policy) if policy is not None else None


def registry_policies_evaluate(*, registry_id: int) -> list[PolicyEvaluation]:
    """Evaluate the registry's enabled policies (each bounded, each failure recorded as its point)."""
    points = []
    for policy in CleanupPolicy.objects.filter(registry_id=registry_id, enabled=True).order_by("id"):
        try:
            points.append(policy_evaluate(policy=policy))
        except DatabaseError:  # recording the point failed: the next change evaluates again
            logger.exception("policy %s (%s): the evaluation was not recorded", policy.id, policy.name)
    return points
