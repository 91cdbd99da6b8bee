"""The bounded what-if: a whole registry read off the maintained rows (equal to the computation and to
a count over the rows, through scans that add, move and drop tags), the lists as keyset pages, and a
selection too large for a request refused with a 422 that says how to narrow it or run it as a job."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.test import APIClient

from analytics.ingest.rebuild import figures_rebuild
from analytics.models import (
    ManifestLayer,
    Registry,
    RegistryHeld,
    RepositoryManifest,
    Tag,
    WhatIfJob,
)
from analytics.selectors.whatif import (
    TagRule,
    deletion_impact,
    registry_whole_impact,
    rule_tags,
    whatif,
    whatif_bounded,
)
from harness.records import image, index, ingest, layer

A, B, C, D, E = (layer(n, s) for n, s in [("a", 1000), ("b", 2000), ("c", 300), ("d", 40), ("e", 5)])
BASE = image("base", [A, B])
MID = image("mid", [A, B, C])
APP = image("app", [A, B, C, D])
OTHER = image("other", [E])
AMD, ARM = image("m-amd", [A, C], arch="amd64"), image("m-arm", [A, D], arch="arm64")
MULTI = index("multi", [AMD, ARM])

FIGURES = (
    "tags",
    "manifests_untagged",
    "manifests_freed",
    "blobs_freed",
    "freed_bytes",
    "freed_manifest_bytes",
    "freed_blob_bytes",
    "shared_blobs",
    "shared_bytes",
    "shared_manifests",
    "shared_manifest_bytes",
    "kept_bytes",
)


def figures(impact) -> dict:
    return {f: getattr(impact, f) for f in FIGURES}


def by_rows(registry: Registry) -> dict:
    """Deleting every tag of the registry, counted over the rows in Python: every present holding is
    lost; the distinct manifests held and the distinct blobs they reference (layers, configs) are freed."""
    held = RepositoryManifest.objects.filter(repository__registry=registry, present=True).select_related(
        "manifest__config"
    )
    manifests = {h.manifest_id: h.manifest for h in held}
    blobs = {m.config_id: m.config.size for m in manifests.values() if m.config_id}
    for ml in ManifestLayer.objects.filter(manifest_id__in=manifests).select_related("blob"):
        blobs[ml.blob_id] = ml.blob.size
    tags = Tag.objects.filter(repository__registry=registry, removed_at=None, manifest__isnull=False)
    manifest_bytes = sum(m.size for m in manifests.values())
    return {
        "tags": tags.count(),
        "manifests_untagged": held.count(),
        "manifests_freed": len(manifests),
        "blobs_freed": len(blobs),
        "freed_bytes": manifest_bytes + sum(blobs.values()),
        "freed_manifest_bytes": manifest_bytes,
        "freed_blob_bytes": sum(blobs.values()),
        "shared_blobs": 0,
        "shared_bytes": 0,
        "shared_manifests": 0,
        "shared_manifest_bytes": 0,
        "kept_bytes": 0,
    }


@pytest.fixture
def registry(db):
    reg = Registry.objects.create(name="local", url="http://127.0.0.1:5000")
    ingest(reg, "apps/web", {"1": BASE, "2": MID, "latest": MID})
    ingest(reg, "apps/api", {"1": APP, "old": BASE})
    ingest(reg, "mirror/web", {"1": MID})
    ingest(reg, "multi/app", {"1": MULTI, "amd": AMD}, extra=[AMD, ARM])
    ingest(reg, "solo", {"x": OTHER})
    return reg


def assert_maintained_exact(registry: Registry) -> None:
    computed = whatif(rule=TagRule(registry_id=registry.id))
    maintained = registry_whole_impact(registry_id=registry.id, limit=1000)
    assert maintained.answered_by == "maintained" and computed.answered_by == "computed"
    assert figures(maintained) == figures(computed) == by_rows(registry)
    assert maintained.manifests == computed.manifests
    assert maintained.deleted_tags == computed.deleted_tags


def test_a_whole_registry_is_read_off_the_maintained_rows_exactly(registry):
    other = Registry.objects.create(name="other", url="http://127.0.0.1:5001")
    ingest(other, "apps/web", {"1": MID})  # the same content in another registry changes nothing here
    assert_maintained_exact(registry)
    assert_maintained_exact(other)
    assert whatif_bounded(rule=TagRule(registry_id=registry.id)).answered_by == "maintained"


def test_the_maintained_answer_follows_scans_that_move_add_and_drop_tags(registry):
    ingest(registry, "apps/web", {"1": BASE, "2": APP, "edge": OTHER})  # latest gone, 2 moved, edge new
    assert_maintained_exact(registry)
    ingest(registry, "apps/api", {})  # every tag gone: its holdings are no longer present
    ingest(registry, "multi/app", {"amd": AMD})  # the index and arm64 go, amd64 stays
    assert_maintained_exact(registry)
    ingest(registry, "apps/api", {"2": APP, "3": image("new", [layer("f", 77), A])})
    assert_maintained_exact(registry)


def test_the_rebuild_and_the_deltas_agree(registry):
    before = RegistryHeld.objects.filter(registry=registry).values().get()
    RegistryHeld.objects.filter(registry=registry).delete()
    with transaction.atomic():
        figures_rebuild(registry_id=registry.id)
    assert RegistryHeld.objects.filter(registry=registry).values().get() == before


def test_an_empty_registry_frees_nothing(db):
    empty = Registry.objects.create(name="empty", url="http://127.0.0.1:5002")
    assert figures(registry_whole_impact(registry_id=empty.id)) == figures(
        whatif(rule=TagRule(registry_id=empty.id))
    )


def test_lists_are_keyset_pages_that_add_up_to_the_whole(registry):
    for rule in (TagRule(registry_id=registry.id), TagRule(registry_id=registry.id, namespace="apps")):
        expected = whatif(rule=rule)
        assert len(expected.manifests) > 2 and len(expected.deleted_tags) > 2
        manifests, after = [], None
        while True:
            page = whatif_bounded(rule=rule, limit=2, manifests_after=after)
            assert figures(page) == figures(expected) and len(page.manifests) <= 2
            manifests += page.manifests
            if not page.manifests_more:
                break
            after = (page.manifests[-1].repository, page.manifests[-1].digest)
        assert manifests == expected.manifests
        tags, after = [], None
        while True:
            page = whatif_bounded(rule=rule, limit=2, tags_after=after)
            tags += page.deleted_tags
            if not page.deleted_tags_more:
                break
            after = (page.deleted_tags[-1][1], page.deleted_tags[-1][2])
        assert tags == expected.deleted_tags


def test_no_details_lists_nothing(registry):
    for rule in (TagRule(registry_id=registry.id), TagRule(registry_id=registry.id, namespace="apps")):
        impact = whatif_bounded(rule=rule, details=False)
        assert impact.manifests == [] and impact.deleted_tags == [] and impact.tags > 0


# --- the API and the page ---------------------------------------------------------------------------------


@pytest.fixture
def client(db):
    user = get_user_model().objects.create_user("reader", password="x-very-long-password-1")
    c = APIClient()
    c.force_authenticate(user)
    return c


def test_the_api_says_which_path_answered_and_pages_the_lists(registry, client):
    reply = client.get("/api/v1/whatif/", {"registry": registry.id, "details_limit": 2})
    assert reply.status_code == 200
    data = reply.json()
    assert data["answered_by"] == "maintained"
    assert len(data["manifests"]) == 2 and data["manifests_next"] and data["manifests_next_url"]
    seen = [(m["repository"], m["digest"]) for m in data["manifests"]]
    url = data["manifests_next_url"]
    while url:
        page = client.get(url).json()
        seen += [(m["repository"], m["digest"]) for m in page["manifests"]]
        url = page["manifests_next_url"]
    expected = whatif(rule=TagRule(registry_id=registry.id))
    assert seen == [(m.repository, m.digest) for m in expected.manifests]
    computed = client.post("/api/v1/whatif/", {"namespace": "apps", "registry": registry.id}, format="json")
    assert computed.status_code == 200 and computed.json()["answered_by"] == "computed"
    assert computed.json()["manifests_next_url"] is None  # a POST pages with the key in its body


def test_a_default_answer_is_a_page_not_the_whole_list(registry, client):
    ingest(registry, "many", {f"t{i:03}": image(f"many-{i}", [A, layer(f"m{i}", i + 1)]) for i in range(120)})
    data = client.get("/api/v1/whatif/", {"registry": registry.id}).json()
    assert len(data["manifests"]) == 100 and len(data["deleted_tags"]) == 100
    assert data["tags"] == Tag.objects.filter(repository__registry=registry).count()


@pytest.mark.parametrize(
    "query",
    [
        {"details_limit": 0},
        {"details_limit": 1001},
        {"manifests_after": "no-separator"},
        {"tags_after": ":x"},
        {"keep_newest": 1, "newest_by": "pushed"},
    ],
)
def test_unusable_paging_values_are_a_400(registry, client, query):
    reply = client.get("/api/v1/whatif/", {"registry": registry.id, **query})
    assert reply.status_code == 400, reply.content


def test_a_selection_over_the_cap_is_a_422_that_says_how_to_narrow_it(registry, client, settings):
    settings.WHATIF_SYNC_HOLDINGS = 3
    namespace = {"registry": registry.id, "namespace": "apps"}  # 4 holdings
    reply = client.get("/api/v1/whatif/", namespace)
    assert reply.status_code == 422
    assert "/api/v1/whatif/jobs/" in reply.json()["detail"] and "narrow" in reply.json()["detail"].lower()
    glob = client.post("/api/v1/whatif/", {"registry": registry.id, "tag_glob": "1*"}, format="json")
    assert glob.status_code == 422
    # still answered: a whole registry (maintained), a small repository, tags listed one by one
    assert client.get("/api/v1/whatif/", {"registry": registry.id}).status_code == 200
    assert (
        client.get("/api/v1/whatif/", {"repository": "apps/web", "registry": registry.id}).status_code == 200
    )
    listed = client.post("/api/v1/whatif/", {"registry": registry.id, "tags": ["apps/web:1"]}, format="json")
    assert listed.status_code == 200
    # the page says the same, as a 400 showing the form
    page = APIClient()
    page.force_login(get_user_model().objects.get(username="reader"))
    shown = page.get("/ui/whatif/", namespace)
    assert shown.status_code == 400 and b"/api/v1/whatif/jobs/" in shown.content


def test_the_sync_cap_counts_the_scope_not_the_tags_selected(registry, settings):
    settings.WHATIF_SYNC_HOLDINGS = 100
    rule = TagRule(registry_id=registry.id, namespace="apps", keep_newest=1)
    assert figures(whatif_bounded(rule=rule)) == figures(
        deletion_impact(tag_ids=list(rule_tags(rule=rule).values_list("id", flat=True)))
    )


# --- jobs without a worker: idempotence and the bound per owner ---------------------------------------


def test_jobs_are_idempotent_and_bounded_per_owner(
    registry, client, settings, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr("analytics.jobs.current_app.send_task", lambda name, args: sent.append((name, args)))
    post = client.post

    def send_on_commit(*args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return post(*args, **kwargs)

    monkeypatch.setattr(client, "post", send_on_commit)
    settings.WHATIF_JOBS_PER_OWNER = 2
    first = client.post("/api/v1/whatif/jobs/", {"registry": registry.id, "tag_glob": "1*"}, format="json")
    assert first.status_code == 202 and first.json()["status"] == "queued"
    assert first["Location"].endswith(f"/api/v1/whatif/jobs/{first.json()['id']}/")
    again = client.post("/api/v1/whatif/jobs/", {"registry": registry.id, "tag_glob": "1*"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    second = client.post("/api/v1/whatif/jobs/", {"registry": registry.id, "keep_newest": 1}, format="json")
    assert second.status_code == 202
    third = client.post("/api/v1/whatif/jobs/", {"registry": registry.id, "not_seen_days": 1}, format="json")
    assert third.status_code == 429 and "unfinished" in third.json()["detail"]
    assert sent == [
        ("workers.tasks.whatif_job", [first.json()["id"]]),
        ("workers.tasks.whatif_job", [second.json()["id"]]),
    ]
    # another user sees none of them and has places of their own
    stranger = APIClient()
    stranger.force_authenticate(
        get_user_model().objects.create_user("other", password="x-very-long-password-2")
    )
    assert stranger.get(f"/api/v1/whatif/jobs/{first.json()['id']}/").status_code == 404
    assert (
        stranger.post(
            "/api/v1/whatif/jobs/", {"registry": registry.id, "keep_newest": 1}, format="json"
        ).status_code
        == 202
    )
    assert client.post("/api/v1/whatif/jobs/", {}, format="json").status_code == 400  # no rule: no job
    assert WhatIfJob.objects.count() == 3
