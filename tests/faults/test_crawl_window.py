"""A registry crawl's window (analytics/scans/crawl.py) with a worker killed mid-crawl: the batch it held
is lost with it, its children are sent again by the sweeper (an expired lease, a task never picked up),
the crawl's sending goes on from the batches that end, and the crawl finishes once with every child,
never with more than its window out."""

from __future__ import annotations

import time

import pytest

from analytics.models import Scan
from analytics.scans.schedule import stuck_scans_requeue
from analytics.scans.start import scan_start
from harness.catalog_registry import catalog_registry
from tests.faults.conftest import overlapping_scans, recorded, scan_events

pytestmark = pytest.mark.integration

REPOSITORIES = 60
BATCH, WINDOW = 4, 2


def out(scan: Scan) -> int:
    """The crawl's children sent and not finished."""
    return Scan.objects.filter(
        parent=scan, enqueued_at__isnull=False, status__in=[Scan.Status.QUEUED, Scan.Status.RUNNING]
    ).count()


def test_a_crawl_whose_worker_dies_keeps_its_window_and_finishes_once(workers, settings):
    settings.SCAN_TASK_BATCH, settings.SCAN_CRAWL_WINDOW = BATCH, WINDOW  # the sweeper, in this process
    env = {"SCAN_TASK_BATCH": str(BATCH), "SCAN_CRAWL_WINDOW": str(WINDOW)}
    with catalog_registry(repositories=REPOSITORIES, prefix="window/r", delay=0.1) as catalog:
        url, truth = (
            catalog.url,
            {name: {"v1": catalog.image(i).digest} for i, name in enumerate(catalog.names)},
        )
        first = workers(1, **env)
        scan = scan_start(target=url)
        most_out = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            scan.refresh_from_db()
            most_out = max(most_out, out(scan))
            running = Scan.objects.filter(parent=scan, status=Scan.Status.RUNNING).exists()
            if scan.repositories_done >= 12 and running:
                break
            time.sleep(0.02)
        first.kill()
        killed_at = time.time()
        lost = set(
            Scan.objects.filter(parent=scan, enqueued_at__isnull=False, finished_at__isnull=True).values_list(
                "id", flat=True
            )
        )
        second = workers(2, **env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            scan.refresh_from_db()
            if scan.finished_at is not None:
                break
            most_out = max(most_out, out(scan))
            stuck_scans_requeue()
            time.sleep(0.1)
        assert scan.finished_at is not None, second.log_text()[-4000:]

    assert scan.status == Scan.Status.SUCCEEDED, (scan.message, second.log_text()[-3000:])
    assert scan.repositories_done == scan.repositories_total == REPOSITORIES
    children = list(scan.children.values_list("id", "status", "takeovers"))
    assert {status for _, status, _ in children} == {Scan.Status.SUCCEEDED}
    # The killed worker's batch was out: its children ran again on the second worker.
    assert lost and all(Scan.objects.get(id=i).status == Scan.Status.SUCCEEDED for i in lost)
    assert 0 < most_out <= BATCH * WINDOW
    # Each repository recorded once, with its tag, and never scanned by two workers at once.
    assert recorded(url) == truth
    assert overlapping_scans(scan_events(first, second), killed_at={first.name: killed_at}) == []
