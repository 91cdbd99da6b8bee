"""A registry scan's children run as batches (`scan_repositories_run`): repositories read by
reader threads while others are ingested, one atomic counter on the parent, unchanged repositories
rescanned with last-seen writes only. Figures are compared with the blob store on disk and with the
tags the test pushed; the database with its own rows (Tag, TagEvent) written by an independent path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.errors import RepositoryBusy
from analytics.models import Registry, Repository, Scan, Tag, TagEvent
from analytics.scans.registry_run import scan_registry_run
from analytics.scans.repository_run import scan_readers_close, scan_repositories_run
from analytics.scans.runtime import lease_deadline
from analytics.scans.start import scan_create, scan_request_resolve
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from harness.pusher import Pusher, make_base
from harness.registry import RegistryServer, blobstore_bytes

# Reader threads use their own connections: the rows must be committed for them to see.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REPOS = [f"batch/app{i}" for i in range(6)]
TAGS = ("v1", "v2", "v3")


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    with RegistryServer() as reg:
        base = make_base("os")
        with Pusher(reg.url) as push:
            for name in REPOS:
                for tag in TAGS:
                    push.image(name, tag, seed=f"{name}:{tag}", base=base)
        yield reg


@pytest.fixture(autouse=True)
def readers_closed() -> Iterator[None]:
    yield
    scan_readers_close()  # their connections, before the test database is dropped


def registry_scan(url: str, retried: list[tuple[int, Exception]]) -> Scan:
    scan = scan_create(registry=scan_request_resolve(target=url).registry)
    children = scan_registry_run(scan_id=scan.id)
    scan_repositories_run(scan_ids=children, retry=lambda i, exc: retried.append((i, exc)), read_ahead=3)
    return Scan.objects.get(id=scan.id)


def test_batched_full_scan_and_unchanged_rescan_equal_the_blob_store(registry):
    retried: list[tuple[int, Exception]] = []
    full = registry_scan(registry.url, retried)
    assert retried == []
    assert full.status == Scan.Status.SUCCEEDED
    assert full.repositories_done == full.repositories_total == len(REPOS)
    assert full.tags_count == full.tags_done == full.tags_total == len(REPOS) * len(TAGS)
    reg = Registry.objects.get(url=registry.url)
    assert dedup_summary(scope=Scope(registry_id=reg.id)).stored_bytes == blobstore_bytes(registry.root)
    first_seen = dict(Tag.objects.values_list("id", "last_seen"))
    events = TagEvent.objects.count()
    assert events == len(REPOS) * len(TAGS)

    with CaptureQueriesContext(connection) as queries:
        rescan = registry_scan(registry.url, retried)
    assert rescan.status == Scan.Status.SUCCEEDED and retried == []
    assert rescan.repositories_done == rescan.repositories_total == len(REPOS)
    assert rescan.images_count == len(REPOS) * len(TAGS)
    # Nothing changed: no tag event, every tag seen again, and the figures still equal the disk.
    assert TagEvent.objects.count() == events
    assert all(t.last_seen > first_seen[t.id] for t in Tag.objects.all())
    assert dedup_summary(scope=Scope(registry_id=reg.id)).stored_bytes == blobstore_bytes(registry.root)
    # The parent is counted, not locked, per child: besides the claims (the batch's children in one
    # statement, and the registry scan's), it is locked once when its listing ends and once by its
    # last child.
    locks = [q["sql"] for q in queries.captured_queries if "FOR UPDATE" in q["sql"]]
    assert len(locks) == 1 + 1 + 2


def test_a_busy_repository_is_handed_back_and_the_rest_run(registry):
    retried: list[tuple[int, Exception]] = []
    busy = Repository.objects.create(
        registry=scan_request_resolve(target=registry.url).registry, name=REPOS[0]
    )
    Repository.objects.filter(id=busy.id).update(scan_lease_until=lease_deadline())
    scan = registry_scan(registry.url, retried)
    child = scan.children.get(repository=busy)
    assert [(i, type(e)) for i, e in retried] == [(child.id, RepositoryBusy)]
    assert child.status == Scan.Status.QUEUED
    assert scan.repositories_done == len(REPOS) - 1 and scan.finished_at is None
    # Its lease is still the other worker's.
    assert Repository.objects.get(id=busy.id).scan_lease_until is not None
