"""The lists answered from maintained data equal a computation over the holdings, across registries,
after incremental ingest, tag moves and tag removal, after a rebuild and after deleting a registry: the
summary of every registry, content in several registries, missed savings, the layer ranking, stale bases
(both materialized per registry) and image counts.

The oracles are the original full queries (`*_computed`) or plain SQL written here."""

import dataclasses

import pytest
from django.db import connection

from analytics.ingest.answers import answers_refresh
from analytics.ingest.chains import chains_refresh
from analytics.ingest.rebuild import figures_rebuild
from analytics.ingest.snapshot import snapshot_ingest
from analytics.models import (
    Blob,
    BlobRegistries,
    ManifestRegistries,
    Registry,
    RegistryAnswer,
    RegistryMissedSaving,
    RegistryStaleBase,
    Repository,
    RepositoryManifest,
    Scan,
    ScopeFigures,
)
from analytics.scans.state import parent_finish_if_done
from analytics.selectors.answers import MISSED_SAVINGS, STALE_BASES, answers_stale
from analytics.selectors.content import (
    CrossRegistryContent,
    cross_registry_content,
    cross_registry_content_computed,
    missed_savings,
    missed_savings_found,
)
from analytics.selectors.images import images
from analytics.selectors.layers import layer_ranking_maintained
from analytics.selectors.lineage import image_stale_base, stale_bases, stale_bases_computed
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary, dedup_summary_computed, images_count_maintained
from harness.records import image, index, layer, snapshot

BASE = [layer("base-1", 28_000), layer("base-2", 2000)]
BASE_IMG = image("base", BASE)
BASE_NEW = image("base-new", [layer("base-1b", 27_000), layer("base-2", 2000)])
WEB1 = image("web1", [*BASE, layer("web1", 300)])
WEB2 = image("web2", [*BASE, layer("web2", 310)])
API = image("api", [*BASE, layer("api", 400)])
ARM = image("api-arm", [layer("arm-base", 900), layer("api", 400)], arch="arm64")
MULTI = index("api-multi", [API, ARM])
# the same content as web1's top layer under another digest: a missed saving
WEB1_COPY = dataclasses.replace(layer("web1-zstd", 280), diff_id=layer("web1", 300).diff_id)
OTHER = image("other", [*BASE, WEB1_COPY])


def _ranking_expected(registry_ids):
    """(registry, digest, images, repositories, saved) per layer of image holdings, in the list's order."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT r.registry_id, b.digest, count(DISTINCT rm.id), count(DISTINCT rm.repository_id),
                   b.size * (count(DISTINCT rm.id) - 1), b.id
               FROM analytics_repositorymanifest rm
               JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = ANY(%s)
               JOIN analytics_manifest m ON m.id = rm.manifest_id AND m.kind = 'image'
               JOIN analytics_manifestlayer ml ON ml.manifest_id = m.id
               JOIN analytics_blob b ON b.id = ml.blob_id
               WHERE rm.present GROUP BY r.registry_id, b.id
               ORDER BY 3 DESC, 5 DESC, b.id, r.registry_id""",
            [registry_ids],
        )
        return [row[:5] for row in cursor.fetchall()]


def _ranking_walked(registry_ids):
    rows, after = [], None
    while True:
        page, after = layer_ranking_maintained(registry_ids=registry_ids, after=after, limit=1)
        rows += [(b.registry_id, b.digest, b.images, b.repositories, b.saved_bytes) for b in page]
        if after is None:
            return rows


def _registries_expected():
    with connection.cursor() as cursor:
        cursor.execute(
            """WITH held AS (
                   SELECT DISTINCT r.registry_id, rm.manifest_id FROM analytics_repositorymanifest rm
                   JOIN analytics_repository r ON r.id = rm.repository_id WHERE rm.present
               ),
               refs AS (
                   SELECT DISTINCT h.registry_id, ml.blob_id, TRUE AS is_layer FROM held h
                   JOIN analytics_manifestlayer ml ON ml.manifest_id = h.manifest_id
                   UNION SELECT DISTINCT h.registry_id, m.config_id, FALSE FROM held h
                   JOIN analytics_manifest m ON m.id = h.manifest_id WHERE m.config_id IS NOT NULL
               )
               SELECT blob_id, count(DISTINCT registry_id),
                   count(DISTINCT registry_id) FILTER (WHERE is_layer)
               FROM refs GROUP BY 1 ORDER BY 1"""
        )
        blobs = cursor.fetchall()
        cursor.execute(
            """SELECT rm.manifest_id, count(DISTINCT r.registry_id) FROM analytics_repositorymanifest rm
               JOIN analytics_repository r ON r.id = rm.repository_id WHERE rm.present
               GROUP BY 1 ORDER BY 1"""
        )
        return blobs, cursor.fetchall()


