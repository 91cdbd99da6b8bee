import importlib
import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from analytics.ingest.snapshot import snapshot_ingest
from analytics.models import (
    Blob,
    HistoryEntry,
    IndexEntry,
    Manifest,
    ManifestLayer,
    Registry,
    Repository,
    RepositoryManifest,
    Tag,
    TagEvent,
)
from analytics.selectors.images import image_layers, image_sizes, images
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from harness.records import image, index, layer, snapshot
from workers.registry.records import ManifestFailure, RepositorySnapshot

BASE = [layer("base-1", 1000), layer("base-2", 2000)]
WEB = image("web", [*BASE, layer("web", 300)])
API = image("api", [*BASE, layer("api", 400)])


def _row_counts():
    return {
        m.__name__: m.objects.count()
        for m in (Blob, Manifest, ManifestLayer, HistoryEntry, IndexEntry, RepositoryManifest, Tag, TagEvent)
    }


@pytest.fixture
def registry(db):
    return Registry.objects.create(name="local", url="http://127.0.0.1:5000")


def repo(registry, name):
    return Repository.objects.create(registry=registry, name=name)


def test_rescan_of_unchanged_repository_writes_nothing_new(registry):
    web = repo(registry, "apps/web")
    snap = snapshot("apps/web", {"1.0": WEB, "latest": WEB})
    first = snapshot_ingest(repository=web, snapshot=snap)
    before = _row_counts()
    seen_before = dict(Tag.objects.values_list("name", "last_seen"))
    second = snapshot_ingest(repository=web, snapshot=snap)

    assert first.new_manifests == 1 and second.new_manifests == 0
    assert _row_counts() == before
    assert all(seen_before[t.name] < t.last_seen for t in Tag.objects.all())


def test_retag_records_tag_event_and_keeps_old_manifest_as_not_present(registry):
    web = repo(registry, "apps/web")
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"latest": WEB}))
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"latest": API}))

    moves = TagEvent.objects.filter(tag__name="latest").order_by("seen_at", "id")
    assert [(e.old_digest, e.new_digest) for e in moves] == [("", WEB.digest), (WEB.digest, API.digest)]
    present = dict(RepositoryManifest.objects.values_list("manifest__digest", "present"))
    assert present == {WEB.digest: False, API.digest: True}


def test_one_tag_scan_of_a_moved_tag_drops_the_old_image_and_keeps_other_tags(registry):
    web = repo(registry, "apps/web")
    multi = index("multi", [WEB, API])
    snapshot_ingest(
        repository=web, snapshot=snapshot("apps/web", {"live": multi, "old": API}, extra=[WEB, API])
    )
    other = image("other", [layer("other", 5)])
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"live": other}), complete=False)

    present = dict(RepositoryManifest.objects.values_list("manifest__digest", "present"))
    # WEB was reachable only through the index "live" named; API is still tagged "old".
    assert present == {multi.digest: False, WEB.digest: False, API.digest: True, other.digest: True}
    assert Tag.objects.get(name="old").removed_at is None


def test_removed_tag_is_recorded_and_failed_tag_keeps_its_manifest(registry):
    web = repo(registry, "apps/web")
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"a": WEB, "b": API}))
    failure = ManifestFailure(reference="b", kind="DigestMismatchError", message="bad")
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {}, failures=[failure]))

    tags = {t.name: t for t in Tag.objects.all()}
    assert tags["a"].removed_at is not None
    assert tags["b"].removed_at is None and tags["b"].manifest.digest == API.digest
    assert RepositoryManifest.objects.get(manifest__digest=API.digest).present


def test_history_links_each_layer_to_its_created_by(registry):
    web = repo(registry, "apps/web")
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"1": WEB}))
    manifest = Manifest.objects.get(digest=WEB.digest)
    rows = [
        (layer.position, layer.blob.digest, layer.created_by)
        for layer in image_layers(manifest_id=manifest.id)
    ]
    assert rows == [(i, lyr.digest, f"RUN build web step {i}") for i, lyr in enumerate(WEB.layers)]
    assert HistoryEntry.objects.filter(config__digest=WEB.config.digest, empty_layer=True).count() == 1


