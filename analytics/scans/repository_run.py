"""A repository scan: take the repository's lease, read its snapshot from the registry, ingest it in
one transaction; and the batch runner that reads several repositories ahead while it ingests."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from analytics.errors import RepositoryBusy
from analytics.infra import telemetry
from analytics.infra.logs import log_context
from analytics.infra.text import printable
from analytics.ingest.known import configs_known, manifests_known, tags_current
from analytics.ingest.snapshot import IngestItem, IngestResult, snapshots_ingest, unchanged_record_many
from analytics.ingest.trends import scans_figures_record
from analytics.models import Repository, Scan, ScanError, Tag
from analytics.scans.clients import registry_client_shared
from analytics.scans.deep import scan_deep_record
from analytics.scans.runtime import BatchHeartbeat, Heartbeat, Progress, metrics_sink
from analytics.scans.state import (
    HANDLED_ELSEWHERE,
    answers_refresh_after_commit,
    commit_async,
    policies_evaluate_after_commit,
    repository_forget_if_unknown,
    repository_lease_acquire,
    repository_lease_release,
    scan_claim,
    scan_fail_unexpected,
    scan_finish,
    scans_claim_many,
    scans_succeed_many,
)
from workers.registry.errors import NotFoundError, RegistryError
from workers.registry.records import ManifestFailure, RepositorySnapshot
from workers.registry.snapshot import snapshot_repository

logger = logging.getLogger(__name__)


def scan_repository_run(*, scan_id: int) -> Scan:
    """Scan one repository (or one tag of it): source, then ingest.

    1. Take the repository's lease, so no two workers scan it at once (RepositoryBusy otherwise;
       the scan stays as it is for a retry). A scan found running under an expired lease was left by
       a dead worker (acks_late redelivers its task): it is taken over and run again from the start.
    2. Read the repository from the registry, outside any transaction.
    3. Ingest the snapshot in one transaction; record counts and per-image failures on the scan.
    A permanent registry error fails this scan only; a transient one is re-raised for a retry; any
    other exception (but a lost database connection, which the task retries) fails it with its class
    and message. While it runs, a heartbeat renews both leases and progress (tags) is written about
    once a second.
    """
    try:
        run = RepositoryRun.begin(scan_id)
        if run.done:
            return run.result()
        with run:
            run.end(run.read())
            run.deep()
    except HANDLED_ELSEWHERE:
        raise
    except Exception as exc:
        scan_fail_unexpected(scan_id=scan_id, exc=exc)
    return Scan.objects.get(id=scan_id)


def scan_repositories_run(
    *, scan_ids: list[int], retry: Callable[[int, Exception], None], read_ahead: int | None = None
) -> None:
    """Scan a batch of repositories in this process, as `scan_repository_run` each, with up to
    `read_ahead` (`SCAN_READ_AHEAD`) of them being read at once by reader threads while this thread
    ingests the ones already read, in order. The registry sees no more than the client's own bound
    (`REGISTRY_SCAN_CONCURRENCY` requests in flight per process), however many repositories are read.

    A scan that cannot run now (`RepositoryBusy`, a transient registry error) goes to `retry(id, exc)`
    (the task sends it again on its own); the others are not held up by it.
    """
    read_ahead = max(1, read_ahead or settings.SCAN_READ_AHEAD)
    pending: list[tuple[RepositoryRun, Future]] = []
    # The batch's plain repository scans begin together (their leases and claims in one commit, one
    # heartbeat thread for all); the others, and all of them should that fail, one by one below.
    begun, rest = RepositoryRun.begin_batch(scan_ids, busy=retry)
    ids = iter(rest)
    heartbeat = BatchHeartbeat([(run.scan_id, run.scan.repository_id) for run in begun])  # type: ignore[misc]
    heartbeat.start()
    # Unchanged repositories (every tag where it was) are finished together at the end; changed ones are
    # ingested together, in one transaction per SCAN_INGEST_BATCH_ROWS manifests and tags read.
    unchanged: list[tuple[RepositoryRun, RepositorySnapshot]] = []
    changed: list[tuple[RepositoryRun, RepositorySnapshot]] = []
    ingest_rows = settings.SCAN_INGEST_BATCH_ROWS

    def next_run() -> RepositoryRun | None:
        if begun:
            return begun.pop(0)
        for scan_id in ids:
            try:
                run = RepositoryRun.begin(scan_id)
            except RepositoryBusy as exc:
                retry(scan_id, exc)
                continue
            except HANDLED_ELSEWHERE:
                raise
            except Exception as exc:
                scan_fail_unexpected(scan_id=scan_id, exc=exc)
                if isinstance(exc, SoftTimeLimitExceeded):
                    raise
                continue
            if not run.done:
                return run
        return None

    def settle(run: RepositoryRun, future: Future) -> None:
        if future.exception() is None and run.unchanged(future.result()):
            unchanged.append((run, future.result()))
            return
        if future.exception() is None and run.batchable(future.result()):
            changed.append((run, future.result()))
            if sum(len(snapshot.manifests) + len(snapshot.tags) for _, snapshot in changed) >= ingest_rows:
                settle_changed()
            return
        settle_snapshot(run, future.result)

    def settle_changed() -> None:
        items = list(changed)
        changed.clear()
        try:
            finished = RepositoryRun.end_many(items)
        except HANDLED_ELSEWHERE:
            raise
        except Exception:
            logger.exception("ingesting repositories together failed; ingesting them one by one")
            finished = set()
        for run, snapshot in items:
            if run.scan_id in finished:
                heartbeat.drop(run.scan_id, run.scan.repository_id)
            else:
                settle_snapshot(run, lambda snapshot=snapshot: snapshot)

    def settle_snapshot(run: RepositoryRun, result: Callable[[], RepositorySnapshot | RegistryError]) -> None:
        heartbeat.drop(run.scan_id, run.scan.repository_id)
        try:
            with run:
                try:
                    run.end(result())
                    run.deep()
                except (RepositoryBusy, RegistryError) as exc:
                    if not isinstance(exc, RepositoryBusy) and not getattr(exc, "transient", False):
                        raise
                    retry(run.scan_id, exc)
        except HANDLED_ELSEWHERE:
            raise
        except Exception as exc:
            # This repository's scan fails with what it was; the batch goes on, unless the task is
            # out of time (Celery's soft limit), when the scans not begun are left for the sweeper.
            scan_fail_unexpected(scan_id=run.scan_id, exc=exc)
            if isinstance(exc, SoftTimeLimitExceeded):
                raise

    readers = _readers(read_ahead)
    try:
        while True:
            while len(pending) < read_ahead:
                run = next_run()
                if run is None:
                    break
                pending.append((run, readers.submit(run.read_in_thread)))
            if not pending:
                break
            settle(*pending.pop(0))
        if changed:
            settle_changed()
        if unchanged:
            try:
                finished = RepositoryRun.end_unchanged(unchanged)
            except HANDLED_ELSEWHERE:
                raise
            except Exception:
                logger.exception(
                    "finishing unchanged repositories together failed; finishing them one by one"
                )
                finished = set()
            for run, snapshot in unchanged:
                if run.scan_id not in finished:  # not as read: ingested in full
                    settle_snapshot(run, lambda snapshot=snapshot: snapshot)
            unchanged.clear()
    finally:
        # Stopped by an unexpected error: the scans begun stop beating and free their repositories;
        # left running, their leases expire and the sweeper sends them again.
        heartbeat.stop()
        for run, future in pending:
            future.cancel()
            run.__exit__(None, None, None)
        for run in begun:
            run.__exit__(None, None, None)
        for run, _ in unchanged + changed:
            run.__exit__(None, None, None)


_READERS: dict[int, ThreadPoolExecutor] = {}
_READERS_LOCK = threading.Lock()


def _readers(size: int) -> ThreadPoolExecutor:
    """This process's reader threads, kept across tasks (their database connections with them)."""
    key = os.getpid()
    with _READERS_LOCK:
        pool = _READERS.get(key)
        if pool is None or pool._max_workers != size:
            _READERS.clear()  # a parent process's, or another size: never used again here
            pool = _READERS[key] = ThreadPoolExecutor(size, thread_name_prefix="scan-read")
        return pool