def _assert_lists_exact(registries):
    chains_refresh()  # as after a scan (analytics.ingest.trends)
    ids = [r.id for r in registries]
    blobs = BlobRegistries.objects.order_by("blob_id")
    maintained = (
        list(blobs.values_list("blob_id", "registries", "layer_registries")),
        list(ManifestRegistries.objects.order_by("manifest_id").values_list("manifest_id", "registries")),
    )
    assert maintained == _registries_expected()
    assert dedup_summary(scope=Scope()) == dedup_summary_computed(scope=Scope())
    assert cross_registry_content(limit=1000) == cross_registry_content_computed(limit=1000)
    assert cross_registry_content(limit=2, offset=1) == cross_registry_content_computed(limit=2, offset=1)
    # the materialized answers, as a read or a scan's end leaves them
    for registry in registries:
        answers_refresh(registry_id=registry.id)
    # current, but for a registry never ingested (no version: always computed, from nothing)
    unscanned = [i for i in ids if not ScopeFigures.objects.filter(registry_id=i, repository=None).exists()]
    for answer in (STALE_BASES, MISSED_SAVINGS):
        assert answers_stale(registry_ids=ids, answer=answer) == unscanned
    # every registry's missed savings against the query over the holdings (a tag glob keeps them all)
    everyone = Scope(tag_glob="*")
    assert missed_savings(scope=Scope(), limit=1000) == missed_savings(scope=everyone, limit=1000)
    assert missed_savings(scope=Scope(), limit=2, offset=1) == missed_savings(
        scope=everyone, limit=2, offset=1
    )
    assert _ranking_walked(ids) == _ranking_expected(ids)
    for registry in registries:
        assert _ranking_walked([registry.id]) == _ranking_expected([registry.id])
        one = Scope(registry_id=registry.id)
        assert missed_savings(scope=one, limit=1000) == missed_savings_found(scope=one, limit=None)
        assert stale_bases(registry_id=registry.id) == stale_bases_computed(registry_id=registry.id)
        assert (
            stale_bases(registry_id=registry.id, limit=1, offset=1)
            == stale_bases_computed(registry_id=registry.id)[1:2]
        )
        capped = [
            dataclasses.replace(r, affected=r.affected[:1])
            for r in stale_bases_computed(registry_id=registry.id)
        ]
        assert stale_bases(registry_id=registry.id, affected_limit=1) == capped
        stale_of = {}
        for row in stale_bases_computed(registry_id=registry.id):
            for affected in row.affected:
                stale_of.setdefault(affected[0], []).append((row.repository, row.tag, row.old_digest))
        for holding in RepositoryManifest.objects.filter(repository__registry=registry, present=True):
            got = [(s.repository, s.tag, s.old_digest) for s in image_stale_base(holding=holding)]
            assert sorted(got) == sorted(stale_of.get(holding.id, [])), holding
        # None before the registry's first ingest: the list counts then
        scanned = ScopeFigures.objects.filter(registry=registry, repository=None).exists()
        count = images_count_maintained(scope=Scope(registry_id=registry.id))
        assert count == (images(scope=Scope(registry_id=registry.id)).count() if scanned else None)
    assert images_count_maintained(scope=Scope()) == images(scope=Scope()).count()


@pytest.fixture
def registries(db):
    return [
        Registry.objects.create(name="one", url="http://127.0.0.1:5000"),
        Registry.objects.create(name="two", url="http://127.0.0.1:5001"),
    ]