def test_summary_and_image_sizes_follow_the_definitions(registry):
    arm = image("web-arm", [layer("arm-base", 700), layer("web", 300)], arch="arm64")
    multi = index("web-multi", [WEB, arm])
    snapshot_ingest(
        repository=repo(registry, "apps/web"), snapshot=snapshot("apps/web", {"1": multi}, extra=[WEB, arm])
    )
    snapshot_ingest(repository=repo(registry, "apps/api"), snapshot=snapshot("apps/api", {"1": API}))
    snapshot_ingest(repository=repo(registry, "mirror/web"), snapshot=snapshot("mirror/web", {"1": WEB}))

    def cost(img):
        return img.size + img.config.size + sum(lyr.size for lyr in img.layers)

    held = [WEB, arm, API, WEB]
    logical = sum(cost(i) for i in held) + multi.size
    distinct_blobs = {b.digest: b.size for i in held for b in (i.config, *i.layers)}
    stored = sum(distinct_blobs.values()) + WEB.size + arm.size + API.size + multi.size

    summary = dedup_summary(scope=Scope(registry_id=registry.id))
    assert summary.images == 4 and summary.indexes == 1
    assert summary.distinct_layers == 5  # base-1, base-2, web, api, arm-base
    assert (summary.logical_bytes, summary.stored_bytes) == (logical, stored)
    assert summary.saved_bytes == logical - stored

    ns = dedup_summary(scope=Scope(registry_id=registry.id, namespace="apps"))
    assert ns.images == 3

    holdings = {(h.repository.name, h.manifest.digest): h.id for h in images(scope=Scope())}
    sizes = image_sizes(holding_ids=list(holdings.values()))
    api = sizes[holdings[("apps/api", API.digest)]]
    # api shares the two base layers with web (twice); its own layer, config and manifest are unique.
    assert api.shared_bytes == 3000
    assert api.unique_bytes == 400 + API.config.size + API.size
    assert api.size_bytes == api.shared_bytes + api.unique_bytes == cost(API)
    web_arm = sizes[holdings[("apps/web", arm.digest)]]
    assert web_arm.layers_unique_bytes == 700 and web_arm.layers_shared_bytes == 300


@pytest.mark.django_db(transaction=True)
def test_two_workers_ingesting_shared_layers_at_once_never_fail_or_duplicate():
    registry = Registry.objects.create(name="local", url="http://127.0.0.1:5000")
    shared = [layer(f"shared-{i}", 100 + i) for i in range(50)]
    repos = [Repository.objects.create(registry=registry, name=f"team/app{i}") for i in range(6)]
    snaps = [
        snapshot(
            r.name, {f"v{j}": image(f"{r.name}-{j}", [*shared, layer(f"{r.name}-{j}", 10)]) for j in range(3)}
        )
        for r in repos
    ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(repos))

    def work(r, s):
        try:
            barrier.wait()
            snapshot_ingest(repository=r, snapshot=s)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(r, s)) for r, s in zip(repos, snaps, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Blob.objects.filter(digest__in=[s.digest for s in shared]).count() == 50
    assert Manifest.objects.count() == 18
    assert ManifestLayer.objects.count() == 18 * 51


def test_attestation_child_of_an_index_counts_in_storage_but_not_as_an_image(registry):
    from dataclasses import replace

    from workers.registry.records import Platform

    attestation = replace(
        image("att", [layer("sbom", 50)]),
        platform=Platform(os="unknown", architecture="unknown"),
        kind="artifact",  # the client says so, from the index entry (test_snapshot_artifacts.py)
    )
    multi = index("with-att", [WEB, attestation])
    snapshot_ingest(
        repository=repo(registry, "apps/web"),
        snapshot=snapshot("apps/web", {"1": multi}, extra=[WEB, attestation]),
    )

    summary = dedup_summary(scope=Scope())
    assert summary.images == 1
    assert Manifest.objects.get(digest=attestation.digest).kind == Manifest.Kind.ARTIFACT
    assert summary.stored_bytes == (
        multi.size
        + WEB.size
        + WEB.config.size
        + sum(x.size for x in WEB.layers)
        + attestation.size
        + attestation.config.size
        + 50
    )


def test_registry_scope_image_sizes_read_the_maintained_counts_and_match_the_computation(registry):
    """A plain registry scope reads the maintained counts; a filter that keeps every image (so is
    computed) gives the same figures, and a page image of another registry is still measured within
    the scope asked for."""
    snapshot_ingest(repository=repo(registry, "apps/web"), snapshot=snapshot("apps/web", {"1": WEB}))
    snapshot_ingest(repository=repo(registry, "apps/api"), snapshot=snapshot("apps/api", {"1": API}))
    other = Registry.objects.create(name="other", url="http://127.0.0.1:5001")
    snapshot_ingest(repository=repo(other, "mirror/api"), snapshot=snapshot("mirror/api", {"1": API}))

    plain = Scope(registry_id=registry.id)
    computed = Scope(registry_id=registry.id, last_seen_after=datetime(2000, 1, 1, tzinfo=UTC))
    ids = [h.id for h in images(scope=plain)]
    assert len(ids) == 2
    assert image_sizes(holding_ids=ids, scope=plain) == image_sizes(holding_ids=ids, scope=computed)
    api = image_sizes(holding_ids=ids, scope=plain)[images(scope=plain).get(repository__name="apps/api").id]
    assert api.shared_bytes == 3000  # the base layers, shared with web; not the mirror's copy

    mirror = images(scope=Scope(registry_id=other.id)).get().id
    within_first = image_sizes(holding_ids=[mirror], scope=plain)
    assert within_first == image_sizes(holding_ids=[mirror], scope=computed)
    assert image_sizes(holding_ids=[mirror])[mirror] != within_first.get(mirror)


def _since():
    return {t.name: (t.current_since, t.first_seen, t.last_seen) for t in Tag.objects.all()}


def test_current_since_is_the_first_sight_of_the_tag_at_its_current_manifest(registry):
    web = repo(registry, "apps/web")
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"a": WEB, "b": API}))
    created = _since()
    assert all(since == first for since, first, _ in created.values())

    # a rescan finding the tags where they were, through the full ingest and through the unchanged path
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"a": WEB, "b": API}))
    bare = RepositorySnapshot(
        registry_url=registry.url,
        repository="apps/web",
        tags={"a": WEB.digest, "b": API.digest},
        manifests=(),
    )
    snapshot_ingest(repository=web, snapshot=bare)
    rescanned = _since()
    assert all(rescanned[n][0] == created[n][0] < rescanned[n][2] for n in ("a", "b"))

    # "a" moves; "b", unchanged in the same scan, keeps its time
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"a": API, "b": API}))
    moved = _since()
    assert moved["a"][0] == moved["a"][2] > created["a"][0]
    assert moved["b"][0] == created["b"][0]

    # "b" removed (its time left alone), then back at the same digest: seen there again now
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"a": API}))
    assert _since()["b"][0] == created["b"][0]
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"a": API, "b": API}))
    back = _since()
    assert back["b"][0] == back["b"][2] > created["b"][0]
    assert back["a"][0] == moved["a"][0]
    # what the policies computed per query before: the latest TagEvent to the current digest
    for tag in Tag.objects.select_related("manifest"):
        latest = TagEvent.objects.filter(tag=tag, new_digest=tag.manifest.digest).order_by("-seen_at").first()
        assert tag.current_since == latest.seen_at


