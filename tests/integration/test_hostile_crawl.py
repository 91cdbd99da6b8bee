"""A hostile registry crawled by real workers does not hold anyone else up, and ends as the caps say.

The crawl: the catalog registry (harness/catalog_registry.py, `hostile=True`) listing 2,000 ordinary
repositories beside a tag list of a million tags by `Link`, a manifest of 25,000 layers (and one of
1,024, at the cap), a tag list and a manifest that drip 4 bytes a second, and catalog names the
distribution grammar refuses (300 characters, a NUL...). Meanwhile one-tag scans of another, real
registry each finish in under 5 s; the crawl then finishes (not failed) with every hostile repository
ended by its error or cap, the endless list refused on its pages alone (no manifest of it asked for),
and no invalid name stored.

The workers take the `make run` layout for two cores (2 processes on every queue, 1 on control and
interactive) with a 3 s total time limit per reply and 1 s retry backoff instead of 300 s and 5 s: the
drips are cut at that limit (before the 10 s minimum-rate window would cut them), once each, not retried.
The figures printed (when each hostile repository finished, the endless list's requests) are the ones
bench/README.md "Hostile registry" quotes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from analytics.models import Repository, Scan
from analytics.scans.start import scan_start
from harness.catalog_registry import ENDLESS, HOSTILE_REPOSITORIES, INVALID_NAMES, catalog_registry
from harness.pusher import Pusher
from harness.queue_probe import hostile_children, hostile_problems, one_tag_scan, wait_for
from harness.registry import RegistryServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REPOSITORIES = 2000
PROBES = 5
WORKER_ENV = {"REGISTRY_TOTAL_TIMEOUT_SECONDS": "3", "SCAN_RETRY_BACKOFF_SECONDS": "1"}


@pytest.fixture(scope="module")
def other_registry() -> Iterator[RegistryServer]:
    """A real registry, not the crawl's: one repository of one image."""
    with RegistryServer() as reg:
        with Pusher(reg.url) as push:
            push.image("tenant/app", "v1", seed="hostile-crawl-tenant")
        yield reg


def test_a_hostile_crawl_holds_no_one_up_and_ends_as_the_caps_say(workers, other_registry):
    workers(2, **WORKER_ENV)
    workers(1, ("control", "interactive"), **WORKER_ENV)
    tag = f"{other_registry.host}/tenant/app:v1"
    with catalog_registry(repositories=REPOSITORIES, hostile=True) as catalog:
        crawl = scan_start(target=catalog.url)

        def hostile_running():
            """the crawl is reading the endless tag list"""
            child = hostile_children(crawl).get(ENDLESS)
            return child is not None and child.status == Scan.Status.RUNNING

        wait_for(hostile_running, timeout=120, every=0.2)
        probes = []
        for _ in range(PROBES):
            scan, seconds = one_tag_scan(tag, timeout=30)
            unfinished = sorted(n for n, c in hostile_children(crawl).items() if c.finished_at is None)
            probes.append((seconds, scan.status, scan.tags_count, unfinished))
            time.sleep(1)
        print("one-tag scans during the hostile crawl (s, status, tags, hostile unfinished):", probes)

        def crawl_finished():
            """the hostile crawl finished"""
            return Scan.objects.filter(id=crawl.id, finished_at__isnull=False).first()

        crawl = wait_for(crawl_finished, timeout=900, every=1)
        served = catalog.listed
        endless_pages, endless_manifests = catalog.asked(ENDLESS, "tags"), catalog.asked(ENDLESS, "manifests")

    started = crawl.started_at or crawl.created_at
    finished = {
        name: round((child.finished_at - started).total_seconds(), 1)
        for name, child in sorted(hostile_children(crawl).items())
        if child.finished_at is not None
    }
    print("hostile repositories finished after (s, from the crawl's start):", finished)
    print("crawl finished after (s):", round((crawl.finished_at - started).total_seconds(), 1))
    print(f"{ENDLESS}: {endless_pages} tag pages, {endless_manifests} manifest GETs")
    # The endless list is refused on its pages alone (read to the cap before any manifest is asked for).
    assert endless_manifests == 0

    for seconds, status, tags, _ in probes:
        assert status == Scan.Status.SUCCEEDED and tags == 1
        assert seconds < 5.0, probes
    # The probes began while hostile repositories were being read: the first of them at least (they
    # cost the crawl seconds now, the endless list's pages and one cut try per drip, so the later
    # probes may come after).
    assert probes[0][3], probes

    assert hostile_problems(crawl) == []
    # Finished with its errors recorded (partial), not failed; every listed repository run, once.
    assert crawl.status == Scan.Status.PARTIAL, crawl.message
    assert crawl.repositories_done == crawl.repositories_total == REPOSITORIES + len(HOSTILE_REPOSITORIES)
    ordinary = Scan.objects.filter(parent=crawl).exclude(repository__name__in=HOSTILE_REPOSITORIES)
    assert ordinary.filter(status=Scan.Status.SUCCEEDED, images_count=1).count() == REPOSITORIES
    # The repositories stored are exactly the valid names the catalog listed.
    stored = set(Repository.objects.filter(registry=crawl.registry).values_list("name", flat=True))
    assert stored == set(served) - set(INVALID_NAMES)
    assert len(stored) == REPOSITORIES + len(HOSTILE_REPOSITORIES)
