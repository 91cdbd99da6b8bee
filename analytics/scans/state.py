"""The scan state machine: claim a queued scan (or take over an orphaned one), finish it once, count
it on its parent and finish the parent with its last child; the repository lease. A batch's scans are
claimed together (`scans_claim_many`) and its unchanged ones finished together (`scans_succeed_many`),
a few statements a batch instead of a dozen a repository."""

from __future__ import annotations

import logging
from functools import partial

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from analytics.errors import RepositoryBusy
from analytics.infra import telemetry
from analytics.infra.logs import log_context
from analytics.infra.text import printable
from analytics.ingest.answers import answers_refresh
from analytics.ingest.trends import scan_figures_record
from analytics.models import Registry, Repository, Scan, ScanError
from analytics.policies.evaluate import registry_policies_evaluate
from analytics.scans.runtime import lease_deadline, metrics_sink
from analytics.selectors.columns import columns_keep
from workers.registry.errors import RegistryError

logger = logging.getLogger(__name__)


def scan_claim(scan_id: int, *, orphaned_ok: bool = False) -> Scan | None:
    """Move a queued scan to running, under a lease; None if another worker has it (or it is finished).

    A scan left running is taken over when its lease has expired (its worker stopped beating), or,
    with `orphaned_ok`, whatever its lease says: the caller holds the repository's lease, so whoever
    was running it is gone. A take-over counts in `takeovers`; past `SCAN_MAX_ATTEMPTS` the scan is
    failed with the reason instead of being run again (a repository that kills its workers).
    """
    now = timezone.now()
    orphaned = Q(status=Scan.Status.RUNNING)
    if not orphaned_ok:
        orphaned &= Q(lease_until__lt=now)
    with transaction.atomic():
        scan = (
            Scan.objects.select_for_update(of=("self",))
            .filter(Q(status=Scan.Status.QUEUED) | orphaned, id=scan_id)
            .select_related("registry", "repository")
            .first()
        )
        if scan is None:
            return None
        if scan.status == Scan.Status.RUNNING:
            scan.takeovers += 1
            logger.warning("taking over scan %s left running by a stopped worker", scan.id)
        scan.status, scan.started_at, scan.lease_until = Scan.Status.RUNNING, now, lease_deadline()
        scan.save(update_fields=["status", "started_at", "lease_until", "takeovers"])
    if scan.takeovers >= settings.SCAN_MAX_ATTEMPTS:
        scan_give_up(scan.id, scan.takeovers)
        return None
    return scan


_CLAIM_MANY = """
UPDATE analytics_scan s
SET status = 'running', started_at = %(now)s, lease_until = %(until)s,
    takeovers = s.takeovers + (old.status = 'running')::int
FROM (
    SELECT id, status, started_at FROM analytics_scan
    WHERE id = ANY(%(ids)s) AND status IN ('queued', 'running') ORDER BY id FOR UPDATE
) old
WHERE s.id = old.id
RETURNING s.id, old.status, old.started_at IS NOT NULL, s.takeovers
"""


