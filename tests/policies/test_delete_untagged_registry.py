"""The 2.8 collector's trap on a real registry, in the shapes that decide it: a tagged index whose child is
also tagged in another repository (kept: that tag marks it and its blobs), and a tagged index listing
another index (its grandchildren's manifests are lost too, not only their blobs), and a child listing its
config as a layer too and a layer twice (one file each in the store, counted once). A policy removes one
unrelated image; the plain `garbage-collect` frees what the preview's freed_bytes says, and
`garbage-collect --delete-untagged` on the same storage what its delete_untagged.freed_bytes says."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from analytics.models import Registry
from analytics.policies.preview import policy_parse, policy_preview
from analytics.scans.start import scan_start_inline
from harness.pusher import (
    OCI_INDEX,
    OCI_MANIFEST,
    Pusher,
    blob_bytes,
    digest_of,
    image_config,
    image_manifest,
    make_base,
)
from harness.registry import RegistryServer, blobstore_digests
from harness.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def scratch():
    server = RegistryServer().start()
    yield server
    server.cleanup()


def put_index(push: Pusher, repository: str, reference: str, entries: list[tuple[str, bytes, str]]) -> bytes:
    """An OCI index over (digest, raw, media type) entries, put by tag or digest; its raw bytes."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": t, "digest": d, "size": len(raw)} for d, raw, t in entries],
    }
    raw = json.dumps(doc, sort_keys=True).encode()
    ref = reference or digest_of(raw)
    reply = push.http.put(
        f"/v2/{repository}/manifests/{ref}", content=raw, headers={"Content-Type": OCI_INDEX}
    )
    assert reply.status_code == 201, reply.text
    return raw


def collect_after_keep_one(scratch: RegistryServer) -> tuple[dict, dict[str, int], dict[str, int]]:
    """Scan, preview keeping one tag per repository, delete what it removes, run both collectors: the
    preview, the blob store after `garbage-collect` and after `--delete-untagged`."""
    scan_start_inline(target=scratch.url)
    registry = Registry.objects.get(url=scratch.url)
    preview = policy_preview(
        policy=policy_parse(json.dumps({"name_regex": ".*", "keep_n": 1})),
        registry_id=registry.id,
        now=timezone.now() + timedelta(days=1),
    )
    assert [(r, t) for r, t, _ in preview.removed_tags] == [("tools/old", "1")]
    before = blobstore_digests(scratch.root)
    with httpx.Client(base_url=scratch.url, timeout=10) as http:
        for repository, _, digest in preview.removed_tags:
            assert http.delete(f"/v2/{repository}/manifests/{digest}").status_code == 202
    scratch.stop()
    gc, config = require_tool("docker-registry"), str(scratch.workdir / "config.yml")
    subprocess.run([gc, "garbage-collect", config], check=True, capture_output=True)
    after = blobstore_digests(scratch.root)
    assert sum(before.values()) - sum(after.values()) == preview.impact.freed_bytes > 0
    subprocess.run([gc, "garbage-collect", "--delete-untagged", config], check=True, capture_output=True)
    trapped = blobstore_digests(scratch.root)
    assert sum(before.values()) - sum(trapped.values()) == preview.delete_untagged["freed_bytes"]
    return preview.delete_untagged, after, trapped


def test_the_trap_spares_a_child_tagged_elsewhere_and_takes_a_nested_indexs_grandchildren(scratch):
    base = make_base("os", layers=1, size=4000)
    with Pusher(scratch.url) as push:
        # apps/multi:1, a tagged index; its amd64 child also tagged as apps/solo:1
        _, _, children = push.multi_platform("apps/multi", "1", seed="multi", base=base)
        solo = push.platform_image("apps/solo", seed="multi-amd64", base=base, arch="amd64")
        assert solo.digest == children[0].digest
        push.put_manifest("apps/solo", "1", solo.manifest)
        # apps/nested:1 -> an inner index (untagged) -> two platform images
        archs = ("amd64", "arm64")
        grand = [push.platform_image("apps/nested", seed=f"nested-{a}", base=base, arch=a) for a in archs]
        inner = put_index(push, "apps/nested", "", [(g.digest, g.manifest, OCI_MANIFEST) for g in grand])
        put_index(push, "apps/nested", "1", [(digest_of(inner), inner, OCI_INDEX)])
        # what the policy removes: an unrelated image
        push.image("tools/old", "1", seed="old", base=make_base("old", layers=1, size=2000))
        push.image("tools/old", "2", seed="new", base=make_base("old", layers=1, size=2000))
    trap, after, trapped = collect_after_keep_one(scratch)

    # independently: the arm64 child's own layer and config go (the amd64 one is tagged in apps/solo),
    # the inner index is kept (the tagged index lists it) but its children's manifests and blobs go
    expected = {children[1].config_digest, children[1].layers[-1][0]}
    expected |= {d for g in grand for d in (g.digest, g.config_digest, g.layers[-1][0])}
    assert set(after) - set(trapped) == expected
    assert trap["trap_bytes"] == sum(after[d] for d in expected)
    assert trap["indexes_kept"] == 2


def test_a_childs_config_listed_as_a_layer_and_a_layer_listed_twice_are_one_blob_each(scratch):
    own = blob_bytes("layer:edge", 1500)
    config = image_config(seed="edge", layers=[own, own])
    child = image_manifest(config=config, layers=[own, own, config])
    with Pusher(scratch.url) as push:
        for data in (own, config):
            push.upload("apps/edge", data)
        push.put_manifest("apps/edge", digest_of(child), child)
        put_index(push, "apps/edge", "1", [(digest_of(child), child, OCI_MANIFEST)])
        push.image("tools/old", "1", seed="old", base=make_base("old", layers=1, size=2000))
        push.image("tools/old", "2", seed="new", base=make_base("old", layers=1, size=2000))
    trap, after, trapped = collect_after_keep_one(scratch)
    # independently: the store holds one file per digest; the child's two blobs go, its manifest stays
    expected = {digest_of(own): len(own), digest_of(config): len(config)}
    assert {d: after[d] for d in set(after) - set(trapped)} == expected
    assert (trap["blobs"], trap["manifests"], trap["indexes_kept"]) == (2, 0, 1)
    assert trap["trap_bytes"] == len(own) + len(config)
