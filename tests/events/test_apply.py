"""Applying events against a real registry, in this process: events late, out of order or delivered
twice come to what a full scan of the registry's final state records; a scan of a followed registry
counts what the events missed (drift)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from analytics.events.apply import registries_waiting, registry_events_apply
from analytics.events.formats import events_parse
from analytics.events.inbox import events_store
from analytics.ingest.answers import ANSWERS
from analytics.models import ManifestPulls, Registry, RegistryEvent, Scan, SummarySnapshot, Tag, TagEvent
from analytics.registries import registry_upsert
from analytics.scans.start import scan_start_inline
from analytics.selectors.answers import answers_stale
from analytics.selectors.lineage import stale_bases_computed
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from harness.pusher import Pusher, make_base
from harness.registry import RegistryServer, blobstore_bytes
from tests.support.hostile_registry import hostile_registry

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
DISTRIBUTION = "application/vnd.docker.distribution.events.v1+json"
OCI = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def server() -> Iterator[RegistryServer]:
    with RegistryServer() as reg:
        yield reg


@pytest.fixture
def followed(server: RegistryServer) -> Registry:
    row = registry_upsert(url=server.url, name="followed")
    row.set_events_secret("secret")
    row.save()
    return row


@pytest.fixture(autouse=True)
def _no_tasks(monkeypatch):
    """These tests apply in process; no task goes to a broker."""
    monkeypatch.setattr("analytics.events.inbox.events_apply_soon", lambda *, registry_id: None)


def event(action: str, repository: str, *, tag: str = "", digest: str = "", **request: str) -> dict:
    """One event shaped as distribution 2.8 sends it (tests/fixtures/events/distribution_*.json)."""
    target: dict[str, object] = {"repository": repository}
    if digest:
        target["digest"] = digest
    if tag:
        target["tag"] = tag
    if action in ("push", "pull") and digest:
        target |= {"mediaType": OCI, "url": f"http://127.0.0.1/v2/{repository}/manifests/{digest}"}
    return {
        "id": str(uuid.uuid4()),
        "timestamp": "2026-12-07T09:09:50.016254174Z",
        "action": action,
        "target": target,
        "request": {"method": request.get("method", "PUT"), "useragent": request.get("useragent", "test/1")},
    }


def deliver(registry: Registry, *events: dict) -> None:
    body = json.dumps({"events": list(events)}).encode()
    events_store(registry=registry, events=events_parse(body=body, content_type=DISTRIBUTION).events)


def tags(registry_id: int) -> dict[tuple[str, str], str]:
    rows = Tag.objects.filter(
        repository__registry_id=registry_id, removed_at__isnull=True, manifest__isnull=False
    ).values_list("repository__name", "name", "manifest__digest")
    return {(r, t): d for r, t, d in rows}


def summary(registry_id: int) -> dict[str, object]:
    return dedup_summary(scope=Scope(registry_id=registry_id)).summary()


def assert_matches_full_scan(server: RegistryServer, followed: Registry) -> None:
    """What the events brought in equals a full scan of the registry into a registry row of its own
    (a base URL names one row: the followed one lends its URL while the scan runs)."""
    ours = (tags(followed.id), summary(followed.id))
    Registry.objects.filter(id=followed.id).update(url="http://127.0.0.1:9")  # free the URL
    scan = scan_start_inline(target=server.host)
    assert scan.status == Scan.Status.SUCCEEDED, scan.message
    assert (tags(scan.registry_id), summary(scan.registry_id)) == ours
    Registry.objects.filter(id=scan.registry_id).delete()
    Registry.objects.filter(id=followed.id).update(url=server.url)


def test_a_delete_before_the_push_it_follows_ends_with_the_tag_gone(server, followed):
    with Pusher(server.url) as push:
        image = push.image("team/app", "v1", seed="ooo-v1", base=make_base("ooo"))
    assert httpx.delete(f"{server.url}/v2/team/app/manifests/{image.digest}").status_code == 202
    # the registry's events, the wrong way round: the delete (digest, then the tag it untagged) first
    deliver(followed, event("delete", "team/app", digest=image.digest), event("delete", "team/app", tag="v1"))
    registry_events_apply(registry_id=followed.id)
    deliver(followed, event("push", "team/app", tag="v1", digest=image.digest))
    registry_events_apply(registry_id=followed.id)
    assert tags(followed.id) == {}
    assert not RegistryEvent.objects.filter(applied_at__isnull=True).exists()
    assert_matches_full_scan(server, followed)


def test_two_pushes_of_one_tag_in_the_wrong_order_end_at_the_last(server, followed):
    base = make_base("twice")
    with Pusher(server.url) as push:
        first = push.image("team/app", "latest", seed="first", base=base)
        second = push.image("team/app", "latest", seed="second", base=base)
    deliver(followed, event("push", "team/app", tag="latest", digest=second.digest))
    registry_events_apply(registry_id=followed.id)
    deliver(followed, event("push", "team/app", tag="latest", digest=first.digest))
    registry_events_apply(registry_id=followed.id)
    assert tags(followed.id) == {("team/app", "latest"): second.digest}
    # the late push read the tag again and found it where it was: nothing moved back
    assert list(TagEvent.objects.values_list("old_digest", "new_digest")) == [("", second.digest)]
    assert_matches_full_scan(server, followed)


def test_a_manifest_deleted_by_digest_untags_every_tag_naming_it_and_figures_follow(server, followed):
    base = make_base("del")
    with Pusher(server.url) as push:
        kept = push.image("team/app", "kept", seed="kept", base=base)
        gone = push.image("team/app", "v1", seed="gone", base=base)
        push.put_manifest("team/app", "stable", gone.manifest)
    deliver(
        followed,
        event("push", "team/app", tag="kept", digest=kept.digest),
        event("push", "team/app", tag="v1", digest=gone.digest),
        event("push", "team/app", tag="stable", digest=gone.digest),
    )
    registry_events_apply(registry_id=followed.id)
    assert summary(followed.id)["images"] == 2
    assert httpx.delete(f"{server.url}/v2/team/app/manifests/{gone.digest}").status_code == 202
    deliver(followed, event("delete", "team/app", digest=gone.digest))  # the tag deletes were lost
    registry_events_apply(registry_id=followed.id)
    assert tags(followed.id) == {("team/app", "kept"): kept.digest}
    assert summary(followed.id)["images"] == 1
    assert_matches_full_scan(server, followed)


def test_a_pull_delivered_twice_is_counted_once(server, followed):
    with Pusher(server.url) as push:
        image = push.image("team/app", "v1", seed="pulled", base=make_base("pulled"))
    pulled = event("pull", "team/app", tag="v1", digest=image.digest, method="GET", useragent="docker/27")
    scanner = {**pulled, "id": str(uuid.uuid4()), "request": {"method": "GET", "useragent": "layerlens/1.0"}}
    deliver(followed, pulled, scanner)  # the scanner's read is not even stored
    deliver(followed, pulled)  # a retry before it was applied
    registry_events_apply(registry_id=followed.id)
    deliver(followed, pulled)  # and after
    registry_events_apply(registry_id=followed.id)
    assert list(ManifestPulls.objects.values_list("digest", "pulls")) == [(image.digest, 1)]
    assert list(RegistryEvent.objects.values_list("user_agent", "outcome")) == [("docker/27", "applied")]


def test_blobs_mounts_and_untagged_pushes_change_nothing(server, followed):
    with Pusher(server.url) as push:
        image = push.image("team/app", "v1", seed="blobs", base=make_base("blobs"))
    layer = image.layers[0][0]
    deliver(
        followed,
        {**event("push", "team/app"), "target": {"repository": "team/app", "digest": layer}},
        {**event("mount", "team/other"), "target": {"repository": "team/other", "digest": layer}},
        event("push", "team/app", digest=image.digest),  # by digest: no tag names it
    )
    registry_events_apply(registry_id=followed.id)
    assert tags(followed.id) == {}
    assert set(RegistryEvent.objects.values_list("outcome", flat=True)) == {"unchanged"}
    assert Registry.objects.get(id=followed.id).last_event_at is None


def test_a_tag_that_cannot_be_read_fails_its_event_and_keeps_what_it_held(server, followed):
    base = make_base("keep")
    with Pusher(server.url) as push:
        held = push.image("team/app", "v1", seed="keep-1", base=base)
        deliver(followed, event("push", "team/app", tag="v1", digest=held.digest))
        registry_events_apply(registry_id=followed.id)
        moved = push.image("team/app", "v1", seed="keep-2", base=base)
    # the new image's config vanishes from the storage (an operator, broken storage): the manifest
    # is served, its config is not
    hexdigest = moved.config_digest.removeprefix("sha256:")
    blob = server.root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest
    (blob / "data").unlink()
    blob.rmdir()
    deliver(followed, event("push", "team/app", tag="v1", digest=moved.digest))
    registry_events_apply(registry_id=followed.id)
    assert tags(followed.id) == {("team/app", "v1"): held.digest}
    failed = RegistryEvent.objects.get(outcome="failed")
    assert failed.digest == moved.digest and failed.applied_at is not None and failed.message


def test_a_scan_of_a_followed_registry_counts_what_the_events_missed(server, followed):
    base = make_base("drift")
    with Pusher(server.url) as push:
        seen = push.image("team/app", "v1", seed="seen", base=base)
        deliver(followed, event("push", "team/app", tag="v1", digest=seen.digest))
        registry_events_apply(registry_id=followed.id)
        push.image("team/app", "v2", seed="missed", base=base)  # its event was lost
        push.image("team/new", "v1", seed="missed-too", base=base)
    scan = scan_start_inline(target=server.host)
    assert scan.registry_id == followed.id and scan.drift_count == 2
    api = APIClient()
    api.force_authenticate(user=get_user_model().objects.create(username="reader"))
    assert api.get(f"/api/v1/scans/{scan.id}/").json()["drift_count"] == 2
    assert dict(Scan.objects.filter(parent=scan).values_list("repository__name", "drift_count")) == {
        "team/app": 1,
        "team/new": 1,
    }
    again = scan_start_inline(target=server.host)
    assert again.drift_count == 0
    # a registry nobody follows has no drift to count
    Registry.objects.filter(id=followed.id).update(events_secret_encrypted="")
    with Pusher(server.url) as push:
        push.image("team/app", "v3", seed="unfollowed", base=base)
    assert scan_start_inline(target=server.host).drift_count == 0


def test_the_sweeper_finds_registries_whose_events_wait(followed, settings):
    settings.EVENTS_SWEEP_AFTER_SECONDS = 0
    assert registries_waiting() == []
    deliver(followed, event("pull", "team/app", tag="v1", digest="sha256:" + "a" * 64, method="GET"))
    assert registries_waiting() == [followed.id]
    registry_events_apply(registry_id=followed.id)
    assert registries_waiting() == []


def test_harbor_and_quay_payloads_are_applied_like_distributions(server, followed):
    """The documented Harbor and Quay payloads, renamed to what this registry holds, through the
    receiver's parser and the same apply: a push reads the tag, Harbor's delete its digest's tags."""
    base = make_base("formats")
    with Pusher(server.url) as push:
        harbor = push.image("library/debian", "latest", seed="harbor", base=base)
        quay = push.image("mynamespace/repository", "foo", seed="quay", base=base)
    payload = json.loads((FIXTURES / "harbor_push_artifact.json").read_text())
    payload["event_data"]["resources"][0]["digest"] = harbor.digest
    payload["event_data"]["repository"]["repo_full_name"] = "library/debian"
    deliver_json(followed, payload)
    deliver_json(followed, json.loads((FIXTURES / "quay_repo_push.json").read_text()))  # latest and foo
    registry_events_apply(registry_id=followed.id)
    assert tags(followed.id) == {
        ("library/debian", "latest"): harbor.digest,
        ("mynamespace/repository", "foo"): quay.digest,  # `latest` is no tag there: nothing recorded
    }
    assert httpx.delete(f"{server.url}/v2/library/debian/manifests/{harbor.digest}").status_code == 202
    deleted = json.loads((FIXTURES / "harbor_delete_artifact.json").read_text())
    deleted["event_data"]["resources"][0] |= {"digest": harbor.digest, "tag": harbor.digest}
    deleted["event_data"]["repository"]["repo_full_name"] = "library/debian"
    deliver_json(followed, deleted)
    registry_events_apply(registry_id=followed.id)
    assert tags(followed.id) == {("mynamespace/repository", "foo"): quay.digest}
    assert_matches_full_scan(server, followed)


