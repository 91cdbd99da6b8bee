"""What a what-if leaves behind: every byte it untags is freed or kept, never neither. Deleting every tag
of a scope, freed + kept is the scope's stored bytes as the summary reports them (but for the two cases
`deletion_impact` names); deleting some tags, it is the distinct bytes of the manifests they untag and
their blobs. Hand-made records, whose answers are known by construction."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from analytics.infra.units import human_size
from analytics.jobs import whatif_job_run
from analytics.models import Registry, Repository
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary, dedup_summary_computed
from analytics.selectors.whatif import TagRule, registry_whole_impact, whatif, whatif_bounded
from harness.records import image, index, ingest, layer

A, B, C, D, E, F = (
    layer(n, s) for n, s in [("a", 1000), ("b", 2000), ("c", 300), ("d", 40), ("e", 5), ("f", 70_000)]
)
MID = image("mid", [A, B, C])
OWN = image("own", [E, D])
AMD, ARM = image("m-amd", [A, C], arch="amd64"), image("m-arm", [A, D], arch="arm64")
MULTI = index("multi", [AMD, ARM])


def parts(*records) -> dict[str, int]:
    """digest -> size of what the records store: manifests, configs, layers (an index: itself)."""
    out: dict[str, int] = {}
    for r in records:
        out[r.digest] = r.size
        if hasattr(r, "config"):
            out[r.config.digest] = r.config.size
            out.update({x.digest: x.size for x in r.layers})
    return out


def stored(**scope) -> int:
    """The scope's stored bytes as the summary API reports them, checked against the computation."""
    got = dedup_summary(scope=Scope(**scope))
    assert got.stored_bytes == dedup_summary_computed(scope=Scope(**scope)).stored_bytes
    return got.stored_bytes


def counted_once(impact) -> int:
    assert impact.kept_bytes == impact.shared_manifest_bytes + impact.shared_bytes
    assert impact.freed_bytes == impact.freed_manifest_bytes + impact.freed_blob_bytes
    return impact.freed_bytes + impact.kept_bytes


@pytest.fixture
def registry(db):
    return Registry.objects.create(name="local", url="http://127.0.0.1:5000")


def test_a_manifest_held_in_another_namespace_stays_and_is_counted_as_kept(registry):
    ingest(registry, "demo/web", {"1": MID})
    ingest(registry, "demo/own", {"1": OWN})
    ingest(registry, "other/web", {"1": MID})  # keeps MID: its manifest and every blob of it
    impact = whatif(rule=TagRule(registry_id=registry.id, namespace="demo"))
    assert (impact.shared_manifests, impact.shared_manifest_bytes) == (1, MID.size)
    assert (impact.shared_blobs, impact.shared_bytes) == (4, sum(parts(MID).values()) - MID.size)
    assert impact.freed_bytes == sum(parts(OWN).values())
    assert [(m.repository, m.freed) for m in impact.manifests] == [("demo/own", True), ("demo/web", False)]
    assert counted_once(impact) == stored(registry_id=registry.id, namespace="demo")
    assert counted_once(impact) == sum(parts(MID, OWN).values())
    # the other namespace's view: the same manifest, kept by demo now
    other = whatif(rule=TagRule(registry_id=registry.id, namespace="other"))
    assert (other.freed_bytes, other.kept_bytes) == (0, sum(parts(MID).values()))
    assert counted_once(other) == stored(registry_id=registry.id, namespace="other")


def test_a_blob_shared_across_namespaces_stays_and_is_counted_as_kept(registry):
    mine, theirs = image("mine", [A, F]), image("theirs", [A, B])
    ingest(registry, "demo/app", {"1": mine, "2": mine})
    ingest(registry, "other/app", {"1": theirs})
    impact = whatif(rule=TagRule(registry_id=registry.id, namespace="demo"))
    assert (impact.shared_manifests, impact.shared_blobs, impact.shared_bytes) == (0, 1, A.size)
    assert impact.freed_bytes == mine.size + mine.config.size + F.size
    assert counted_once(impact) == stored(registry_id=registry.id, namespace="demo")


