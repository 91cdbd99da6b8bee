"""One tenant's crawl does not starve anyone else, with real workers: while a registry of thousands of
repositories is crawled (harness/catalog_registry.py), a one-tag scan of another, real registry
finishes within seconds and beat's tasks run at once; a second registry's crawl takes turns with the
first instead of waiting for all of it; a crawl's child retried alone stays in the bulk queue."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from analytics.infra.politeness import shared_redis
from analytics.models import Registry, Repository, Scan
from analytics.scans.start import scan_create, scan_request_resolve, scan_start
from config.celery import app
from harness.catalog_registry import catalog_registry
from harness.pusher import Pusher
from harness.queue_probe import control_delays, one_tag_scan, wait_for
from harness.registry import RegistryServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def other_registry() -> Iterator[RegistryServer]:
    """A real registry, not the crawl's: three repositories of one image each."""
    with RegistryServer() as reg:
        with Pusher(reg.url) as push:
            for name in ("one", "two", "three"):
                push.image(f"queues/{name}", "v1", seed=f"queues-{name}")
        yield reg


def under_way(scan: Scan, done: int) -> Scan:
    def progressed():
        """the crawl listed its registry and ran some of it"""
        scan.refresh_from_db()
        return scan if scan.repositories_done >= done and scan.lease_until is None else None

    return wait_for(progressed, timeout=120, every=0.2)


def bulk_backlog() -> int:
    return shared_redis(settings.CELERY_BROKER_URL).llen(settings.QUEUE_BULK)


def test_a_one_tag_scan_and_beats_tasks_do_not_wait_behind_a_crawl(workers, other_registry):
    # The make-run layout for two cores: one worker on every queue, a small one for control and
    # interactive so that neither waits for a bulk batch to end.
    started = [workers(2), workers(1, ("control", "interactive"))]
    with catalog_registry(repositories=2000) as catalog:
        crawl = scan_start(target=catalog.url)
        crawl = under_way(crawl, done=40)
        backlog = bulk_backlog()
        tag, latency = one_tag_scan(f"{other_registry.host}/queues/one:v1")
        delays = control_delays(
            due=f"{other_registry.host}/queues/two", stuck=f"{other_registry.host}/queues/three"
        )
        crawl.refresh_from_db()
        done, total = crawl.repositories_done, crawl.repositories_total
        print(f"one-tag scan {latency:.2f}s, {delays}, bulk backlog {backlog} tasks, crawl {done}/{total}")
        assert tag.status == Scan.Status.SUCCEEDED and tag.tags_count == 1
        assert latency < 5.0
        assert delays.enqueue_due_scans < 5.0 and delays.requeue_stuck_scans < 5.0
        # All of it while the crawl was under way, its queue no longer than its window.
        assert crawl.finished_at is None and crawl.repositories_done < crawl.repositories_total
        assert backlog <= settings.SCAN_CRAWL_WINDOW

    def ran_whole():
        """beat's two tasks ran to their end, without an error"""
        logs = "".join(worker.log_text() for worker in started)
        return all(
            re.search(rf"Task workers\.tasks\.{name}\[[^\]]+\] succeeded", logs)
            for name in ("enqueue_due_scans", "requeue_stuck_scans")
        )

    wait_for(ran_whole, timeout=10)
    logs = "".join(worker.log_text() for worker in started)
    assert "raised unexpected" not in logs, logs[-3000:]


def test_two_registries_crawls_take_turns(workers):
    workers(2)
    with (
        catalog_registry(repositories=1500, prefix="big/r") as big_registry,
        catalog_registry(repositories=60, prefix="small/r") as small_registry,
    ):
        big = under_way(scan_start(target=big_registry.url), done=40)
        small = scan_start(target=small_registry.url)

        def small_finished():
            """the small registry's crawl finished"""
            return Scan.objects.filter(id=small.id, finished_at__isnull=False).first()

        small = wait_for(small_finished, timeout=120, every=0.2)
        ran_meanwhile = Scan.objects.filter(parent=big, finished_at__gt=small.created_at).count()
        big.refresh_from_db()
        print(f"the big crawl ran {ran_meanwhile} repositories while the small one ran its 60")
        assert small.status == Scan.Status.SUCCEEDED and small.repositories_done == 60
        # Behind the big crawl's window (8 batches of 10) and then side by side, not behind its rest.
        assert big.finished_at is None
        assert ran_meanwhile < 400


def test_a_crawls_child_retried_alone_stays_in_bulk(workers):
    """A worker that takes only bulk runs the retry of a child whose repository was busy: had the retry
    gone to the interactive queue (`scan_repository`'s route), nobody would."""
    worker = workers(1, ("bulk",), SCAN_BUSY_RETRY_SECONDS="1")
    with catalog_registry(repositories=1) as catalog:
        registry = scan_request_resolve(target=catalog.url).registry
        parent = scan_create(registry=registry)
        repo = Repository.objects.create(registry=registry, name=catalog.names[0])
        child = Scan.objects.create(kind="repository", registry=registry, repository=repo, parent=parent)
        Scan.objects.filter(id=parent.id).update(status=Scan.Status.RUNNING, repositories_total=1)
        Repository.objects.filter(id=repo.id).update(scan_lease_until=timezone.now() + timedelta(seconds=3))
        app.send_task("workers.tasks.scan_repositories", args=[[child.id]])

        def finished():
            """the child and its parent finished"""
            return Scan.objects.filter(id=parent.id, finished_at__isnull=False).first()

        done = wait_for(finished, timeout=60)
        child.refresh_from_db()
        assert child.status == Scan.Status.SUCCEEDED and done.status == Scan.Status.SUCCEEDED
        assert Registry.objects.get(id=registry.id).last_scanned_at is not None
        assert (
            "workers.tasks.scan_repository[" in worker.log_text()
            and " retry: Retry in 1s" in worker.log_text()
        )
