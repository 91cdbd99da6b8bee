"""PostgreSQL dropping the workers' connections mid-scan (a failover, a restart, an admin's
`pg_terminate_backend`): real workers scan a real registry while every database backend they hold is
terminated, several times, some of them inside an ingest transaction. The scan must end succeeded
with exactly what the registry holds, nothing doubled, and the maintained figures equal to a
from-scratch computation and to a clean scan of the same registry."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest
from django.db import connection

from analytics.models import (
    Blob,
    Manifest,
    ManifestLayer,
    Registry,
    RegistryBlob,
    Repository,
    RepositoryManifest,
    Scan,
    Tag,
)
from analytics.scans.runtime import Heartbeat
from analytics.scans.start import scan_start, scan_start_inline
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary, dedup_summary_computed
from harness.pusher import Pusher
from harness.registry import RegistryServer
from harness.tools import free_loopback_port
from tests.analytics.test_figures import _assert_consistent
from tests.faults.conftest import recorded, truth
from tests.support.slow_proxy import SlowProxy

pytestmark = pytest.mark.integration

REPOSITORIES = tuple(f"dbfault/r{i}" for i in range(8))
TAGS = 8
# libpq reads PGAPPNAME, so every connection the workers open (task, reader, heartbeat threads) is named.
APP_NAME = "layerlens-dbfault-worker"
ROUNDS = 3


@pytest.fixture(scope="module")
def db_fault_registry():
    server = RegistryServer(port=free_loopback_port()).start()
    with Pusher(server.url) as push:
        pushed = {name: push.repository(name, tags=TAGS, seed="dbfaults") for name in REPOSITORIES}
    try:
        yield server, pushed
    finally:
        server.cleanup()


@pytest.fixture
def proxy(db_fault_registry):
    slow = SlowProxy(db_fault_registry[0].url, delay=0.05).start()
    yield slow
    slow.stop()


@pytest.fixture
def worker(workers, settings):
    # A repository scan cut short by the lost connection is taken over by the retry, an attempt lost
    # as when a worker dies (SCAN_MAX_ATTEMPTS); one round costs a repository at most one.
    settings.SCAN_MAX_ATTEMPTS = ROUNDS + 2
    return workers(2, PGAPPNAME=APP_NAME, SCAN_TASK_BATCH="2", SCAN_MAX_ATTEMPTS=str(ROUNDS + 2))


def worker_backends() -> list[tuple[int, str, bool, str]]:
    """(pid, state, inside a transaction of several statements, query) of the workers' backends; never
    this test's own. An autocommit statement has a transaction too, begun with the statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT pid, coalesce(state, ''),
                   state = 'idle in transaction' OR (state = 'active' AND xact_start < query_start),
                   coalesce(query, '')
               FROM pg_stat_activity
               WHERE application_name = %s AND datname = current_database() AND pid <> pg_backend_pid()""",
            [APP_NAME],
        )
        return cursor.fetchall()


def terminate(pids: list[int]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(p)) FROM unnest(%s::int[]) p", [pids]
        )
        return cursor.fetchone()[0]


def children_state(scan: Scan) -> tuple[int, int]:
    """(children succeeded, children not finished) of a registry scan."""
    kids = list(scan.children.values_list("status", flat=True))
    done = sum(1 for s in kids if s == Scan.Status.SUCCEEDED)
    unfinished = sum(1 for s in kids if s in (Scan.Status.QUEUED, Scan.Status.RUNNING))
    return done, unfinished


def test_database_connections_dropped_mid_ingest_end_in_the_same_data_as_a_clean_scan(
    db_fault_registry, proxy, worker
):
    server, pushed = db_fault_registry
    scan = scan_start(target=proxy.url)
    rounds: list[dict] = []
    deadline = time.monotonic() + 30
    done_at_last_round = 0
    while len(rounds) < ROUNDS and time.monotonic() < deadline:
        scan.refresh_from_db()
        done, unfinished = children_state(scan)
        # Mid-scan: the catalog listed, some repositories recorded, some not; a fresh one since the
        # last round, so each round meets a scan that has recovered from the one before.
        if not (scan.repositories_total and done > done_at_last_round and unfinished):
            time.sleep(0.01)
            continue
        # Prefer the moment a worker is inside a transaction (an ingest, a claim, a finish).
        backends: list = []
        wait_until = time.monotonic() + 2.0
        while time.monotonic() < wait_until:
            backends = worker_backends()
            if any(in_tx for _, _, in_tx, _ in backends):
                break
            time.sleep(0.002)
        killed = terminate([pid for pid, *_ in backends])
        rounds.append(
            {
                "done": done,
                "unfinished": unfinished,
                "killed": killed,
                "in_transaction": [q[:80] for _, _, in_tx, q in backends if in_tx],
            }
        )
        done_at_last_round = done
    print("terminated:", rounds)  # shown with -s: how far the scan was, what was cut
    assert len(rounds) == ROUNDS, (rounds, worker.log_text()[-8000:])
    assert all(r["killed"] >= 1 and r["done"] >= 1 and r["unfinished"] >= 1 for r in rounds), rounds
    assert any(r["in_transaction"] for r in rounds), rounds  # at least one cut a transaction in half

    def finished():
        return Scan.objects.filter(id=scan.id, finished_at__isnull=False).first()

    end = time.monotonic() + 90
    parent = None
    while parent is None and time.monotonic() < end:
        parent = finished()
        time.sleep(0.2)
    assert parent is not None, (
        list(Scan.objects.values_list("id", "status", "takeovers", "lease_until", "message")),
        worker.log_text()[-6000:],
    )
    assert parent.status == Scan.Status.SUCCEEDED, (parent.message, rounds, worker.log_text()[-6000:])
    children = list(parent.children.values_list("status", "takeovers"))
    assert {s for s, _ in children} == {Scan.Status.SUCCEEDED}, children
    assert any(t for _, t in children) and all(t <= ROUNDS for _, t in children), children
    assert parent.repositories_done == parent.repositories_total == len(REPOSITORIES)
    assert parent.tags_count == len(REPOSITORIES) * TAGS

    # What the registry holds (harness/pusher.py), tag by tag and layer by layer.
    assert recorded(proxy.url) == truth(pushed)
    registry = parent.registry
    for name, repo in pushed.items():
        held = RepositoryManifest.objects.filter(
            repository__registry=registry, repository__name=name, present=True
        ).values_list("manifest__digest", flat=True)
        assert sorted(held) == sorted(repo.tags.values())
        for digest in repo.tags.values():
            layers = ManifestLayer.objects.filter(manifest__digest=digest).order_by("position")
            assert list(layers.values_list("blob__digest", flat=True)) == repo.layers
        assert (
            dict(Manifest.objects.filter(digest__in=repo.manifests).values_list("digest", "size"))
            == repo.manifests
        )
        assert dict(Blob.objects.filter(digest__in=repo.blobs).values_list("digest", "size")) == repo.blobs

    # Nothing doubled: one row per tag, holding and manifest layer; blobs counted once per registry.
    images = len(REPOSITORIES) * TAGS
    assert Tag.objects.filter(repository__registry=registry).count() == images
    assert RepositoryManifest.objects.filter(repository__registry=registry).count() == images
    assert ManifestLayer.objects.filter(manifest__digest__in=recorded_digests(pushed)).count() == sum(
        len(p.tags) * len(p.layers) for p in pushed.values()
    )
    distinct_blobs = {d for p in pushed.values() for d in p.blobs}
    assert RegistryBlob.objects.filter(registry=registry).count() == len(distinct_blobs)

    # Maintained figures equal a from-scratch computation over the holdings...
    _assert_consistent(registry)
    # ...and a clean, uninterrupted scan of the same registry, straight and in this process.
    clean_scan = scan_start_inline(target=server.url)
    assert clean_scan.status == Scan.Status.SUCCEEDED
    faulted = dedup_summary(scope=Scope(registry_id=registry.id))
    clean = dedup_summary(scope=Scope(registry_id=clean_scan.registry_id))
    assert faulted == dataclasses.replace(clean, scope=faulted.scope)
    assert faulted == dedup_summary_computed(scope=Scope(registry_id=registry.id))
    assert recorded(server.url) == recorded(proxy.url)


def recorded_digests(pushed) -> set[str]:
    return {d for p in pushed.values() for d in p.tags.values()}


def test_heartbeat_keeps_the_lease_after_its_connection_is_terminated(transactional_db, settings):
    settings.SCAN_LEASE_SECONDS = 1  # a beat every 0.33 s
    registry = Registry.objects.create(name="hb", url="http://127.0.0.1:5998")
    repository = Repository.objects.create(registry=registry, name="a")
    scan = Scan.objects.create(kind="repository", registry=registry, repository=repository, status="running")

    def lease():
        return Scan.objects.values_list("lease_until", flat=True).get(id=scan.id)

    with Heartbeat(scan_id=scan.id, repository_id=repository.id) as heartbeat:
        heartbeat.start()
        deadline = time.monotonic() + 5
        while lease() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease() is not None
        with connection.cursor() as cursor:  # every backend of this database but the test's: the beat's
            cursor.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            pids = [pid for (pid,) in cursor.fetchall()]
        assert terminate(pids) >= 1
        before = lease()
        time.sleep(1.5)  # a failed beat, then beats on a new connection
        assert heartbeat._thread is not None and heartbeat._thread.is_alive()
        assert lease() > before + timedelta(seconds=0.5)
        assert Repository.objects.get(id=repository.id).scan_lease_until > before
