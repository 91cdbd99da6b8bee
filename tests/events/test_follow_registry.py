"""Following a real registry by its events: docker-registry (distribution 2.8) notifies this run's live
web server of every push, pull, mount and delete; a real Celery worker applies them. After each step
what Layerlens records of the followed registry is compared with a fresh full scan of the same
registry into a registry row of its own (reached through a loopback proxy, so it has another URL),
with no scan of the followed registry in between: tags, images, layers, logical and stored bytes,
per registry and per repository, and what it holds. Pulls are compared with the pulls the test made;
the scanner's own reads (the apply's and the reference scan's) are pulls the registry reports too.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from rest_framework.test import APIClient

from analytics.models import (
    ManifestPulls,
    Registry,
    RegistryEvent,
    RegistryHeld,
    Repository,
    Scan,
    Tag,
)
from analytics.scans.start import scan_start_inline
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary, dedup_summary_computed
from harness.images import DOCKER_LIST, DOCKER_V2, OCI_INDEX, OCI_MANIFEST, skopeo_copy
from harness.pusher import Pusher, make_base
from workers.tasks import sweep_registry_events

pytestmark = [pytest.mark.integration]

SUMMARY = ("images", "distinct_layers", "logical_bytes", "stored_bytes", "manifests", "indexes")


def current_tags(registry_id: int) -> dict[tuple[str, str], str]:
    rows = Tag.objects.filter(
        repository__registry_id=registry_id, removed_at__isnull=True, manifest__isnull=False
    ).values_list("repository__name", "name", "manifest__digest")
    return {(repo, tag): digest for repo, tag, digest in rows}


def pending(registry_id: int) -> int:
    return RegistryEvent.objects.filter(registry_id=registry_id, applied_at__isnull=True).count()


def wait_until(condition: Callable[[], bool], *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def settled(followed, expected: dict[tuple[str, str], str]) -> None:
    """Wait until the events of what the test did are applied: the tags it expects are recorded and
    nothing is pending (the registry notifies a moment after it answers, so both are needed)."""
    wait_until(
        lambda: current_tags(followed.row.id) == expected and pending(followed.row.id) == 0,
        what=f"the events to be applied: {expected}",
    )
    time.sleep(0.5)  # events still in flight (blobs, pulls) land and are applied
    wait_until(lambda: pending(followed.row.id) == 0, what="the last events")


def figures(registry_id: int) -> dict[str, object]:
    """What the API reports of a registry: its summary, each repository's, what it holds, its tags."""
    registry_scope = Scope(registry_id=registry_id)
    summary = dedup_summary(scope=registry_scope)
    repositories = {}
    for repository in Repository.objects.filter(registry_id=registry_id):
        found = dedup_summary(scope=Scope(registry_id=registry_id, repository_id=repository.id))
        if found.manifests or found.images:
            repositories[repository.name] = {k: getattr(found, k) for k in SUMMARY}
    held = RegistryHeld.objects.filter(registry_id=registry_id).values(
        "manifests", "manifest_bytes", "blobs", "blob_bytes", "tags"
    )
    return {
        "summary": {k: getattr(summary, k) for k in SUMMARY},
        "repositories": repositories,
        "held": list(held) or [{"manifests": 0, "manifest_bytes": 0, "blobs": 0, "blob_bytes": 0, "tags": 0}],
        "tags": current_tags(registry_id),
    }


def reference_scan(followed) -> int:
    """A fresh full scan of the followed registry into its own row; its id."""
    Registry.objects.filter(url=followed.proxy.url).delete()
    scan = scan_start_inline(target=followed.proxy.url.split("://", 1)[1])
    assert scan.status == Scan.Status.SUCCEEDED, (scan.status, scan.message)
    return scan.registry_id


def assert_matches_full_scan(followed) -> dict[str, object]:
    assert not Scan.objects.filter(registry=followed.row).exists()  # events alone brought it in
    ours = figures(followed.row.id)
    reference = figures(reference_scan(followed))
    assert ours == reference
    # the maintained figures equal the computed ones, too
    computed = dedup_summary_computed(scope=Scope(registry_id=followed.row.id))
    assert {k: getattr(computed, k) for k in SUMMARY} == ours["summary"]
    # and the API says the same
    api = APIClient()
    api.force_authenticate(user=_staff())
    body = api.get(f"/api/v1/registries/{followed.row.id}/").json()
    for key in ("images", "logical_bytes", "stored_bytes"):
        assert body["summary"][key] == ours["summary"][key], key
    return ours


def _staff():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="events-test", defaults={"is_staff": True})
    return user


def head_digest(followed, repository: str, tag: str) -> str:
    """The digest a tag names, by a HEAD (which the registry reports, but is no pull)."""
    accept = ", ".join((OCI_MANIFEST, DOCKER_V2, OCI_INDEX, DOCKER_LIST))
    reply = httpx.head(f"{followed.url}/v2/{repository}/manifests/{tag}", headers={"Accept": accept})
    reply.raise_for_status()
    return reply.headers["Docker-Content-Digest"]


def skopeo_inspect(ref: str) -> None:
    subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        check=True,
        timeout=60,
    )


