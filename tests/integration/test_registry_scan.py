"""Scans of a real CNCF registry holding images built by docker build/push and umoci + skopeo."""

from __future__ import annotations

import io
import json
import subprocess
import time

import pytest
from django.core.management import call_command
from django.db import connection

from analytics.models import (
    Blob,
    HistoryEntry,
    Manifest,
    ManifestLayer,
    Registry,
    RepositoryManifest,
    Scan,
    Tag,
    TagEvent,
)
from analytics.scans.start import scan_start, scan_start_inline
from analytics.selectors.images import image_layers, image_sizes, images
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from harness.images import skopeo_inspect_config
from harness.registry import RegistryServer, blobstore_bytes, blobstore_digests
from tests.integration.expected import expected_registry

pytestmark = pytest.mark.integration


def scan_inline(target: str) -> Scan:
    return scan_start_inline(target=target)


def tags_of(built) -> list[tuple[str, str]]:
    return [(i.repository, i.tag) for i in built.images]


def counts():
    models = (Blob, Manifest, ManifestLayer, HistoryEntry, RepositoryManifest, Tag, TagEvent)
    return {m.__name__: m.objects.count() for m in models}


@pytest.mark.django_db
def test_registry_scan_matches_blob_store_and_skopeo(test_registry):
    scan = scan_inline(test_registry.url)
    assert scan.status == Scan.Status.SUCCEEDED, list(scan.errors.values_list("message", flat=True))
    expected = expected_registry(test_registry.host, tags_of(test_registry))
    registry = Registry.objects.get(url=test_registry.url)

    summary = dedup_summary(scope=Scope(registry_id=registry.id))
    # Everything the registry keeps on disk is referenced by a tag here, so the two must agree exactly.
    assert summary.stored_bytes == blobstore_bytes(test_registry.registry.root)
    assert summary.stored_bytes == expected.stored_bytes()
    assert summary.logical_bytes == expected.logical_bytes()
    assert summary.images == len(expected.images)
    assert summary.distinct_layers == expected.distinct_layers()
    assert summary.saved_bytes > 0
    assert scan.tags_count == len(test_registry.images)
    assert (
        scan.repositories_total == scan.repositories_done == len({i.repository for i in test_registry.images})
    )

    held = list(images(scope=Scope(registry_id=registry.id)))
    sizes = image_sizes(holding_ids=[h.id for h in held])
    got = {
        (h.repository.name, h.manifest.digest): (sizes[h.id].shared_bytes, sizes[h.id].unique_bytes)
        for h in held
    }
    assert got == expected.shared_unique()


@pytest.mark.django_db
def test_every_blob_recorded_is_in_the_blob_store_with_its_size(test_registry):
    scan_inline(test_registry.url)
    on_disk = blobstore_digests(test_registry.registry.root)
    recorded = dict(Blob.objects.values_list("digest", "size"))
    recorded.update(dict(Manifest.objects.values_list("digest", "size")))
    assert recorded == on_disk


@pytest.mark.django_db
def test_multi_platform_index_children_are_images_with_their_platform(test_registry):
    scan_inline(test_registry.url)
    index = test_registry.image("multi/app", "1")
    manifest = Manifest.objects.get(digest=index.digest)
    assert manifest.kind == Manifest.Kind.INDEX
    children = {(e.child.os, e.child.architecture) for e in manifest.entries.select_related("child")}
    assert children == {tuple(p.split("/")) for p in index.platforms}
    held = images(scope=Scope(repository_id=RepositoryManifest.objects.get(manifest=manifest).repository_id))
    assert sorted(h.manifest.platform for h in held) == sorted(index.platforms)


@pytest.mark.django_db
def test_layers_carry_the_created_by_of_the_config_history(test_registry):
    scan_inline(test_registry.url)
    for repository, tag in [("apps/web", "1.0"), ("oci/tool", "1")]:
        config = skopeo_inspect_config(test_registry.ref(repository, tag))
        expected = [h.get("created_by", "") for h in config["history"] if not h.get("empty_layer")]
        manifest = Manifest.objects.get(digest=test_registry.image(repository, tag).digest)
        assert [layer.created_by for layer in image_layers(manifest_id=manifest.id)] == expected
        assert HistoryEntry.objects.filter(config=manifest.config).count() == len(config["history"])


@pytest.mark.django_db
def test_rescan_of_unchanged_registry_writes_nothing_but_last_seen(test_registry):
    scan_inline(test_registry.url)
    before, summary = counts(), dedup_summary(scope=Scope())
    last_seen = dict(Tag.objects.values_list("id", "last_seen"))
    second = scan_inline(test_registry.url)
    assert second.new_manifests_count == 0
    assert counts() == before
    assert dedup_summary(scope=Scope()) == summary
    assert all(t.last_seen > last_seen[t.id] for t in Tag.objects.all())


@pytest.fixture
def scratch_registry():
    server = RegistryServer().start()
    yield server
    server.cleanup()


def skopeo_copy(src: str, dst: str) -> None:
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{src}",
            f"docker://{dst}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_tag_moved_in_the_registry_is_recorded_as_a_tag_event(test_registry, scratch_registry):
    web, api = test_registry.image("apps/web", "1.0"), test_registry.image("apps/api", "1.0")
    skopeo_copy(test_registry.ref("apps/web", "1.0"), f"{scratch_registry.host}/team/app:live")
    scan_inline(f"{scratch_registry.host}/team/app")
    skopeo_copy(test_registry.ref("apps/api", "1.0"), f"{scratch_registry.host}/team/app:live")
    scan_inline(f"{scratch_registry.host}/team/app:live")

    tag = Tag.objects.get(name="live", repository__registry__url=scratch_registry.url)
    assert tag.manifest.digest == api.digest
    assert [(e.old_digest, e.new_digest) for e in tag.events.order_by("seen_at", "id")] == [
        ("", web.digest),
        (web.digest, api.digest),
    ]


@pytest.mark.django_db
def test_cli_scan_inline_and_report_json_agree_with_the_blob_store(test_registry):
    out = io.StringIO()
    call_command("scan", test_registry.url, "--inline", "--no-progress", stdout=out)
    out = io.StringIO()
    call_command("report", "--registry", test_registry.host, "--json", stdout=out)
    report = json.loads(out.getvalue())
    six = {"images", "distinct_layers", "logical_bytes", "stored_bytes", "saved_bytes", "dedup_ratio"}
    assert six <= set(report)
    assert report["stored_bytes"] == blobstore_bytes(test_registry.registry.root)
    assert report["saved_bytes"] == report["logical_bytes"] - report["stored_bytes"]


@pytest.mark.django_db(transaction=True)
def test_scan_through_a_real_celery_worker(test_registry, celery_worker):
    scan = scan_start(target=test_registry.url, trigger="api")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        scan.refresh_from_db()
        if scan.is_finished:
            break
        time.sleep(0.3)
    assert scan.status == Scan.Status.SUCCEEDED, celery_worker.log_text()[-3000:]
    assert scan.children.count() == scan.repositories_done == scan.repositories_total > 1
    assert dedup_summary(scope=Scope(registry_id=scan.registry_id)).stored_bytes == blobstore_bytes(
        test_registry.registry.root
    )
    connection.close()