def test_lists_follow_ingest_moves_removal_and_rebuild(registries):
    one, two = registries
    base1 = Repository.objects.create(registry=one, name="library/base")
    web1 = Repository.objects.create(registry=one, name="apps/web")
    base2 = Repository.objects.create(registry=two, name="library/base")
    api2 = Repository.objects.create(registry=two, name="apps/api")
    snapshot_ingest(repository=base1, snapshot=snapshot("library/base", {"1": BASE_IMG}))
    snapshot_ingest(repository=web1, snapshot=snapshot("apps/web", {"1": WEB1, "2": WEB2, "o": OTHER}))
    _assert_lists_exact(registries)

    snapshot_ingest(repository=base2, snapshot=snapshot("library/base", {"1": BASE_IMG}))
    api_tags = {"1": MULTI, "web": WEB1}
    snapshot_ingest(repository=api2, snapshot=snapshot("apps/api", api_tags, extra=[API, ARM]))
    _assert_lists_exact(registries)
    assert BlobRegistries.objects.filter(registries=2).exists()
    assert cross_registry_content(limit=1000)

    # the base tag moves in registry one: its images now sit on a stale base
    snapshot_ingest(repository=base1, snapshot=snapshot("library/base", {"1": BASE_NEW}))
    _assert_lists_exact(registries)
    assert stale_bases(registry_id=one.id)

    # tags removed: content leaves registry two, then registry one's web images go
    snapshot_ingest(repository=api2, snapshot=snapshot("apps/api", {"1": MULTI}, extra=[API, ARM]))
    _assert_lists_exact(registries)
    snapshot_ingest(repository=web1, snapshot=snapshot("apps/web", {"2": WEB2}))
    _assert_lists_exact(registries)

    before = (
        list(BlobRegistries.objects.order_by("blob_id").values_list()),
        list(ManifestRegistries.objects.order_by("manifest_id").values_list()),
    )
    for registry in registries:
        figures_rebuild(registry_id=registry.id)
    after = (
        list(BlobRegistries.objects.order_by("blob_id").values_list()),
        list(ManifestRegistries.objects.order_by("manifest_id").values_list()),
    )
    assert after == before
    _assert_lists_exact(registries)

    snapshot_ingest(repository=base2, snapshot=snapshot("library/base", {}))
    snapshot_ingest(repository=api2, snapshot=snapshot("apps/api", {}))
    _assert_lists_exact(registries)
    assert not BlobRegistries.objects.filter(registries__gt=1).exists()

    # a registry deleted takes its materialized rows with it; the other's stay exact
    two.delete()
    _assert_lists_exact([one])
    for model in (RegistryAnswer, RegistryStaleBase, RegistryMissedSaving):
        assert not model.objects.filter(registry_id=two.id).exists()


