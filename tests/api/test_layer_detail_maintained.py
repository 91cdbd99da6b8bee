"""One layer and the images holding it, in a plain registry (or every registry), read from the maintained
counts: equal to the computation over the holdings (`layer_ranking`, the scope's `image_sizes` query)
across two registries, an index, a tag removal and a rebuild, and never reading the scope's holdings."""

from __future__ import annotations

import dataclasses

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.api.serializers.content import RankedLayerSerializer
from analytics.ingest.rebuild import figures_rebuild
from analytics.models import Blob, Registry, RepositoryManifest
from analytics.selectors.images import image_sizes
from analytics.selectors.layers import layer_ranking
from analytics.selectors.scope import Scope
from harness import records as f

API = "/api/v1/"
BASE = [f.layer("base-1", 28_000), f.layer("base-2", 2000)]
WEB1 = f.image("web1", [*BASE, f.layer("web1", 300)])
WEB2 = f.image("web2", [*BASE, f.layer("web2", 310)])
API_IMG = f.image("api", [*BASE, f.layer("api", 400)])
ARM = f.image("api-arm", [f.layer("arm-base", 900), f.layer("api", 400)], arch="arm64")
MULTI = f.index("api-multi", [API_IMG, ARM])
WEB1_COPY = dataclasses.replace(f.layer("web1-zstd", 280), diff_id=f.layer("web1", 300).diff_id)
OTHER = f.image("other", [*BASE, WEB1_COPY])


@pytest.fixture
def two(db):
    one = Registry.objects.create(name="one", url="http://127.0.0.1:5000")
    two = Registry.objects.create(name="two", url="http://127.0.0.1:5001")
    f.ingest(one, "library/base", {"1": f.image("base", BASE)})
    f.ingest(one, "apps/web", {"1": WEB1, "2": WEB2, "o": OTHER})
    f.ingest(two, "library/base", {"1": f.image("base", BASE)})
    f.ingest(two, "apps/api", {"1": MULTI, "web": WEB1}, extra=[API_IMG, ARM])
    return one, two


def _scopes(registries):
    return [Scope(), *(Scope(registry_id=r.id) for r in registries)]


def _assert_details_exact(client, registries):
    for scope in _scopes(registries):
        params = {"registry": scope.registry_id} if scope.registry_id else {}
        computed = {b.digest: RankedLayerSerializer(b).data for b in layer_ranking(scope=scope)}
        for digest in Blob.objects.values_list("digest", flat=True):
            response = client.get(f"{API}layers/{digest}/", params)
            if digest in computed:
                assert response.status_code == 200, (scope, digest)
                assert response.json() == computed[digest], (scope, digest)
            else:  # a config, or a layer no tagged image of the scope lists
                assert response.status_code == 404, (scope, digest)
        assert computed  # the comparison was not vacuous


def _assert_holder_sizes_exact(client, registries):
    for registry in registries:
        holdings = list(
            RepositoryManifest.objects.filter(repository__registry=registry, present=True).values_list(
                "id", flat=True
            )
        )
        # a tag glob matching every tag is not a plain registry: the sizes query over the scope's images
        computed = image_sizes(holding_ids=holdings, scope=Scope(registry_id=registry.id, tag_glob="*"))
        assert image_sizes(holding_ids=holdings, scope=Scope(registry_id=registry.id)) == computed
        for digest in [layer.digest for layer in BASE]:
            body = client.get(f"{API}layers/{digest}/images/", {"registry": registry.id}).json()
            assert body["results"]
            for row in body["results"]:
                sizes = computed[row["id"]]
                assert (row["shared_bytes"], row["unique_bytes"]) == (sizes.shared_bytes, sizes.unique_bytes)


def test_layer_detail_and_holder_sizes_equal_the_computation(two, client_user):
    registries = list(two)
    _assert_details_exact(client_user, registries)
    _assert_holder_sizes_exact(client_user, registries)

    # tags removed in registry two: the api layers leave it, web1 stays held through registry one
    f.ingest(registries[1], "apps/api", {"1": MULTI}, extra=[API_IMG, ARM])
    f.ingest(registries[0], "apps/web", {"2": WEB2})
    _assert_details_exact(client_user, registries)
    _assert_holder_sizes_exact(client_user, registries)

    for registry in registries:
        figures_rebuild(registry_id=registry.id)
    _assert_details_exact(client_user, registries)
    _assert_holder_sizes_exact(client_user, registries)


def test_plain_detail_and_holder_sizes_do_not_read_the_scope_holdings(two, client_user):
    one, _ = two
    digest = BASE[0].digest
    with CaptureQueriesContext(connection) as queries:
        for params in ({}, {"registry": one.id}):
            assert client_user.get(f"{API}layers/{digest}/", params).status_code == 200
    # the computed ranking counts the scope's holdings; the maintained read is one row per registry
    assert not [q["sql"] for q in queries if "COUNT(DISTINCT" in q["sql"].upper()]
    with CaptureQueriesContext(connection) as queries:
        assert client_user.get(f"{API}layers/{digest}/images/", {"registry": one.id}).status_code == 200
    assert not [q["sql"] for q in queries if "scope_images" in q["sql"]]