def deliver_json(registry: Registry, payload: dict) -> None:
    body = json.dumps(payload).encode()
    events_store(registry=registry, events=events_parse(body=body, content_type="application/json").events)


def test_events_that_change_a_registry_leave_its_kept_answers_current(server, followed):
    """A base tag moved by a push: the registry's kept stale-base answer is recomputed by the worker that
    applied the events, and equals the computation from scratch."""
    with Pusher(server.url) as push:
        old = push.image("lib/base", "1", seed="b1", base=make_base("sb1"), own_layer_bytes=0)
        app = push.image("team/app", "1", seed="app", base=make_base("sb1"))
    deliver(
        followed,
        event("push", "lib/base", tag="1", digest=old.digest),
        event("push", "team/app", tag="1", digest=app.digest),
    )
    registry_events_apply(registry_id=followed.id)
    with Pusher(server.url) as push:
        new = push.image("lib/base", "1", seed="b2", base=make_base("sb2"), own_layer_bytes=0)
    deliver(followed, event("push", "lib/base", tag="1", digest=new.digest))
    registry_events_apply(registry_id=followed.id)
    for answer in ANSWERS:
        assert answers_stale(registry_ids=[followed.id], answer=answer) == []
    computed = stale_bases_computed(registry_id=followed.id)
    assert [(s.repository, s.tag, s.old_digest, s.new_digest) for s in computed] == [
        ("lib/base", "1", old.digest, new.digest)
    ]
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("reader-sb"))
    kept = client.get("/api/v1/stale-bases/", {"registry": followed.id}).json()["results"]
    assert [(r["repository"], r["tag"], r["old_digest"], r["new_digest"]) for r in kept] == [
        ("lib/base", "1", old.digest, new.digest)
    ]


