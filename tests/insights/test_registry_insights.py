"""Insight answers on real registries filled by skopeo, each checked against skopeo inspect and the
blob store on disk: lineage and a moved base tag, a gzip and a zstd copy, and a what-if deletion
verified by deleting through the registry API and running the registry's own garbage collector."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from analytics.models import Registry, RepositoryManifest, SummarySnapshot
from analytics.scans.start import scan_start_inline
from analytics.selectors.content import cross_registry_content, missed_savings
from analytics.selectors.lineage import image_derived, image_lineage, stale_bases
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from analytics.selectors.whatif import TagRule, whatif
from harness.images import manifest_digest, skopeo_inspect_config, skopeo_inspect_raw
from harness.registry import RegistryServer, blobstore_bytes, blobstore_digests
from harness.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def scan(target: str):
    return scan_start_inline(target=target)


def copy(src: str, dst: str, *extra: str) -> None:
    subprocess.run(
        ["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", *extra,
         f"docker://{src}", f"docker://{dst}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def inspect(ref: str) -> tuple[str, dict]:
    raw = skopeo_inspect_raw(ref)
    return manifest_digest(raw), {"raw": raw, **json.loads(raw)}


def parts(doc: dict) -> dict[str, int]:
    """digest -> size of what an image stores: its manifest, its config and its layers."""
    return {
        manifest_digest(doc["raw"]): len(doc["raw"]),
        doc["config"]["digest"]: doc["config"]["size"],
        **{x["digest"]: x["size"] for x in doc["layers"]},
    }


@pytest.fixture
def scratch():
    server = RegistryServer().start()
    yield server
    server.cleanup()


def holding(registry, repository, digest) -> RepositoryManifest:
    return RepositoryManifest.objects.select_related("repository").get(
        repository__registry=registry, repository__name=repository, manifest__digest=digest
    )


def test_lineage_stale_base_missed_savings_and_cross_registry(test_registry, scratch):
    h = scratch.host
    # The same image recompressed with zstd (an OCI manifest: Docker's has no zstd), copied first so
    # skopeo cannot reuse gzip blobs already in the registry for it.
    zstd_args = ("--format", "oci", "--dest-compress-format", "zstd")
    copy(test_registry.ref("apps/web", "1.0"), f"{h}/zstd/web:1", *zstd_args)
    for repo, tag in [("base/os", "1"), ("apps/web", "1.0"), ("apps/api", "1.0")]:
        copy(test_registry.ref(repo, tag), f"{h}/{repo}:{tag}")
    done = scan(scratch.url)
    assert done.status == "succeeded", list(done.errors.values_list("message", flat=True))
    registry = Registry.objects.get(url=scratch.url)
    base_digest, base = inspect(f"{h}/base/os:1")
    web_digest, web = inspect(f"{h}/apps/web:1.0")
    api_digest, api = inspect(f"{h}/apps/api:1.0")
    zstd_digest, zstd = inspect(f"{h}/zstd/web:1")

    # Trend point after the registry scan: the blob store holds exactly what is tagged.
    point = SummarySnapshot.objects.filter(registry=registry, repository=None).latest("taken_at")
    assert point.stored_bytes == blobstore_bytes(scratch.root)

    # Lineage: base/os's layer list is an ordered prefix of web's and api's (checked on skopeo's output).
    assert [x["digest"] for x in web["layers"]][: len(base["layers"])] == [
        x["digest"] for x in base["layers"]
    ]
    chain = image_lineage(holding=holding(registry, "apps/web", web_digest))
    assert [(b.repository, b.digest, b.shared_layers) for b in chain] == [
        ("base/os", base_digest, len(base["layers"]))
    ]
    derived, more = image_derived(holding=holding(registry, "base/os", base_digest))
    assert more is None
    base_list = [x["digest"] for x in base["layers"]]
    candidates = [
        ("apps/web", web_digest, web),
        ("apps/api", api_digest, api),
        ("zstd/web", zstd_digest, zstd),
    ]
    expected_derived = {
        (repo, digest)
        for repo, digest, doc in candidates
        if [x["digest"] for x in doc["layers"]][: len(base_list)] == base_list
        and len(doc["layers"]) > len(base_list)
    }
    assert {(d.repository, d.digest) for d in derived} == expected_derived
    assert ("apps/web", web_digest) in expected_derived

    # Missed savings: one diff_id under a gzip and a zstd digest, one row per recompressed layer.
    diff_ids = skopeo_inspect_config(f"{h}/apps/web:1.0")["rootfs"]["diff_ids"]
    expected = {}
    for diff_id, gz, zs in zip(diff_ids, web["layers"], zstd["layers"], strict=True):
        assert "zstd" in zs["mediaType"] and gz["digest"] != zs["digest"]
        expected[diff_id] = gz["size"] + zs["size"] - min(gz["size"], zs["size"])
    got = {m.diff_id: m.saved_bytes for m in missed_savings(scope=Scope(registry_id=registry.id))}
    assert got == expected

    # The base tag moves to other content; nothing is rebuilt: web and api now sit on a stale base.
    copy(test_registry.ref("oci/tool", "1"), f"{h}/base/os:1")
    scan(f"{h}/base/os")
    new_digest, _ = inspect(f"{h}/base/os:1")
    [row] = stale_bases(registry_id=registry.id)
    assert (row.repository, row.tag, row.old_digest, row.new_digest) == (
        "base/os",
        "1",
        base_digest,
        new_digest,
    )
    assert sorted(d for _, _, d in row.affected) == sorted([web_digest, api_digest])
    assert row.image_bytes == sum(parts(web).values()) + sum(parts(api).values())

    # Across registries: the digests both registries' current tags reach, each stored twice.
    scan(test_registry.url)
    here = {}
    for ref in [f"{h}/base/os:1", f"{h}/apps/web:1.0", f"{h}/apps/api:1.0", f"{h}/zstd/web:1"]:
        here.update(parts(inspect(ref)[1]))
    there = blobstore_digests(test_registry.registry.root)  # all tagged there (checked by the scan tests)
    common = {d: s for d, s in here.items() if d in there}
    rows = cross_registry_content(limit=1000)
    assert {r.digest: r.size for r in rows} == common
    assert all(r.registries == 2 and r.total_bytes == 2 * r.size for r in rows)


def test_whatif_freed_bytes_match_the_registry_garbage_collector(test_registry, scratch):
    h = scratch.host
    for repo, tag in [("base/os", "1"), ("apps/web", "1.0"), ("apps/web", "2.0"), ("apps/api", "1.0")]:
        src = ("apps/api", "1.0") if (repo, tag) == ("apps/web", "2.0") else (repo, tag)
        copy(test_registry.ref(*src), f"{h}/{repo}:{tag}")
    copy(test_registry.ref("oci/tool", "1"), f"{h}/apps/tool:1.0")
    scan(scratch.url)
    registry = Registry.objects.get(url=scratch.url)

    # Rule: every tag matching 1.* in the apps namespace. apps/web:2.0 keeps api's content alive.
    impact = whatif(rule=TagRule(registry_id=registry.id, namespace="apps", tag_glob="1.*"))
    assert sorted((r, t) for _, r, t, _ in impact.deleted_tags) == [
        ("apps/api", "1.0"),
        ("apps/tool", "1.0"),
        ("apps/web", "1.0"),
    ]

    # Every byte the deletion untags is freed or kept: the three images' distinct parts. apps/api's
    # manifest stays (apps/web:2.0 holds it), and with it every blob of it.
    untagged: dict[str, int] = {}
    for _, repository, tag, _ in impact.deleted_tags:
        untagged.update(parts(inspect(f"{h}/{repository}:{tag}")[1]))
    assert impact.freed_bytes + impact.kept_bytes == sum(untagged.values())
    _, api = inspect(f"{h}/apps/api:1.0")
    assert (impact.shared_manifests, impact.shared_manifest_bytes) == (1, len(api["raw"]))
    assert [m.repository for m in impact.manifests if not m.freed] == ["apps/api"]

    # Deleting every tag of a scope: freed + kept is the scope's stored bytes as the summary reports them,
    # and for the whole registry the blob store's data files (nothing kept there).
    for namespace in ("apps", "apps/web", "base"):
        whole = whatif(rule=TagRule(registry_id=registry.id, namespace=namespace))
        stored = dedup_summary(scope=Scope(registry_id=registry.id, namespace=namespace)).stored_bytes
        assert whole.freed_bytes + whole.kept_bytes == stored, namespace
    everything = whatif(rule=TagRule(registry_id=registry.id))
    assert everything.kept_bytes == 0
    assert everything.freed_bytes == dedup_summary(scope=Scope(registry_id=registry.id)).stored_bytes
    assert everything.freed_bytes == blobstore_bytes(scratch.root)

    gc = require_tool("docker-registry")
    config = scratch.workdir / "config.yml"
    before = blobstore_bytes(scratch.root)
    for _, repository, _, digest in impact.deleted_tags:
        request = urllib.request.Request(f"{scratch.url}/v2/{repository}/manifests/{digest}", method="DELETE")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 202
    scratch.stop()  # garbage-collect needs the registry stopped
    subprocess.run([gc, "garbage-collect", "--delete-untagged", str(config)], check=True, capture_output=True)
    after = blobstore_bytes(scratch.root)

    assert impact.freed_bytes == before - after > 0
    assert impact.shared_bytes > 0  # base layers stay: apps/web:2.0 and base/os:1 hold them


def test_api_answers_and_csv_export(test_registry, scratch):
    h = scratch.host
    for repo, tag in [("base/os", "1"), ("apps/web", "1.0")]:
        copy(test_registry.ref(repo, tag), f"{h}/{repo}:{tag}")
    scan(scratch.url)
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("reader"))
    web_digest, web = inspect(f"{h}/apps/web:1.0")
    base_digest, base = inspect(f"{h}/base/os:1")
    web_id = RepositoryManifest.objects.get(
        manifest__digest=web_digest, repository__registry__url=scratch.url
    ).id

    lineage = client.get(f"/api/v1/images/{web_id}/lineage/").json()
    assert lineage["base"]["digest"] == base_digest and lineage["tagged_only"] is True

    partners = client.get(f"/api/v1/images/{web_id}/partners/").json()
    shared = set(parts(web)) & set(parts(base))
    assert [(p["digest"], p["shared_bytes"]) for p in partners] == [
        (base_digest, sum(parts(web)[d] for d in shared))
    ]

    reply = client.post("/api/v1/whatif/", {"registry": h, "tags": ["apps/web:1.0"]}, format="json")
    assert reply.status_code == 200
    only_web = {d: s for d, s in parts(web).items() if d not in parts(base)}
    assert reply.json()["freed_bytes"] == sum(only_web.values())

    summary = client.get("/api/v1/summary/", {"registry": h, "tag_glob": "1.*"}).json()
    assert summary["images"] == 1 and summary["scope"]["tag_glob"] == "1.*"
    assert summary["stored_bytes"] == sum(parts(web).values())

    csv_reply = client.get("/api/v1/trends/", {"registry": h, "format": "csv"})
    assert csv_reply["Content-Type"].startswith("text/csv") and csv_reply.streaming
    lines = b"".join(csv_reply.streaming_content).decode().splitlines()
    assert lines[0].startswith("id,taken_at,scan,registry,repository,images") and len(lines) == 2
    assert lines[1].split(",")[9] == str(blobstore_bytes(scratch.root))
