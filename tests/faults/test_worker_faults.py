"""Fault tests with real processes: workers killed mid-scan, the registry going away mid-scan, and
several workers competing for one repository. What is recorded is compared with what was pushed
(harness/pusher.py) and with a clean scan of the same registry."""

from __future__ import annotations

import time

import pytest

from analytics.models import Blob, Manifest, ManifestLayer, Registry, RepositoryManifest, Scan, Tag
from analytics.scans.schedule import stuck_scans_requeue
from analytics.scans.start import scan_create, scan_request_resolve, scan_run_inline, scan_start
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from tests.faults.conftest import CAP, REPOSITORIES, overlapping_scans, recorded, scan_events, truth

pytestmark = pytest.mark.integration


def wait_for(predicate, *, timeout: float, every: float = 0.1, sweep: bool = False):
    """Poll `predicate` until it is truthy; with `sweep`, run the beat's stuck-scan sweeper meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if sweep:
            stuck_scans_requeue()
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate.__doc__ or predicate}")


def manifest_requests(proxy, repository: str) -> int:
    return sum(1 for s in proxy.state.seen if s.path.startswith(f"/v2/{repository}/manifests/"))


def assert_matches_what_was_pushed(registry_url: str, pushed) -> None:
    assert recorded(registry_url) == truth(pushed)
    registry = Registry.objects.get(url=registry_url)
    for name, repo in pushed.items():
        held = set(
            RepositoryManifest.objects.filter(
                repository__registry=registry, repository__name=name, present=True
            ).values_list("manifest__digest", flat=True)
        )
        assert held == set(repo.tags.values())
        for digest in repo.tags.values():
            layers = list(
                ManifestLayer.objects.filter(manifest__digest=digest)
                .order_by("position")
                .values_list("blob__digest", "blob__size")
            )
            assert [d for d, _ in layers] == repo.layers
            assert all(size == repo.blobs[d] for d, size in layers)
        assert (
            dict(Manifest.objects.filter(digest__in=repo.manifests).values_list("digest", "size"))
            == repo.manifests
        )
        assert dict(Blob.objects.filter(digest__in=repo.blobs).values_list("digest", "size")) == repo.blobs
    # Nothing doubled: one row per tag, per holding.
    assert Tag.objects.filter(repository__registry=registry).count() == sum(
        len(p.tags) for p in pushed.values()
    )
    assert RepositoryManifest.objects.filter(repository__registry=registry).count() == sum(
        len(p.tags) for p in pushed.values()
    )


def clean_summary(upstream_url: str):
    """A clean, uninterrupted scan of the same content straight from the registry, in this process."""
    request = scan_request_resolve(target=upstream_url)
    scan = scan_create(registry=request.registry)
    scan = scan_run_inline(scan_id=scan.id)
    assert scan.status == Scan.Status.SUCCEEDED
    return dedup_summary(scope=Scope(registry_id=request.registry.id))


def test_worker_killed_mid_scan_is_taken_over_and_the_result_equals_a_clean_run(
    fault_registry, slow_proxy, workers
):
    server, pushed = fault_registry
    first = workers(concurrency=1)
    scan = scan_start(target=slow_proxy.url)

    def mid_scan():
        """a repository scan half-way through its tags"""
        running = (
            Scan.objects.filter(parent=scan, status=Scan.Status.RUNNING).select_related("repository").first()
        )
        if running and manifest_requests(slow_proxy, running.repository.name) >= TAGS_HALF:
            return running
        return None

    victim = wait_for(mid_scan, timeout=30)
    first.kill()
    killed_at = time.time()
    second = workers(concurrency=2)
    try:
        parent = wait_for(
            lambda: Scan.objects.filter(id=scan.id, finished_at__isnull=False).first(), timeout=45, sweep=True
        )
    except AssertionError:
        print(list(Scan.objects.values_list("id", "status", "takeovers", "lease_until", "repository_id")))
        print(second.log_text()[-6000:])
        raise
    victim.refresh_from_db()
    assert parent.status == Scan.Status.SUCCEEDED, (parent.message, second.log_text()[-3000:])
    assert victim.status == Scan.Status.SUCCEEDED and victim.takeovers == 1
    assert parent.repositories_done == parent.repositories_total == len(REPOSITORIES)
    assert parent.tags_count == sum(len(p.tags) for p in pushed.values())

    assert_matches_what_was_pushed(slow_proxy.url, pushed)
    faulted = dedup_summary(scope=Scope(registry_id=parent.registry_id))
    clean = clean_summary(server.url)
    assert (faulted.images, faulted.logical_bytes, faulted.stored_bytes, faulted.distinct_layers) == (
        clean.images,
        clean.logical_bytes,
        clean.stored_bytes,
        clean.distinct_layers,
    )

    # The dead worker's repository was not taken while its lease could still be live.
    events = scan_events(first, second)
    retaken = [e for e in events if e["event"] == "scan_started" and e["scan_id"] == victim.id]
    assert [e["worker"] for e in retaken] == [first.name, second.name]
    assert retaken[1]["at"] > killed_at
    assert overlapping_scans(events, killed_at={first.name: killed_at}) == []
    assert slow_proxy.state.max_in_flight <= CAP


TAGS_HALF = 8


def test_registry_stopped_and_restarted_mid_scan_leaves_nothing_half_written(
    fault_registry, slow_proxy, workers
):
    server, pushed = fault_registry
    workers(concurrency=1)
    scan = scan_start(target=slow_proxy.url)

    def mid_scan():
        """a repository scan half-way through its tags"""
        return Scan.objects.filter(parent=scan, status=Scan.Status.RUNNING).exists() and any(
            manifest_requests(slow_proxy, r) >= TAGS_HALF for r in REPOSITORIES
        )

    wait_for(mid_scan, timeout=30)
    server.stop()
    time.sleep(2.0)
    server.start()
    parent = wait_for(
        lambda: Scan.objects.filter(id=scan.id, finished_at__isnull=False).first(), timeout=50, sweep=True
    )
    # The outage was seen: requests the proxy could not forward got no reply.
    assert any(s.status is None for s in slow_proxy.state.seen)
    got, want = recorded(slow_proxy.url), truth(pushed)
    for child in parent.children.select_related("repository"):
        name = child.repository.name
        if child.status == Scan.Status.SUCCEEDED:
            assert got.get(name) == want[name]
        else:
            # Failed with the reason, and nothing of the repository half-written.
            assert child.status == Scan.Status.FAILED and child.message, child.status
            assert name not in got
    if parent.status == Scan.Status.SUCCEEDED:
        assert_matches_what_was_pushed(slow_proxy.url, pushed)


def test_two_workers_never_scan_one_repository_at_once(fault_registry, slow_proxy, workers):
    _, pushed = fault_registry
    a, b = workers(concurrency=2), workers(concurrency=2)
    target = f"{slow_proxy.url.removeprefix('http://')}/{REPOSITORIES[0]}"
    scans = [scan_start(target=target) for _ in range(4)]
    wait_for(
        lambda: Scan.objects.filter(id__in=[s.id for s in scans], finished_at__isnull=False).count() == 4,
        timeout=50,
    )
    statuses = set(Scan.objects.filter(id__in=[s.id for s in scans]).values_list("status", flat=True))
    assert statuses == {Scan.Status.SUCCEEDED}
    events = scan_events(a, b)
    started = [e for e in events if e["event"] == "scan_started"]
    assert len(started) == 4 and {e["worker"] for e in started} <= {a.name, b.name}
    assert overlapping_scans(events) == []
    # Four full reads of the repository, one after another, never more than the cap at once.
    assert sum(1 for s in slow_proxy.state.seen if s.path.startswith(f"/v2/{REPOSITORIES[0]}/tags/list")) == 4
    assert slow_proxy.state.max_in_flight <= CAP
    assert recorded(slow_proxy.url) == {REPOSITORIES[0]: pushed[REPOSITORIES[0]].tags}