def test_the_lease_holder_applies_several_batches_and_leaves_the_rest_for_later(server, followed, settings):
    """Events arriving while a repository's batch is applied are taken by the worker holding it, up to a
    few batches; past them the repository is left for the task's next turn."""
    settings.EVENTS_APPLY_BATCH = 2
    digest = "sha256:" + "c" * 64
    deliver(followed, *[event("pull", "team/app", digest=digest, method="GET") for _ in range(9)])
    first = registry_events_apply(registry_id=followed.id)
    assert (first.events, first.later) == (8, ["team/app"])
    second = registry_events_apply(registry_id=followed.id)
    assert (second.events, second.later) == (1, [])
    assert ManifestPulls.objects.get(digest=digest).pulls == 9


def test_a_push_applied_before_the_registry_linked_its_tag_is_read_again(server, followed, settings):
    """Distribution notifies a manifest push before it links the tag: an applier that keeps up reads the
    tag while the registry still answers 404. Here the tag is linked 0.1 s after the event came (the
    settle time is long enough for that on a loaded machine)."""
    settings.EVENTS_PUSH_SETTLE_SECONDS = 2.0
    with Pusher(server.url) as push:
        image = push.image("team/app", "staging", seed="settle", base=make_base("settle"))
    deliver(followed, event("push", "team/app", tag="v1", digest=image.digest))

    def link() -> None:
        time.sleep(0.1)
        with Pusher(server.url) as late:
            late.put_manifest("team/app", "v1", image.manifest)

    linking = threading.Thread(target=link)
    linking.start()
    try:
        registry_events_apply(registry_id=followed.id)
    finally:
        linking.join()
    assert tags(followed.id) == {("team/app", "v1"): image.digest}
    assert list(RegistryEvent.objects.values_list("outcome", flat=True)) == ["applied"]