def scans_claim_many(scans: list[Scan]) -> tuple[list[Scan], list[Scan]]:
    """`repository_lease_acquire` and `scan_claim(orphaned_ok=True)` for several repository scans, in
    the caller's transaction, in two statements: returns (claimed, busy). A claimed scan holds its
    repository's lease and is running (its fields updated in place; a take-over counted; a redelivered
    or retried one's error rows deleted); a busy one's repository is leased by someone else (or by an
    earlier scan of this list); the rest (finished meanwhile) are in neither, their leases let go.
    Past `SCAN_MAX_ATTEMPTS` take-overs a scan is given up as `scan_claim` does: in neither, its lease
    let go (after the caller's commit, as `scan_give_up` needs)."""
    now, until = timezone.now(), lease_deadline()
    first: dict[int, Scan] = {}
    busy: list[Scan] = []
    for scan in scans:
        if scan.repository_id in first:
            busy.append(scan)
        else:
            first[scan.repository_id] = scan  # type: ignore[index]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE analytics_repository SET scan_lease_until = %s WHERE id = ANY(%s)"
            " AND (scan_lease_until IS NULL OR scan_lease_until < %s) RETURNING id",
            [until, sorted(first), now],
        )
        leased = {row[0] for row in cursor.fetchall()}
        busy += [scan for rid, scan in first.items() if rid not in leased]
        mine = [scan for rid, scan in first.items() if rid in leased]
        cursor.execute(_CLAIM_MANY, {"now": now, "until": until, "ids": sorted(s.id for s in mine)})
        rows = {row[0]: row[1:] for row in cursor.fetchall()}
    claimed: list[Scan] = []
    again: list[int] = []
    let_go: list[int] = []
    for scan in mine:
        if scan.id not in rows:
            let_go.append(scan.repository_id)  # type: ignore[arg-type]
            continue
        old_status, ran_before, takeovers = rows[scan.id]
        scan.status, scan.started_at, scan.lease_until, scan.takeovers = (
            Scan.Status.RUNNING,
            now,
            until,
            takeovers,
        )
        if old_status == Scan.Status.RUNNING:
            logger.warning("taking over scan %s left running by a stopped worker", scan.id)
        if takeovers >= settings.SCAN_MAX_ATTEMPTS:
            let_go.append(scan.repository_id)  # type: ignore[arg-type]
            transaction.on_commit(partial(scan_give_up, scan.id, takeovers))
            continue
        if ran_before or takeovers:
            again.append(scan.id)
        claimed.append(scan)
    if again:
        ScanError.objects.filter(scan_id__in=again).delete()
    if let_go:
        Repository.objects.filter(id__in=let_go).update(scan_lease_until=None)
    return claimed, busy


_SUCCEED_MANY_FIELDS = (
    "repositories_total",
    "repositories_done",
    "tags_count",
    "images_count",
    "new_manifests_count",
    "drift_count",
    "tags_total",
    "tags_done",
)


def scans_succeed_many(finished: list[tuple[Scan, dict[str, int], tuple[int, int]]]) -> list[int]:
    """`scan_finish(scan, SUCCEEDED, errors=0, fields=..., tags=...)` for several scans with no error
    rows, in one UPDATE for the scans and one per parent: (scan, fields, (tags total, tags done) to
    add to the parent). Returns the ids finished now (a scan finished already counts once)."""
    if not finished:
        return []
    cols = _SUCCEED_MANY_FIELDS
    sql = (
        "UPDATE analytics_scan s SET status = %s, finished_at = %s, message = '', errors_count = 0,"
        " lease_until = NULL, "
        + ", ".join(f"{c} = v.{c}" for c in cols)
        + " FROM unnest(%s::bigint[], "
        + ", ".join("%s::int[]" for _ in cols)
        + ") AS v(id, "
        + ", ".join(cols)
        + ") WHERE s.id = v.id AND s.status IN ('queued', 'running') RETURNING s.id"
    )
    params: list[object] = [Scan.Status.SUCCEEDED.value, timezone.now(), [s.id for s, _, _ in finished]]
    params += [[fields[c] for _, fields, _ in finished] for c in cols]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        done = {row[0] for row in cursor.fetchall()}
    parents: dict[int, list[int]] = {}
    for scan, _, (d_total, d_done) in finished:
        if scan.id not in done:
            continue
        with log_context(scan_id=scan.id, registry_id=scan.registry_id, repository_id=scan.repository_id):
            _scan_finished_observe(scan, Scan.Status.SUCCEEDED, "", errors=0, flush=False)
        if scan.parent_id:
            counts = parents.setdefault(scan.parent_id, [0, 0, 0])
            counts[0] += 1
            counts[1] += d_total
            counts[2] += d_done
    metrics_sink().flush()
    for parent_id, (children, d_total, d_done) in sorted(parents.items()):
        _parent_child_done(parent_id, tags=(d_total, d_done), children=children)
    return sorted(done)


def scan_give_up(scan_id: int, takeovers: int) -> None:
    Scan.objects.filter(id=scan_id).update(takeovers=takeovers)
    scan_fail(
        scan_id=scan_id,
        kind="WorkerLost",
        message=f"gave up: the workers running this scan stopped {takeovers} times "
        "(killed, out of memory or past the time limit); it runs again at the next schedule",
    )