def scan_readers_close() -> None:
    """Close this process's reader threads and their database connections (worker shutdown, tests)."""
    with _READERS_LOCK:
        pool = _READERS.pop(os.getpid(), None)
        _READERS.clear()
    if pool is None:
        return
    size = pool._max_workers
    barrier = threading.Barrier(size)

    def close() -> None:
        connections.close_all()  # this thread's
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)  # so that each thread takes one of these

    for _ in range(size):
        pool.submit(close)
    pool.shutdown(wait=True)


def _image_bytes(snapshot) -> int:
    """Declared bytes (manifest, config, layers) of the images a snapshot read, for the metrics."""
    total = 0
    for record in snapshot.manifests:
        if getattr(record, "kind", None) == "image":
            config = record.config.size if record.config is not None else 0
            total += record.size + config + sum(layer.size for layer in record.layers)
    return total


class RepositoryRun:
    """One repository scan in three phases: `begin` (lease and claim, in this thread), `read` (the
    registry; any thread) and `end` (ingest and finish, in the thread that began it). Used as a
    context manager around `read`/`end`: the heartbeat and log context, and the lease released
    whatever happens."""

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self.scan_id = scan.id
        self.done = True  # nothing to run (finished, or another worker's)
        self.held = False  # the repository lease is ours and committed
        self.heartbeat = Heartbeat(scan_id=scan.id, repository_id=scan.repository_id)
        self.previous: dict[str, str] | None = None
        self.progress: Progress | None = None
        self._stack = contextlib.ExitStack()

    @classmethod
    def begin(cls, scan_id: int) -> RepositoryRun:
        scan = Scan.objects.select_related("registry", "repository").get(id=scan_id)
        run = cls(scan)
        if scan.is_finished or scan.repository is None:
            return run
        repository = scan.repository
        ids = {"scan_id": scan.id, "registry_id": scan.registry_id, "repository_id": scan.repository_id}
        with log_context(**ids):
            ran_before = scan.started_at is not None
            # The repository's lease and the scan's claim commit together (one commit per scan start).
            with transaction.atomic():
                commit_async()
                if not repository_lease_acquire(repository, scan_id):
                    raise RepositoryBusy(f"{repository} is being scanned by another worker")
                claimed = scan_claim(scan_id, orphaned_ok=True)
                # A redelivered or retried scan starts over; its rows are rewritten idempotently.
                if claimed is not None and (ran_before or claimed.takeovers):
                    claimed.errors.all().delete()
            run.held = True
            if claimed is None:
                repository_lease_release(repository)
                run.held = False
                return run
            run.scan, run.done = claimed, False
            try:
                run.heartbeat.start()
                run.progress = Progress.restart(claimed)
                logger.info(
                    "scan %s started",
                    claimed.id,
                    extra={"event": "scan_started", "takeovers": claimed.takeovers},
                )
                # A repository scanned before is rescanned incrementally: a HEAD per tag, compared
                # with the tags recorded then; only what changed is read. A one-tag scan reads its tag.
                if repository.last_scanned_at is not None and not claimed.tag:
                    run.previous = tags_current(repository_id=repository.id)
            except BaseException:
                run.__exit__(None, None, None)
                raise
        return run

    @classmethod
    def begin_batch(
        cls, scan_ids: list[int], *, busy: Callable[[int, Exception], None]
    ) -> tuple[list[RepositoryRun], list[int]]:
        """`begin` for the plain repository scans among `scan_ids` (whole repositories, not finished),
        in one commit (`state.scans_claim_many`) and one read of their tags: returns the runs begun,
        in `scan_ids` order, and the ids left to `begin` one by one (the others; all of them if this
        failed unexpectedly). A busy repository's scan goes to `busy`. The runs' heartbeats are not
        started: the caller beats for them all (`runtime.BatchHeartbeat`)."""
        by_id = {
            s.id: s for s in Scan.objects.select_related("registry", "repository").filter(id__in=scan_ids)
        }
        plain = [
            by_id[i]
            for i in scan_ids
            if i in by_id and not by_id[i].is_finished and by_id[i].repository_id and not by_id[i].tag
        ]
        if len(plain) < 2:
            return [], list(scan_ids)
        try:
            with transaction.atomic():
                commit_async()
                claimed, taken = scans_claim_many(plain)
        except HANDLED_ELSEWHERE:
            raise
        except Exception:
            logger.exception("beginning a batch of scans failed; beginning them one by one")
            return [], list(scan_ids)
        for scan in taken:
            busy(scan.id, RepositoryBusy(f"{scan.repository} is being scanned by another worker"))
        scanned_before = [s.repository_id for s in claimed if s.repository.last_scanned_at is not None]
        previous: dict[int, dict[str, str]] = {rid: {} for rid in scanned_before}
        for rid, name, digest in Tag.objects.filter(
            repository_id__in=scanned_before, removed_at__isnull=True, manifest__isnull=False
        ).values_list("repository_id", "name", "manifest__digest"):
            previous[rid][name] = digest
        runs = []
        for scan in claimed:
            run = cls(scan)
            run.done, run.held = False, True
            run.progress = Progress.restart(scan)
            run.previous = previous.get(scan.repository_id)  # type: ignore[arg-type]
            with log_context(scan_id=scan.id, registry_id=scan.registry_id, repository_id=scan.repository_id):
                logger.info(
                    "scan %s started", scan.id, extra={"event": "scan_started", "takeovers": scan.takeovers}
                )
            runs.append(run)
        handled = {s.id for s in plain}
        return runs, [i for i in scan_ids if i not in handled]

    def unchanged(self, snapshot: RepositorySnapshot | RegistryError) -> bool:
        """Whether `snapshot` found every tag of this rescan where it was, nothing else to record."""
        return (
            isinstance(snapshot, RepositorySnapshot)
            and self.previous is not None
            and not self.scan.tag
            and self.scan.deep_budget_bytes is None
            and not snapshot.manifests
            and not snapshot.failures
            and snapshot.tags == self.previous
        )

    def batchable(self, snapshot: RepositorySnapshot | RegistryError) -> bool:
        """Whether `snapshot` can be ingested with other repositories' (`end_many`): a whole repository
        read, with no deep scan to follow."""
        return (
            isinstance(snapshot, RepositorySnapshot)
            and not self.scan.tag
            and self.scan.deep_budget_bytes is None
        )

    @staticmethod
    def end_many(items: list[tuple[RepositoryRun, RepositorySnapshot]]) -> set[int]:
        """`end` for several repositories read in full (`batchable`), together in one transaction
        (`ingest_finish`), then their runs exited. Returns the scan ids finished (all of them, or it
        raised and none is)."""
        RepositoryRun.ingest_finish(items)
        for run, _ in items:
            run.__exit__(None, None, None)
        return {run.scan_id for run, _ in items}

    @staticmethod
    def ingest_finish(items: list[tuple[RepositoryRun, RepositorySnapshot]]) -> None:
        """In one transaction: the snapshots ingested at once (`ingest.snapshot.snapshots_ingest`),
        chains and trend points, the scans finished with their counts and progress (their parents'
        counters included), the leases released."""
        with transaction.atomic():
            commit_async()
            results = snapshots_ingest(
                [
                    IngestItem(run.scan.repository, snapshot, scan=run.scan, complete=not run.scan.tag)  # type: ignore[arg-type]
                    for run, snapshot in items
                ]
            )
            scans_figures_record(  # chain ids of new manifests, then trend points
                scans=[
                    run.scan for (run, _), result in zip(items, results, strict=True) if run.changed(result)
                ]
            )
            succeeded = []
            for (run, snapshot), result in zip(items, results, strict=True):
                scan = run.scan
                assert run.progress is not None
                fields = run.record(snapshot, result)
                total, done, d_total, d_done = run.progress.take()
                fields.update(tags_total=total, tags_done=done)
                if result.failures:
                    # the only error rows: earlier runs' were deleted at the claim
                    with log_context(
                        scan_id=scan.id, registry_id=scan.registry_id, repository_id=scan.repository_id
                    ):
                        scan_finish(
                            scan,
                            Scan.Status.SUCCEEDED,
                            errors=result.failures,
                            fields=fields,
                            tags=(d_total, d_done),
                        )
                else:
                    succeeded.append((scan, fields, (d_total, d_done)))
            scans_succeed_many(succeeded)
            Repository.objects.filter(id__in=sorted(run.scan.repository_id for run, _ in items)).update(
                scan_lease_until=None
            )
        for run, _ in items:
            run.held = False

    def changed(self, result: IngestResult) -> bool:
        """Whether an ingest changed what the repository holds or names (a first scan always does): then
        its new manifests get chain ids and the scan a trend point (`trends.scans_figures_record`)."""
        return self.previous is None or bool(result.tag_events or result.new_manifests)

    def record(self, snapshot: RepositorySnapshot, result: IngestResult) -> dict[str, int]:
        """After an ingest, in its transaction: the metrics and follow-ups of a scan; returns its counts."""
        scan = self.scan
        labels = {"registry": scan.registry.name}
        metrics_sink().add(telemetry.IMAGES_SCANNED, labels, result.images)
        metrics_sink().add(telemetry.BYTES_SCANNED, labels, _image_bytes(snapshot))
        if self.changed(result) and scan.parent_id is None:  # a registry scan refreshes once, at its end
            answers_refresh_after_commit(registry_id=scan.registry_id)
            policies_evaluate_after_commit(registry_id=scan.registry_id)
        return {
            "repositories_total": 1,
            "repositories_done": 1,
            "tags_count": result.tags,
            "images_count": result.images,
            "new_manifests_count": result.new_manifests,
            # a followed registry's events should have brought every change in already:
            # what the scan still found is what they missed (reconciliation)
            "drift_count": result.tag_events if scan.registry.followed else 0,
        }

    @staticmethod
    def end_unchanged(items: list[tuple[RepositoryRun, RepositorySnapshot]]) -> set[int]:
        """`end` for rescans that found nothing changed (`unchanged`), together in one transaction:
        last-seen times (`ingest.snapshot.unchanged_record_many`), the scans finished with their
        counts and progress (`state.scans_succeed_many`), the leases released. Returns the scan ids
        finished; a repository whose tags turned out to differ is left to the caller's `end`."""
        now = timezone.now()
        by_repository = {run.scan.repository_id: (run, snapshot) for run, snapshot in items}
        with transaction.atomic():
            commit_async()
            images = unchanged_record_many(
                expected={rid: dict(snapshot.tags) for rid, (_, snapshot) in by_repository.items()}, now=now
            )
            finished = []
            for rid, count in images.items():
                run, snapshot = by_repository[rid]
                assert run.progress is not None
                total, done, d_total, d_done = run.progress.take()
                labels = {"registry": run.scan.registry.name}
                metrics_sink().add(telemetry.IMAGES_SCANNED, labels, count)
                metrics_sink().add(telemetry.BYTES_SCANNED, labels, 0)
                fields = {
                    "repositories_total": 1,
                    "repositories_done": 1,
                    "tags_count": len(snapshot.tags),
                    "images_count": count,
                    "new_manifests_count": 0,
                    "drift_count": 0,
                    "tags_total": total,
                    "tags_done": done,
                }
                finished.append((run.scan, fields, (d_total, d_done)))
            done_ids = set(scans_succeed_many(finished))
            Repository.objects.filter(id__in=sorted(images)).update(scan_lease_until=None)
        for rid in images:
            run, _ = by_repository[rid]
            run.held = False
            run.__exit__(None, None, None)
        return {by_repository[rid][0].scan_id for rid in images} | done_ids

    def __enter__(self) -> RepositoryRun:
        scan = self.scan
        self._stack.enter_context(
            log_context(scan_id=scan.id, registry_id=scan.registry_id, repository_id=scan.repository_id)
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._stack.close()
        finally:
            self.heartbeat.__exit__(*exc_info)
            if self.held:
                assert self.scan.repository is not None
                repository_lease_release(self.scan.repository)
                self.held = False

    def read(self) -> RepositorySnapshot | RegistryError:
        """The repository's snapshot, or the registry error that stopped it (returned, not raised)."""
        scan, repository = self.scan, self.scan.repository
        assert repository is not None
        try:
            with registry_client_shared(scan.registry) as client:
                return snapshot_repository(
                    client,
                    repository.name,
                    tags=[scan.tag] if scan.tag else None,
                    previous=self.previous,
                    known_manifests=manifests_known,
                    known_configs=configs_known,
                    progress=self.progress,
                )
        except RegistryError as exc:
            return exc

    def read_in_thread(self) -> RepositorySnapshot | RegistryError:
        """`read` from a reader thread: the digest look-ups use that thread's own connection, which
        outlives the read only as long as it is usable (closed here otherwise)."""
        close_old_connections()
        try:
            return self.read()
        finally:
            close_old_connections()

    def end(self, snapshot: RepositorySnapshot | RegistryError) -> None:
        scan, repository = self.scan, self.scan.repository
        assert repository is not None and self.progress is not None
        if isinstance(snapshot, RegistryError):
            exc = snapshot
            if getattr(exc, "transient", False):
                # Back to queued so the retry can claim it again.
                Scan.objects.filter(id=scan.id).update(
                    status=Scan.Status.QUEUED, lease_until=None, enqueued_at=timezone.now()
                )
                logger.info("reading the repository failed (%s); retrying later", exc)
                raise exc
            message = str(exc)
            if isinstance(exc, NotFoundError):
                message = f"repository {repository.name} not found in {scan.registry.host}"
            with transaction.atomic():
                ScanError.objects.create(
                    scan=scan,
                    repository=repository.name,
                    kind=type(exc).__name__,
                    message=printable(str(exc)),
                )
                scan_finish(scan, Scan.Status.FAILED, message)
                if isinstance(exc, NotFoundError):
                    self._forget(repository)
            return
        missing = self._reference_missing(snapshot)
        if missing is not None:
            # A one-tag scan of a tag the registry does not have: a failure, not a partial success.
            what = "manifest" if ":" in missing.reference else "tag"
            with transaction.atomic():
                ScanError.objects.create(
                    scan=scan,
                    repository=repository.name,
                    reference=printable(missing.reference)[:255],
                    kind=missing.kind[:64],
                    message=printable(missing.message),
                )
                scan_finish(scan, Scan.Status.FAILED, f"{what} {missing.reference} not found in {repository}")
                self._forget(repository)
            return
        # Ingest, the scan's counts and progress, its parent's counter and the lease: one transaction.
        self.ingest_finish([(self, snapshot)])

    def _reference_missing(self, snapshot: RepositorySnapshot) -> ManifestFailure | None:
        """The 404 of the one tag (or digest) a one-tag scan asked for, when that is all it found."""
        if not self.scan.tag or snapshot.manifests or snapshot.tags:
            return None
        return next(
            (
                f
                for f in snapshot.failures
                if f.reference == self.scan.tag and f.kind == NotFoundError.__name__
            ),
            None,
        )

    def _forget(self, repository: Repository) -> None:
        """A repository this scan found missing leaves no row, unless something was recorded of it."""
        if repository_forget_if_unknown(repository=repository, scan_id=self.scan_id):
            self.held = False  # its lease went with it
            logger.info("repository %s not found in the registry; not recorded", repository.name)

    def deep(self) -> None:
        """The deep scan (layers streamed within a byte budget) the scan asked for, once it is done."""
        if self.scan.deep_budget_bytes is not None:
            scan_deep_record(scan_id=self.scan_id)

    def result(self) -> Scan:
        return Scan.objects.get(id=self.scan_id)