def test_a_tag_answering_5xx_keeps_its_events_pending_then_fails_them(settings):
    """A manifest the registry answers with a 500: the events wait (the task retries with backoff)
    rather than fail at once; once the oldest is EVENTS_TRANSIENT_RETRY_SECONDS old they fail with the
    registry's error, so one broken manifest never holds a repository's events for ever."""
    with hostile_registry() as hostile:
        row = registry_upsert(url=hostile.base_url, name="hostile")
        deliver(row, event("push", "hostile/app", tag="error-500", digest="sha256:" + "d" * 64))
        result = registry_events_apply(registry_id=row.id)
        assert result.transient is not None and result.later == ["hostile/app"]
        pending = RegistryEvent.objects.get(registry=row)
        assert pending.applied_at is None and pending.outcome == ""
        settings.EVENTS_TRANSIENT_RETRY_SECONDS = 0
        result = registry_events_apply(registry_id=row.id)
    assert result.transient is None and result.later == []
    failed = RegistryEvent.objects.get(registry=row)
    assert failed.applied_at is not None and failed.outcome == "failed" and "500" in failed.message


def test_events_that_change_a_registry_keep_its_trend_current_one_per_interval(server, followed, settings):
    """After events change a registry, its trend and its changed repositories' get a point with the
    figures of now; more changes within EVENTS_TREND_INTERVAL_SECONDS move that point, not add one."""
    base = make_base("trend")
    with Pusher(server.url) as push:
        first = push.image("team/app", "v1", seed="trend-1", base=base)
    deliver(followed, event("push", "team/app", tag="v1", digest=first.digest))
    registry_events_apply(registry_id=followed.id)
    registry_points = SummarySnapshot.objects.filter(registry=followed, repository__isnull=True)
    assert registry_points.count() == 1
    assert registry_points.get().stored_bytes == blobstore_bytes(server.root)
    with Pusher(server.url) as push:
        second = push.image("team/app", "v2", seed="trend-2", base=base)
    deliver(followed, event("push", "team/app", tag="v2", digest=second.digest))
    registry_events_apply(registry_id=followed.id)
    point = registry_points.get()  # moved, not added
    assert (point.images, point.stored_bytes) == (2, blobstore_bytes(server.root))
    repository_point = SummarySnapshot.objects.get(registry=followed, repository__name="team/app")
    assert repository_point.images == 2
    settings.EVENTS_TREND_INTERVAL_SECONDS = 0
    with Pusher(server.url) as push:
        third = push.image("team/app", "v3", seed="trend-3", base=base)
    deliver(followed, event("push", "team/app", tag="v3", digest=third.digest))
    registry_events_apply(registry_id=followed.id)
    assert list(registry_points.values_list("images", flat=True)) == [2, 3]