def scan_finish(
    scan: Scan,
    status: str,
    message: str = "",
    *,
    errors: int | None = None,
    fields: dict[str, object] | None = None,
    tags: tuple[int, int] = (0, 0),
) -> None:
    """Finish `scan` (conditionally: a scan finished twice, by a slow worker whose lease was taken,
    counts once) with `fields` in the same UPDATE, and count it done on its parent, adding `tags`
    (total, done) to the parent's progress. `errors` is the scan's error rows when the caller knows."""
    if errors is None:
        errors = scan.errors.count()
    if status == Scan.Status.SUCCEEDED and errors:
        status = Scan.Status.PARTIAL
    finished = Scan.objects.filter(id=scan.id, status__in=[Scan.Status.QUEUED, Scan.Status.RUNNING]).update(
        status=status,
        finished_at=timezone.now(),
        message=printable(message[:4000]),
        errors_count=errors,
        lease_until=None,
        **(fields or {}),
    )
    if not finished:
        return
    _scan_finished_observe(scan, status, message, errors=errors)
    if scan.parent_id:
        _parent_child_done(scan.parent_id, tags=tags)


def _parent_child_done(parent_id: int, *, tags: tuple[int, int] = (0, 0), children: int = 1) -> None:
    """`children` more done: an atomic counter (no lock on the parent for each child); only the child
    that brings `repositories_done` to the total goes on to finish the parent."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Scan._meta.db_table} SET repositories_done = repositories_done + %s,"
            " tags_total = tags_total + %s, tags_done = tags_done + %s"
            " WHERE id = %s RETURNING repositories_done, repositories_total",
            [children, tags[0], tags[1], parent_id],
        )
        row = cursor.fetchone()
    if row is not None and row[0] >= row[1]:
        parent_finish_if_done(parent_id)


def _scan_finished_observe(
    scan: Scan, status: str, message: str, *, errors: int | None = None, flush: bool = True
) -> None:
    registry = scan.registry.name
    sink = metrics_sink()
    sink.add(telemetry.SCANS_FINISHED, {"registry": registry, "kind": scan.kind, "status": status})
    if errors != 0:
        for kind, n in scan.errors.values_list("kind").annotate(n=Count("id")).order_by():
            sink.add(telemetry.SCAN_ERRORS, {"registry": registry, "kind": kind}, n)
    if flush:
        sink.flush()
    level = logging.WARNING if status == Scan.Status.FAILED else logging.INFO
    logger.log(
        level,
        "scan %s %s%s",
        scan.id,
        status,
        f": {message}" if message else "",
        extra={"event": "scan_finished", "status": status, "kind": scan.kind},
    )


def parent_finish_if_done(parent_id: int) -> None:
    with transaction.atomic():
        parent = Scan.objects.select_for_update().get(id=parent_id)
        if parent.is_finished or parent.repositories_done < parent.repositories_total:
            return
        children = parent.children.all()
        totals = children.aggregate(
            tags=Sum("tags_count"),
            images=Sum("images_count"),
            new=Sum("new_manifests_count"),
            drift=Sum("drift_count"),
            errors=Sum("errors_count"),
            failed=Count("id", filter=Q(status=Scan.Status.FAILED)),
        )
        errors = (totals["errors"] or 0) + parent.errors.count()
        status = Scan.Status.PARTIAL if (errors or totals["failed"]) else Scan.Status.SUCCEEDED
        Scan.objects.filter(id=parent_id).update(
            status=status,
            finished_at=timezone.now(),
            tags_count=totals["tags"] or 0,
            images_count=totals["images"] or 0,
            new_manifests_count=totals["new"] or 0,
            drift_count=totals["drift"] or 0,
            errors_count=errors,
            lease_until=None,
        )
        with log_context(scan_id=parent.id, registry_id=parent.registry_id):  # not the last child's
            _scan_finished_observe(parent, status, "")
        Registry.objects.filter(id=parent.registry_id).update(last_scanned_at=timezone.now())
        scan_figures_record(scan_id=parent_id)  # the registry's trend point
        answers_refresh_after_commit(registry_id=parent.registry_id)
        # before the policies: their evaluations of a large registry judge over the columns
        transaction.on_commit(partial(columns_keep, registry_id=parent.registry_id), robust=True)
        policies_evaluate_after_commit(registry_id=parent.registry_id)


def answers_refresh_after_commit(*, registry_id: int) -> None:
    """Once this transaction commits (at once outside one), recompute the registry's materialized answers
    the scan changed (`analytics.ingest.answers`), so that no reader waits for them. A failure is logged;
    the scan stands and the next reader computes."""
    transaction.on_commit(partial(answers_refresh, registry_id=registry_id), robust=True)


def policies_evaluate_after_commit(*, registry_id: int) -> None:
    """Once this transaction commits, evaluate the registry's saved cleanup policies and append their
    points (`analytics.policies.evaluate`: each bounded, a failure recorded as the point, never the
    scan's; a content version already evaluated is not evaluated again)."""
    transaction.on_commit(partial(registry_policies_evaluate, registry_id=registry_id), robust=True)


def scan_fail(*, scan_id: int, message: str, kind: str = "ScanFailed") -> None:
    """Record a scan as failed, whatever state it was in; used when retries are exhausted."""
    scan = Scan.objects.get(id=scan_id)
    if scan.is_finished:
        return
    ScanError.objects.create(
        scan=scan,
        repository=scan.repository.name if scan.repository else "",
        kind=kind[:64],
        message=printable(message),
    )
    scan_finish(scan, Scan.Status.FAILED, message)


# What the callers of a scan run handle themselves: registry errors (a transient one is retried),
# a busy repository, and a lost database connection (retried on a new one by the task).
HANDLED_ELSEWHERE = (RegistryError, RepositoryBusy, OperationalError, InterfaceError)


def scan_fail_unexpected(*, scan_id: int, exc: BaseException) -> None:
    """Fail a scan that an unexpected exception stopped, saying what it was (class and message), so it
    is neither left running until its lease runs out nor blamed on dying workers."""
    logger.error("scan %s stopped by an unexpected %s", scan_id, type(exc).__name__, exc_info=exc)
    scan_fail(
        scan_id=scan_id,
        kind=type(exc).__name__[:64],
        message=f"stopped by an unexpected error: {type(exc).__name__}: {exc}",
    )


def repository_lease_acquire(repository: Repository, scan_id: int) -> bool:
    now = timezone.now()
    return bool(
        Repository.objects.filter(id=repository.id)
        .filter(Q(scan_lease_until__isnull=True) | Q(scan_lease_until__lt=now))
        .update(scan_lease_until=lease_deadline())
    )


def repository_lease_release(repository: Repository) -> None:
    Repository.objects.filter(id=repository.id).update(scan_lease_until=None)


def repository_forget_if_unknown(*, repository: Repository, scan_id: int) -> bool:
    """Delete `repository` when the scan `scan_id` found nothing in it and nothing was ever recorded of
    it: never scanned, not tracked, no other scan running or queued on it. Its finished scans (this one
    included) stay, detached from it. Call in the transaction that finishes the scan. True if deleted.

    A repository once scanned that the registry no longer knows is kept as last seen, tags included:
    the failed scan says why."""
    row = Repository.objects.select_for_update().filter(id=repository.id).first()
    if row is None or row.last_scanned_at is not None or row.tracked or row.tags.exists():
        return False
    scans = Scan.objects.filter(repository_id=row.id)
    if scans.exclude(id=scan_id).filter(status__in=[Scan.Status.QUEUED, Scan.Status.RUNNING]).exists():
        return False
    scans.update(repository=None)
    row.delete()
    return True


def commit_async() -> None:
    """This transaction's commit does not wait for its WAL flush (PostgreSQL `synchronous_commit`).

    Scan bookkeeping and ingest are re-derivable from the registry: a database crash can lose the last
    few hundred milliseconds of them (never tear them: transactions stay atomic and ordered), and the
    lost scan is then left running under an expiring lease, which the sweeper sends again. Waiting for
    a disk flush per repository was most of a repository's fixed cost.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")