def test_an_index_and_its_children_are_each_counted_once(registry):
    ingest(registry, "demo/multi", {"1": MULTI, "amd": AMD}, extra=[AMD, ARM])
    ingest(registry, "other/amd", {"1": AMD})  # keeps the amd64 child, and A and C with it
    impact = whatif(rule=TagRule(registry_id=registry.id, namespace="demo"))
    assert (impact.shared_manifests, impact.shared_manifest_bytes) == (1, AMD.size)
    assert impact.freed_bytes == MULTI.size + ARM.size + ARM.config.size + D.size
    assert impact.shared_bytes == AMD.config.size + A.size + C.size
    assert counted_once(impact) == stored(registry_id=registry.id, namespace="demo")
    assert counted_once(impact) == sum(parts(MULTI, AMD, ARM).values())


@pytest.fixture
def mixed(registry):
    """Every case at once: a manifest and a blob shared across namespaces, an index whose child is held
    elsewhere, one manifest twice in a namespace, an image sharing nothing."""
    ingest(registry, "demo/web", {"1": MID, "latest": MID})
    ingest(registry, "demo/web-copy", {"1": MID})
    ingest(registry, "demo/multi", {"1": MULTI}, extra=[AMD, ARM])
    ingest(registry, "demo/own", {"1": OWN, "2": image("big", [F, B])})
    ingest(registry, "other/web", {"1": MID})
    ingest(registry, "other/amd", {"1": AMD})
    ingest(registry, "solo", {"x": image("solo", [E])})
    return registry


def test_deleting_every_tag_of_a_scope_counts_its_stored_bytes_once(mixed):
    registry = mixed
    for name in ("demo", "demo/web", "other", "solo"):
        impact = whatif(rule=TagRule(registry_id=registry.id, namespace=name))
        assert counted_once(impact) == stored(registry_id=registry.id, namespace=name), name
    for repo in Repository.objects.filter(registry=registry):
        impact = whatif(rule=TagRule(registry_id=registry.id, repository_id=repo.id))
        assert counted_once(impact) == stored(registry_id=registry.id, repository_id=repo.id), repo.name
    # a whole registry: nothing else keeps anything, computed or read off the maintained rows
    computed = whatif(rule=TagRule(registry_id=registry.id))
    maintained = whatif_bounded(rule=TagRule(registry_id=registry.id))
    assert maintained.answered_by == "maintained" and computed.kept_bytes == maintained.kept_bytes == 0
    assert counted_once(computed) == counted_once(maintained) == stored(registry_id=registry.id)


def test_deleting_some_tags_counts_what_they_untag_once(mixed):
    registry = mixed
    # demo/web's MID stays tagged in demo/web-copy; the index goes, its amd64 child stays (other/amd)
    picked = (("demo/web", "1"), ("demo/web", "latest"), ("demo/multi", "1"))
    impact = whatif(rule=TagRule(registry_id=registry.id, tags=picked))
    untagged = parts(MID, MULTI, AMD, ARM)
    assert counted_once(impact) == sum(untagged.values())
    assert (impact.shared_manifests, impact.shared_manifest_bytes) == (2, MID.size + AMD.size)
    assert impact.freed_bytes == MULTI.size + ARM.size + ARM.config.size  # D stays with demo/own's OWN
    # one of two tags on a digest: nothing untagged, nothing counted
    assert counted_once(whatif(rule=TagRule(registry_id=registry.id, tags=(("demo/web", "1"),)))) == 0
    # the maintained whole-registry answer carries the same fields, all zero
    whole = registry_whole_impact(registry_id=registry.id)
    assert (whole.shared_manifests, whole.shared_manifest_bytes, whole.kept_bytes) == (0, 0, 0)