def test_current_since_backfill_gives_the_latest_event_to_the_current_digest(registry):
    backfill = importlib.import_module("analytics.migrations.0034_tag_current_since").BACKFILL
    web = repo(registry, "apps/web")
    other = image("other", [layer("other", 5)])
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"a": WEB, "b": API, "c": WEB, "d": WEB}))
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"a": API, "b": API, "c": WEB, "d": WEB}))
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"a": WEB, "b": API, "d": WEB}))  # c gone
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"a": WEB, "b": API, "c": WEB, "e": other}))
    TagEvent.objects.filter(tag__name="e").delete()  # no event to its digest: its first sight
    Tag.objects.filter(name="e").update(first_seen=datetime(2026, 1, 2, tzinfo=UTC))
    maintained = dict(Tag.objects.values_list("name", "current_since"))
    maintained["e"] = datetime(2026, 1, 2, tzinfo=UTC)

    Tag.objects.update(current_since=datetime(2000, 1, 1, tzinfo=UTC))
    with connection.cursor() as cursor:
        cursor.execute(backfill)
        cursor.execute(
            """SELECT t.name, coalesce((SELECT max(e.seen_at) FROM analytics_tagevent e
                   WHERE e.tag_id = t.id AND e.new_digest = m.digest), t.first_seen)
               FROM analytics_tag t JOIN analytics_manifest m ON m.id = t.manifest_id"""
        )
        old = dict(cursor.fetchall())
    assert dict(Tag.objects.values_list("name", "current_since")) == maintained == old
    # a moved back (third scan), b and d as created, c back (fourth scan), e its first sight
    assert len(set(maintained.values())) == 4


def _manifest_blobs(digest: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT b.digest FROM analytics_manifestblob mb
               JOIN analytics_manifest m ON m.id = mb.manifest_id JOIN analytics_blob b ON b.id = mb.blob_id
               WHERE m.digest = %s""",
            [digest],
        )
        digests = [r[0] for r in cursor.fetchall()]
    assert len(digests) == len(set(digests))  # the primary key: each blob once
    return set(digests)


def test_manifest_blobs_list_each_layer_and_config_once_and_the_backfill_agrees(registry):
    import dataclasses

    base_1 = BASE[0]
    repeated = image("repeated", [base_1, layer("own", 10), base_1])  # a layer listed twice
    config_is_layer = dataclasses.replace(image("config-is-layer", [base_1]), config=base_1)
    multi = index("multi", [WEB, API])
    web = repo(registry, "apps/web")
    snapshot_ingest(
        repository=web,
        snapshot=snapshot("apps/web", {"r": repeated, "c": config_is_layer, "m": multi}, extra=[WEB, API]),
    )
    # what each record lists, from the records themselves
    for record in (repeated, config_is_layer, WEB, API):
        assert _manifest_blobs(record.digest) == {x.digest for x in (*record.layers, record.config)}
    assert _manifest_blobs(multi.digest) == set()  # an index lists manifests, not blobs

    backfill = importlib.import_module("analytics.migrations.0035_manifest_blob").BACKFILL
    with connection.cursor() as cursor:
        cursor.execute("SELECT manifest_id, blob_id FROM analytics_manifestblob ORDER BY 1, 2")
        maintained = cursor.fetchall()
        cursor.execute("DELETE FROM analytics_manifestblob")
        cursor.execute(backfill)
        cursor.execute("SELECT manifest_id, blob_id FROM analytics_manifestblob ORDER BY 1, 2")
        assert cursor.fetchall() == maintained
    # repeated: base-1, own, its config; config-is-layer: base-1 alone; WEB and API: four each
    assert len(maintained) == 3 + 1 + 4 + 4
