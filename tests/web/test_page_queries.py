"""Every page under /ui/ costs a bounded number of queries, whatever the size of the registry: the same
count with 5 repositories as with 30 (more than the overview draws), and the figures it shows are the
API's for the same scope. Django's test client over records made by `harness.records` (no browser)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.ingest.chains import chains_refresh
from analytics.models import RepositoryManifest, Tag
from analytics.policies.evaluate import registry_policies_evaluate
from analytics.policies.saved import cleanup_policy_create
from analytics.registries import registry_upsert
from analytics.web import pages
from harness import records as f

pytestmark = pytest.mark.django_db

# Queries per page, the session and its user included; none may depend on how much data there is.
BOUND = 20
OS = [f.layer("os-1", 3000), f.layer("os-2", 2000)]


def _fill(registry, namespaces: range, repositories: int) -> None:
    """Per namespace `ns<i>`, `repositories` repositories of two images on the shared base/os:1.0 (the
    second built on the first), sizes that differ; and once, a repository named like a namespace (`ns0`:
    the overview computes such a namespace's figures as the API does, so it costs two queries more)."""
    for i in namespaces:
        for j in range(repositories):
            name = f"ns{i}/app{j}"
            own = f.layer(f"{name}-own", 1000 * (i + 1) + 10 * j)
            top = f.layer(f"{name}-top", 500 + j)
            f.ingest(
                registry,
                name,
                {"1.0": f.image(name, layers=[*OS, own]), "2.0": f.image(name, layers=[*OS, own, top])},
            )
    if namespaces[0] == 0:
        f.ingest(registry, "ns0", {"latest": f.image("bare", layers=[*OS, f.layer("bare", 7)])})
    chains_refresh()  # as a scan's end does: the lineage's chain ids


@pytest.fixture
def reader(client):
    registry = registry_upsert(url="http://127.0.0.1:5997")
    f.ingest(registry, "base/os", {"1.0": f.image("os", layers=OS)})
    client.force_login(get_user_model().objects.create_user("page-counter", password="pw-page-counter"))
    return registry


def _paths(registry) -> list[str]:
    tag = Tag.objects.get(repository__name="ns0/app0", name="2.0", removed_at=None)
    holding = RepositoryManifest.objects.get(repository_id=tag.repository_id, manifest_id=tag.manifest_id)
    return [
        f"/ui/?registry={registry.id}",
        "/ui/",
        f"/ui/layers/?registry={registry.id}",
        f"/ui/lineage/?registry={registry.id}",
        f"/ui/whatif/?registry={registry.id}",
        f"/ui/whatif/?registry={registry.id}&repository=ns0/app0",
        f"/ui/images/{holding.id}/",
    ]


def _counts(client, registry) -> dict[str, int]:
    counts = {}
    for path in _paths(registry):
        client.get(path)  # warm: the first request may load what later ones reuse
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path)
        assert response.status_code == 200, path
        counts[path] = len(queries)
    return counts


def test_each_page_costs_the_same_few_queries_at_two_sizes(reader, client):
    _fill(reader, range(2), 2)
    small = _counts(client, reader)
    _fill(reader, range(2, 8), 4)  # 30 repositories: more than the overview ranks
    large = _counts(client, reader)
    for path, count in large.items():
        assert count <= BOUND, (path, count)
        assert count == small[path], (path, small[path], count)


def test_the_overview_costs_the_same_queries_for_one_saved_policy_as_for_many(reader, client):
    _fill(reader, range(1), 1)
    path = f"/ui/?registry={reader.id}"

    def count() -> int:
        client.get(path)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(path).status_code == 200
        return len(queries)

    cleanup_policy_create(registry=reader, name="p0", text='{"tag_glob": "*"}')
    registry_policies_evaluate(registry_id=reader.id)
    one = count()
    for i in range(1, 15):  # more than the overview draws
        cleanup_policy_create(registry=reader, name=f"p{i}", text='{"tag_glob": "1.*"}')
    for i in range(3):  # each a point per content version
        f.ingest(reader, "base/os", {"1.0": f.image("os", layers=OS), f"v{i}": f.image(f"v{i}", layers=OS)})
        registry_policies_evaluate(registry_id=reader.id)
    data = client.get(path).context["data"]
    assert len(data["policies"]) == 12 and data["policies_capped"]
    assert len(data["policies"][0]["points"]) == 4
    assert count() == one <= BOUND


def _api(client, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.json()


def test_the_overview_shows_the_api_figures_for_each_scope(reader, client):
    _fill(reader, range(6), 3)
    data = client.get(f"/ui/?registry={reader.id}").context["data"]
    fields = ("images", "distinct_layers", "logical_bytes", "stored_bytes", "saved_bytes", "dedup_ratio")
    [registry_row] = data["registries"]
    answer = _api(client, registry_row["api"])
    assert {k: registry_row[k] for k in fields} == {k: answer[k] for k in fields}
    for key in ("repositories", "namespaces"):
        rows = data[key]
        assert len(rows) == (pages.TOP_BARS if key == "repositories" else 7)  # ns0-ns5, base
        assert [r["stored_bytes"] for r in rows] == sorted((r["stored_bytes"] for r in rows), reverse=True)
        for row in rows:
            answer = _api(client, row["api_stored"])
            assert {k: row[k] for k in fields} == {k: answer[k] for k in fields}, row["name"]
            assert client.get(row["whatif"]).status_code == 200
    # the largest repository of all is drawn first, whatever its name
    assert data["repositories"][0]["name"] == "ns5/app2"
    # a namespace also named like a repository is the API's (computed) figure, not the maintained row
    assert "ns0" in [r["name"] for r in data["namespaces"]]


def test_the_lineage_page_draws_each_image_on_the_base_the_api_names(reader, client):
    _fill(reader, range(2), 2)
    nodes = client.get(f"/ui/lineage/?registry={reader.id}").context["data"]["nodes"]
    assert len(nodes) == 10 and sum(1 for n in nodes if n["base"]) == 9
    for node in nodes:
        base = _api(client, node["api"])["base"]
        assert node["base"] == (base["image"] if base else None), node["name"]


def test_the_image_page_counts_each_layer_as_the_api_does(reader, client):
    _fill(reader, range(2), 2)
    holding = RepositoryManifest.objects.filter(repository__name="ns1/app1").order_by("-id").first()
    data = client.get(f"/ui/images/{holding.id}/").context["data"]
    for layer in data["layers"]:
        images = _api(client, f"/api/v1/layers/{layer['digest']}/images/?registry={reader.id}")["count"]
        repositories = _api(client, f"/api/v1/layers/{layer['digest']}/repositories/?registry={reader.id}")
        assert (layer["images"], layer["repositories"]) == (images, repositories["count"]), layer["digest"]
