"""What a running scan needs besides the registry and the database: a heartbeat, progress, limits, metrics.

* `Heartbeat` renews the scan's lease (and its repository's) from a thread while the scan runs, so a
  lease can be short (`SCAN_LEASE_SECONDS`) and a dead worker's scan is noticed within it, however
  long a live worker's scan takes; `BatchHeartbeat` does it for a batch's scans from one thread.
* `Progress` writes tags listed and read to the scan (and its parent) at most once a second.
* `metrics_sink` is this process's Redis-backed metric counters (`analytics.infra.telemetry`), added
  up across all workers.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from analytics.infra.politeness import shared_redis
from analytics.infra.telemetry import MetricsSink
from analytics.models import Repository, Scan

log = logging.getLogger(__name__)


def lease_deadline():
    return timezone.now() + timedelta(seconds=settings.SCAN_LEASE_SECONDS)


class Heartbeat:
    """Renews `Scan.lease_until` (and `Repository.scan_lease_until`) every third of the lease.

    The thread uses its own database connection, so it only runs when the caller is not inside a
    transaction: there its writes would wait on the caller's row locks, and the caller's own lease
    writes are invisible to other workers until it commits anyway (tests, `--inline` in atomic blocks).
    """

    def __init__(self, *, scan_id: int | None, repository_id: int | None = None) -> None:
        self.scan_id = scan_id  # None: a repository lease alone (registry events being applied)
        self.repository_id = repository_id
        self.interval = max(0.2, settings.SCAN_LEASE_SECONDS / 3)
        self.name = f"heartbeat-{scan_id}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        return self

    def start(self) -> None:
        """Begin beating; call once the leases are held (never to renew someone else's)."""
        if self._thread is None and not connection.in_atomic_block:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self._beat()
                except DatabaseError as exc:
                    # The connection was dropped (database restart, failover): a new one at the next
                    # beat. Stopping here would let the lease lapse under a scan still running.
                    log.warning("scan heartbeat missed a beat: %s", exc)
                    connections.close_all()
        except Exception:  # a lost heartbeat only means another worker may take over later
            log.exception("scan heartbeat failed")
        finally:
            connections.close_all()  # this thread's connection

    def _beat(self) -> None:
        until = lease_deadline()
        if self.scan_id is not None:
            Scan.objects.filter(id=self.scan_id, status=Scan.Status.RUNNING).update(lease_until=until)
        if self.repository_id is not None:
            Repository.objects.filter(id=self.repository_id).update(scan_lease_until=until)


class BatchHeartbeat(Heartbeat):
    """One thread renewing the leases of a batch's scans and repositories (`Heartbeat` for many): a
    repository's lease is renewed only while it is held, so one released meanwhile stays released;
    `drop` takes a scan and its repository out once it has finished."""

    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        super().__init__(scan_id=None)
        self.name = "heartbeat-batch"
        self.scan_ids = {scan_id for scan_id, _ in pairs}
        self.repository_ids = {repository_id for _, repository_id in pairs}
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.scan_ids:
            super().start()

    def drop(self, scan_id: int, repository_id: int | None) -> None:
        with self._lock:
            self.scan_ids.discard(scan_id)
            self.repository_ids.discard(repository_id)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.__exit__(None, None, None)

    def _beat(self) -> None:
        with self._lock:
            scans, repositories = list(self.scan_ids), list(self.repository_ids)
        until = lease_deadline()
        if scans:
            Scan.objects.filter(id__in=scans, status=Scan.Status.RUNNING).update(lease_until=until)
        if repositories:
            Repository.objects.filter(id__in=repositories, scan_lease_until__isnull=False).update(
                scan_lease_until=until
            )


class Progress:
    """Tags listed and read, for a running scan and its parent; a callback for the registry client."""

    def __init__(self, *, scan_id: int, parent_id: int | None, every: float = 1.0) -> None:
        self.scan_id, self.parent_id, self.every = scan_id, parent_id, every
        self.total = self.done = 0
        self._written_total = self._written_done = 0
        # The first write waits a period too: a repository read within it reports its progress in
        # its finishing transaction only (`take`), not in two commits of its own.
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._owner = threading.get_ident()

    @classmethod
    def restart(cls, scan: Scan) -> Progress:
        """Progress for a scan starting (again): what an earlier, lost run wrote is taken back."""
        if scan.tags_total or scan.tags_done:
            Scan.objects.filter(id=scan.id).update(tags_total=0, tags_done=0)
            if scan.parent_id is not None:
                Scan.objects.filter(id=scan.parent_id).update(
                    tags_total=F("tags_total") - scan.tags_total, tags_done=F("tags_done") - scan.tags_done
                )
        return cls(scan_id=scan.id, parent_id=scan.parent_id)

    def __call__(self, done: int, total: int) -> None:
        """Called by the snapshot (possibly from its worker threads); writes from the scan's thread only."""
        with self._lock:
            self.done, self.total = done, total
        # Only the scan's own thread writes: another thread would open a connection of its own.
        if threading.get_ident() == self._owner and time.monotonic() - self._last >= self.every:
            self.flush()

    def take(self) -> tuple[int, int, int, int]:
        """(total, done) and what the parent has not been told yet, marked as written: for a caller
        that writes them itself in its finishing UPDATEs instead of a `flush`."""
        with self._lock:
            d_total, d_done = self.total - self._written_total, self.done - self._written_done
            self._written_total, self._written_done = self.total, self.done
            return self.total, self.done, d_total, d_done

    def flush(self) -> None:
        with self._lock:
            d_total, d_done = self.total - self._written_total, self.done - self._written_done
            self._written_total, self._written_done = self.total, self.done
            self._last = time.monotonic()
        if not (d_total or d_done):
            return
        with transaction.atomic():
            # progress is redone by a rescan: its commit need not wait for the disk
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            Scan.objects.filter(id=self.scan_id).update(tags_total=self.total, tags_done=self.done)
            if self.parent_id is not None:
                Scan.objects.filter(id=self.parent_id).update(
                    tags_total=F("tags_total") + d_total, tags_done=F("tags_done") + d_done
                )


@functools.lru_cache(maxsize=1)
def metrics_sink() -> MetricsSink:
    url = settings.LAYERLENS_REDIS_URL
    return MetricsSink(shared_redis(url) if url else None)