def _fire_deferred_triggers():
    """The diff-id epoch moves at commit (a deferred trigger); a test's transaction never commits."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def test_materialized_answers_recompute_after_each_write(registries):
    one, two = registries
    base = Repository.objects.create(registry=one, name="library/base")
    web = Repository.objects.create(registry=one, name="apps/web")
    snapshot_ingest(repository=base, snapshot=snapshot("library/base", {"1": BASE_IMG}))
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"1": WEB1, "2": WEB2, "o": OTHER}))
    chains_refresh()
    assert answers_refresh(registry_id=one.id) == [STALE_BASES, MISSED_SAVINGS]
    assert answers_refresh(registry_id=one.id) == []  # current: a probe, nothing recomputed
    assert not stale_bases(registry_id=one.id)
    assert [m.diff_id for m in missed_savings(scope=Scope(registry_id=one.id))] == [WEB1_COPY.diff_id]

    # a tag move after the refresh: the next read recomputes (and until then computes, exactly)
    snapshot_ingest(repository=base, snapshot=snapshot("library/base", {"1": BASE_NEW}))
    chains_refresh()
    assert answers_stale(registry_ids=[one.id], answer=STALE_BASES) == [one.id]
    assert stale_bases(registry_id=one.id) == stale_bases_computed(registry_id=one.id) != []
    assert answers_refresh(registry_id=one.id) == [STALE_BASES, MISSED_SAVINGS]
    assert RegistryStaleBase.objects.filter(registry=one).count() == 1
    assert stale_bases(registry_id=one.id) == stale_bases_computed(registry_id=one.id)

    # chain ids written later (a manifest ingested without them) move the version of its holders
    web2 = Repository.objects.create(registry=two, name="apps/web")
    solo = image("solo", [*BASE, layer("solo", 50)])
    snapshot_ingest(repository=web2, snapshot=snapshot("apps/web", {"1": solo}))
    answers_refresh(registry_id=two.id)
    chains_refresh()
    assert answers_stale(registry_ids=[one.id, two.id], answer=STALE_BASES) == [two.id]

    # a diff_id set on a held blob (as a deep scan does) moves the epoch: missed savings only
    Blob.objects.filter(digest=layer("web2", 310).digest).update(diff_id=WEB1_COPY.diff_id)
    _fire_deferred_triggers()
    assert answers_stale(registry_ids=[one.id], answer=MISSED_SAVINGS) == [one.id]
    assert answers_stale(registry_ids=[one.id], answer=STALE_BASES) == []
    assert answers_refresh(registry_id=one.id) == [MISSED_SAVINGS]
    [row] = missed_savings(scope=Scope(registry_id=one.id))
    assert row.copies == 3
    assert missed_savings(scope=Scope(registry_id=one.id)) == missed_savings_found(
        scope=Scope(registry_id=one.id)
    )


def test_registry_scan_end_refreshes_the_answers(registries, django_capture_on_commit_callbacks):
    one, _ = registries
    base = Repository.objects.create(registry=one, name="library/base")
    web = Repository.objects.create(registry=one, name="apps/web")
    parent = Scan.objects.create(
        kind="registry", registry=one, status=Scan.Status.RUNNING, repositories_total=2, repositories_done=2
    )
    snapshot_ingest(repository=base, snapshot=snapshot("library/base", {"1": BASE_IMG}))
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"1": WEB1, "o": OTHER}))
    snapshot_ingest(repository=base, snapshot=snapshot("library/base", {"1": BASE_NEW}))
    chains_refresh()
    assert answers_stale(registry_ids=[one.id], answer=STALE_BASES) == [one.id]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        parent_finish_if_done(parent.id)
    # the answers once, after the commit (the saved policies' evaluation is the other callback)
    assert [c.func.__name__ for c in callbacks].count("answers_refresh") == 1
    for answer in (STALE_BASES, MISSED_SAVINGS):
        assert answers_stale(registry_ids=[one.id], answer=answer) == []
    assert RegistryStaleBase.objects.filter(registry=one).count() == 1
    assert RegistryMissedSaving.objects.filter(registry=one).count() == 1
    assert stale_bases(registry_id=one.id) == stale_bases_computed(registry_id=one.id)


# An image whose config is also one of its layers, and which lists another layer twice: a registry stores
# each of its blobs once, so each counts once per registry holding it, however the manifest lists it.
TWICE = layer("twice", 3000)
OWN_CONFIG = layer("own-config", 2000)
EDGE = dataclasses.replace(image("edge", [TWICE, TWICE, OWN_CONFIG]), config=OWN_CONFIG)
GONE = image("gone", [layer("gone", 1000)], config_size=1001, manifest_size=400)


def test_cross_registry_content_counts_a_blob_once_per_registry_whatever_its_listings(registries):
    one, two = registries
    for registry in registries:
        edge = Repository.objects.create(registry=registry, name="apps/edge")
        snapshot_ingest(repository=edge, snapshot=snapshot("apps/edge", {"1": EDGE}))
        old = Repository.objects.create(registry=registry, name="apps/old")
        snapshot_ingest(repository=old, snapshot=snapshot("apps/old", {"1": GONE}))
    # registry two's apps/old:1 moves on: GONE stays there untagged
    snapshot_ingest(repository=old, snapshot=snapshot("apps/old", {"1": image("new", [layer("new", 10)])}))

    def row(kind: str, digest: str, size: int) -> CrossRegistryContent:
        return CrossRegistryContent(kind, digest, size, 2, 2 * size, ("one", "two"))

    tagged = [
        row("blob", TWICE.digest, 3000),
        row("blob", OWN_CONFIG.digest, 2000),
        row("manifest", EDGE.digest, 500),
    ]
    with_untagged = [
        *tagged[:2],
        row("blob", GONE.config.digest, 1001),
        row("blob", GONE.layers[0].digest, 1000),
        tagged[2],
        row("manifest", GONE.digest, 400),
    ]
    assert cross_registry_content_computed(limit=1000) == tagged
    assert cross_registry_content(limit=1000) == tagged
    assert cross_registry_content_computed(include_untagged=True, limit=1000) == with_untagged
    assert cross_registry_content(include_untagged=True, limit=2, offset=2) == with_untagged[2:4]