def test_foreign_layers_are_counted_by_the_what_if_and_left_out_of_stored_bytes(registry):
    foreign = dataclasses.replace(
        layer("windows-base", 900), media_type="application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
    win = image("win", [foreign, A])
    ingest(registry, "demo/win", {"1": win})
    summary = dedup_summary(scope=Scope(registry_id=registry.id, namespace="demo"))
    assert summary.foreign_bytes == foreign.size
    impact = whatif(rule=TagRule(registry_id=registry.id, namespace="demo"))
    assert counted_once(impact) == summary.stored_bytes + summary.foreign_bytes
    whole = whatif_bounded(rule=TagRule(registry_id=registry.id))
    assert counted_once(whole) == summary.stored_bytes + summary.foreign_bytes


def test_a_namespace_over_two_registries_counts_each_registry_copy(registry):
    other = Registry.objects.create(name="other", url="http://127.0.0.1:5001")
    ingest(registry, "demo/web", {"1": MID})
    ingest(other, "demo/web", {"1": MID})
    impact = whatif(rule=TagRule(namespace="demo"))
    # each registry frees its copy; the summary of both stores the digests once
    assert counted_once(impact) == impact.freed_bytes == 2 * sum(parts(MID).values())
    assert stored(namespace="demo") == sum(parts(MID).values())
    assert counted_once(impact) == stored(registry_id=registry.id, namespace="demo") + stored(
        registry_id=other.id, namespace="demo"
    )


def test_every_path_reports_what_stays_alike(mixed):
    """The API, a job, the page and `manage.py whatif` answer the same figures, with the summary's."""
    registry = mixed
    expected = whatif(rule=TagRule(registry_id=registry.id, namespace="demo"))
    fields = ("freed_bytes", "kept_bytes", "shared_manifests", "shared_manifest_bytes", "shared_blobs")
    client = APIClient()
    user = get_user_model().objects.create_user("reader")
    client.force_authenticate(user)
    query = {"registry": registry.id, "namespace": "demo"}
    answer = client.get("/api/v1/whatif/", query).json()
    summary = client.get("/api/v1/summary/", query).json()
    assert {f: answer[f] for f in fields} == {f: getattr(expected, f) for f in fields}
    assert answer["freed_bytes"] + answer["kept_bytes"] == summary["stored_bytes"]
    assert {(m["repository"], m["freed"]) for m in answer["manifests"]} >= {
        ("demo/web", False),
        ("demo/own", True),
    }

    created = client.post("/api/v1/whatif/jobs/", query, format="json")
    assert created.status_code == 202, created.content
    whatif_job_run(job_id=created.json()["id"])  # as the worker would (the test sends no task)
    result = client.get(created["Location"]).json()["result"]
    assert {f: result[f] for f in fields} == {f: answer[f] for f in fields}

    out = io.StringIO()
    call_command("whatif", "--registry", "local", "--namespace", "demo", "--json", stdout=out)
    assert {f: json.loads(out.getvalue())[f] for f in fields} == {f: answer[f] for f in fields}
    out = io.StringIO()
    call_command("whatif", "--registry", "local", "--namespace", "demo", stdout=out)
    text = out.getvalue()
    assert f"kept_bytes {expected.kept_bytes}  (stays: 2 manifests ({MID.size + AMD.size} B)" in text
    assert f"stays demo/web@{MID.digest}" in text and f"freed demo/own@{OWN.digest}" in text

    page = Client()
    page.force_login(user)
    html = page.get("/ui/whatif/", query).content.decode()
    assert (
        f"stays: {expected.shared_manifests} manifests ({human_size(expected.shared_manifest_bytes)}) "
        f"kept by other repositories,\n    {expected.shared_blobs} blobs "
        f"({human_size(expected.shared_bytes)}) referenced by kept manifests"
    ) in html
    assert html.count("stays: another repository keeps it") == sum(not m.freed for m in expected.manifests)