def test_pushes_deletes_and_pulls_follow_the_registry_as_a_full_scan_sees_it(followed, start_worker):
    start_worker()
    base = make_base("events-base", layers=2)
    expected: dict[tuple[str, str], str] = {}
    with Pusher(followed.url) as push:
        # 1. pushes: two tags of one repository, another repository mounting the base's layers
        v1 = push.image("team/app", "v1", seed="app-v1", base=base)
        v2 = push.image("team/app", "v2", seed="app-v2", base=base)
        other = push.image("team/other", "v1", seed="other-v1", base=base)
        expected |= {("team/app", "v1"): v1.digest, ("team/app", "v2"): v2.digest}
        expected[("team/other", "v1")] = other.digest
        settled(followed, expected)
        first = assert_matches_full_scan(followed)
        assert first["summary"]["images"] == 3
        assert Registry.objects.get(id=followed.row.id).last_event_at is not None

        # 2. skopeo pushes a copy (its blobs mounted or found), and a tag moves
        skopeo_copy(f"docker://{followed.host}/team/app:v1", f"docker://{followed.host}/team/copy:latest")
        copy = head_digest(followed, "team/copy", "latest")  # skopeo writes its own manifest
        expected[("team/copy", "latest")] = copy
        moved = push.image("team/app", "v2", seed="app-v2-again", base=base)
        expected[("team/app", "v2")] = moved.digest
        settled(followed, expected)
        assert_matches_full_scan(followed)

        # 3. a second tag on v1's manifest, then that manifest deleted by digest: the registry untags
        # every tag naming it in that repository (and only there: team/copy keeps its copy)
        push.put_manifest("team/app", "stable", v1.manifest)
        expected[("team/app", "stable")] = v1.digest
        settled(followed, expected)
        deleted = httpx.delete(f"{followed.url}/v2/team/app/manifests/{v1.digest}")
        assert deleted.status_code == 202
        del expected[("team/app", "v1")], expected[("team/app", "stable")]
        settled(followed, expected)
        after_delete = assert_matches_full_scan(followed)
        assert after_delete["summary"]["images"] == 3  # team/app:v2, team/other:v1, team/copy:latest

    # 4. pulls: what skopeo pulled is counted, the scanner's reads (the reference scans' GETs and the
    # apply's reads of pushed tags, `layerlens/` user agent) are not, nor HEADs
    pulls = 3
    for _ in range(pulls):
        skopeo_inspect(f"{followed.host}/team/other:v1")
    layout = followed.server.workdir / "oci"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "-q",
            "--src-tls-verify=false",
            f"docker://{followed.host}/team/copy:latest",
            f"oci:{layout}:x",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    assert httpx.head(f"{followed.url}/v2/team/other/manifests/v1", headers=accept).status_code == 200

    def counted() -> dict[tuple[str, str], int]:
        rows = ManifestPulls.objects.filter(repository__registry=followed.row)
        return {(r.repository.name, r.digest): r.pulls for r in rows.select_related("repository")}

    # skopeo's copy of step 2 read team/app:v1 once: a pull too
    want = {("team/other", other.digest): pulls, ("team/copy", copy): 1, ("team/app", v1.digest): 1}
    wait_until(lambda: counted() == want and pending(followed.row.id) == 0, what=f"pulls {want}")
    time.sleep(1)
    assert counted() == want
    assert_matches_full_scan(followed)
    assert counted() == want  # the reference scan's reads are no pulls either
    assert not RegistryEvent.objects.filter(registry=followed.row, outcome="failed").exists()


def test_a_worker_killed_while_events_arrive_loses_nothing(followed, start_worker, settings):
    settings.EVENTS_SWEEP_AFTER_SECONDS = 1  # the sweeper, run here as beat would run it
    worker = start_worker()
    base = make_base("kill", layers=2)
    expected: dict[tuple[str, str], str] = {}
    pushes = 40

    def pushing() -> None:
        with Pusher(followed.url) as push:
            for i in range(pushes):
                repository, tag = f"kill/r{i % 4}", f"t{i:02d}"
                expected[(repository, tag)] = push.image(repository, tag, seed=f"kill-{i}", base=base).digest

    def manifest_pushes(**filters: object) -> int:
        return RegistryEvent.objects.filter(
            registry=followed.row, action="push", target="manifest", **filters
        ).count()

    thread = threading.Thread(target=pushing)
    thread.start()
    try:
        wait_until(lambda: manifest_pushes(applied_at__isnull=False) >= 5, what="the first pushes applied")
        worker.kill()  # SIGKILL, its pool with it, mid-apply or between tasks
    finally:
        thread.join()
    # the registry goes on delivering with no worker: every push is stored, some wait
    wait_until(lambda: manifest_pushes() == pushes, what="every push stored")
    assert pending(followed.row.id) > 0
    start_worker()
    # the killed worker's task died with it, its repository lease runs out (SCAN_LEASE_SECONDS): the
    # tasks sent meanwhile and the sweeper's bring everything in
    wait_until(
        lambda: sweep_registry_events() is not None
        and pending(followed.row.id) == 0
        and current_tags(followed.row.id) == expected,
        timeout=90,
        what="the events to be applied after the restart",
    )
    assert manifest_pushes(outcome="failed") == 0
    assert_matches_full_scan(followed)
