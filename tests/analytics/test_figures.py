"""Maintained figures (`analytics.figures`) equal a from-scratch recomputation after every change.

The oracle is written here in plain SQL over the holdings (and `dedup_summary_computed`, the
original report query), never through the delta code under test.
"""

import dataclasses

import pytest
from django.db import connection

from analytics.figures import figures_rebuild
from analytics.ingest import snapshot_ingest
from analytics.models import (
    Registry,
    RegistryBlob,
    RegistryManifestRef,
    Repository,
    RepositoryBlob,
    ScopeFigures,
)
from analytics.reports import Scope, dedup_summary, dedup_summary_computed
from tests.analytics.records import image, index, layer, snapshot
from workers.registry.records import KIND_ARTIFACT

BASE = [layer("base-1", 28_000_000), layer("base-2", 2000)]
WEB1 = image("web1", [*BASE, layer("web1", 300)])
WEB2 = image("web2", [*BASE, layer("web2", 310)])
API = image("api", [*BASE, layer("api", 400)])
ARM = image("api-arm", [layer("arm-base", 900), layer("api", 400)], arch="arm64")
MULTI = index("api-multi", [API, ARM])
SIG = dataclasses.replace(image("sig", [layer("sig", 50)]), kind=KIND_ARTIFACT)
DUP = image("dup", [BASE[0], BASE[0], layer("dup", 7)])  # one layer listed twice


def _expected_blob_counts(registry_id):
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH held AS (
                SELECT rm.repository_id, m.id, m.kind, m.config_id FROM analytics_repositorymanifest rm
                JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
                JOIN analytics_manifest m ON m.id = rm.manifest_id WHERE rm.present
            ),
            refs AS (
                SELECT h.repository_id, h.id, h.kind, ml.blob_id, TRUE AS is_layer
                FROM held h JOIN analytics_manifestlayer ml ON ml.manifest_id = h.id
                UNION SELECT h.repository_id, h.id, h.kind, h.config_id, FALSE FROM held h
                WHERE h.config_id IS NOT NULL
            )
            SELECT blob_id, count(DISTINCT (repository_id, id)),
                count(DISTINCT (repository_id, id)) FILTER (WHERE is_layer),
                count(DISTINCT (repository_id, id)) FILTER (WHERE is_layer AND kind = 'image'),
                count(DISTINCT repository_id) FILTER (WHERE is_layer AND kind = 'image')
            FROM refs GROUP BY blob_id ORDER BY blob_id
            """,
            [registry_id],
        )
        return [row for row in cursor.fetchall() if row[1] > 0]


def _expected_repository_blobs(registry_id):
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT rm.repository_id, ml.blob_id, count(DISTINCT rm.manifest_id)
               FROM analytics_repositorymanifest rm
               JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
               JOIN analytics_manifest m ON m.id = rm.manifest_id AND m.kind = 'image'
               JOIN analytics_manifestlayer ml ON ml.manifest_id = m.id
               WHERE rm.present GROUP BY 1, 2 ORDER BY 1, 2""",
            [registry_id],
        )
        return cursor.fetchall()


def _maintained(registry_id):
    blobs = list(
        RegistryBlob.objects.filter(registry_id=registry_id)
        .order_by("blob_id")
        .values_list("blob_id", "refs", "layer_refs", "images", "repositories")
    )
    repo_blobs = list(
        RepositoryBlob.objects.filter(repository__registry_id=registry_id)
        .order_by("repository_id", "blob_id")
        .values_list("repository_id", "blob_id", "images")
    )
    manifests = dict(
        RegistryManifestRef.objects.filter(registry_id=registry_id).values_list("manifest_id", "refs")
    )
    return blobs, repo_blobs, manifests


def _assert_consistent(registry):
    blobs, repo_blobs, manifests = _maintained(registry.id)
    assert blobs == _expected_blob_counts(registry.id)
    assert repo_blobs == _expected_repository_blobs(registry.id)
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT rm.manifest_id, count(*) FROM analytics_repositorymanifest rm
               JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
               WHERE rm.present GROUP BY 1""",
            [registry.id],
        )
        assert manifests == dict(cursor.fetchall())
    scopes = [Scope(registry_id=registry.id)] + [
        Scope(repository_id=r.id)
        for r in Repository.objects.filter(registry=registry)
        if ScopeFigures.objects.filter(repository=r).exists()
    ]
    for scope in scopes:
        assert dedup_summary(scope=scope) == dedup_summary_computed(scope=scope), scope


@pytest.fixture
def registry(db):
    return Registry.objects.create(name="local", url="http://127.0.0.1:5000")


def test_maintained_figures_follow_ingest_rescans_and_tag_moves(registry):
    web = Repository.objects.create(registry=registry, name="apps/web")
    api = Repository.objects.create(registry=registry, name="apps/api")
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"1": WEB1, "latest": WEB1}))
    _assert_consistent(registry)
    assert RegistryBlob.objects.get(registry=registry, blob__size=28_000_000).images == 1

    snapshot_ingest(
        repository=api, snapshot=snapshot("apps/api", {"1": MULTI, "dup": DUP, "sig": SIG}, extra=[API, ARM])
    )
    _assert_consistent(registry)
    hot = RegistryBlob.objects.get(registry=registry, blob__size=28_000_000)
    assert (hot.images, hot.repositories) == (3, 2)  # web1, api (child of the index), dup

    # rescan unchanged: nothing moves
    before = _maintained(registry.id), list(ScopeFigures.objects.order_by("id").values())
    snapshot_ingest(
        repository=api, snapshot=snapshot("apps/api", {"1": MULTI, "dup": DUP, "sig": SIG}, extra=[API, ARM])
    )
    assert (_maintained(registry.id), list(ScopeFigures.objects.order_by("id").values())) == before

    # a tag moves, another appears, one vanishes
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"1": WEB1, "latest": WEB2, "api": API}))
    _assert_consistent(registry)
    snapshot_ingest(repository=api, snapshot=snapshot("apps/api", {"dup": DUP}))
    _assert_consistent(registry)
    assert not RegistryBlob.objects.filter(registry=registry, blob__size=900).exists()  # arm-base freed

    # everything untagged: the registry holds nothing
    snapshot_ingest(repository=api, snapshot=snapshot("apps/api", {}))
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {}))
    _assert_consistent(registry)
    row = ScopeFigures.objects.get(registry=registry, repository=None)
    assert (row.images, row.repositories, row.stored_bytes, row.logical_bytes) == (0, 0, 0, 0)


def test_rebuild_equals_maintained(registry):
    web = Repository.objects.create(registry=registry, name="apps/web")
    api = Repository.objects.create(registry=registry, name="apps/api")
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"1": WEB1, "2": WEB2}))
    snapshot_ingest(
        repository=api, snapshot=snapshot("apps/api", {"1": MULTI, "dup": DUP, "sig": SIG}, extra=[API, ARM])
    )
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"2": WEB2, "api": API}))
    maintained = (
        _maintained(registry.id),
        list(
            ScopeFigures.objects.order_by("registry_id", "repository_id").values(
                "repository_id", "images", "logical_bytes", "stored_bytes", "distinct_layers", "repositories"
            )
        ),
    )
    figures_rebuild(registry_id=registry.id)
    rebuilt = (
        _maintained(registry.id),
        list(
            ScopeFigures.objects.order_by("registry_id", "repository_id").values(
                "repository_id", "images", "logical_bytes", "stored_bytes", "distinct_layers", "repositories"
            )
        ),
    )
    assert rebuilt == maintained
    _assert_consistent(registry)
