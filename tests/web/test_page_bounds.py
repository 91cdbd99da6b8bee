"""The pages refuse what the API refuses: a NUL byte in a query parameter or in the path is a 400 naming
it, never a 500 from PostgreSQL; a what-if number, glob or list the page cannot use is a 400 showing the
reason; the image page draws at most STACK_LIMIT layers (it counts each one's holders). No browser:
Django's test client, over records made by `harness.records`."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from analytics.models import RepositoryManifest
from analytics.registries import registry_upsert
from harness import records as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(client, db):
    registry = registry_upsert(url="http://127.0.0.1:5998")
    f.ingest(registry, "team/app", {"1.0": f.image("a", layers=[f.layer("base", 100)])})
    client.force_login(get_user_model().objects.create_user("page-reader", password="pw-page-reader"))
    client.raise_request_exception = False
    return registry


@pytest.mark.parametrize("path", ["/ui/", "/ui/layers/", "/ui/lineage/", "/ui/whatif/"])
def test_a_nul_byte_in_a_page_parameter_is_a_400_naming_it(path, reader, client):
    response = client.get(path + "?registry=a%00")
    assert response.status_code == 400
    assert response.content.decode().strip() == "'registry': a NUL byte is not allowed"
    response = client.get(path, {"registry": reader.id, "namespace": "te\x00am"})
    assert response.status_code == 400 and "'namespace'" in response.content.decode()


@pytest.mark.parametrize("path", ["/ui/images/1%00/", "/ui/%00/", "/ui/layers/%00"])
def test_a_nul_byte_in_a_page_path_is_a_400(path, reader, client):
    response = client.get(path)
    assert response.status_code == 400
    assert "a NUL byte is not allowed" in response.content.decode()


def test_the_pages_still_answer(reader, client):
    holding = RepositoryManifest.objects.get()
    for path in ("/ui/", "/ui/layers/", "/ui/lineage/", "/ui/whatif/", f"/ui/images/{holding.id}/"):
        assert client.get(path, {"registry": reader.id} if "images" not in path else {}).status_code == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [("not_seen_days", "99999999999"), ("keep_newest", "99999999999"), ("not_seen_days", "²")],
)
def test_a_whatif_number_the_page_cannot_use_is_a_400_naming_it(name, value, reader, client):
    response = client.get("/ui/whatif/", {"registry": reader.id, name: value})
    assert response.status_code == 400 and name in response.content.decode()
    response = client.get("/ui/whatif/", {"registry": reader.id, name: "30"})
    assert response.status_code == 200


def test_a_whatif_page_listing_more_tags_than_the_cap_is_a_400(reader, client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000
    tags = [f"team/app:v{i}" for i in range(1001)]
    response = client.get("/ui/whatif/", {"registry": reader.id, "tags": tags})
    assert response.status_code == 400 and "tags: at most 1000" in response.content.decode()


@pytest.mark.parametrize("glob", ["[z-a]", "[[:foo:]]", "x" * 300])
def test_a_whatif_glob_postgres_would_refuse_is_a_400_naming_it(glob, reader, client):
    response = client.get("/ui/whatif/", {"registry": reader.id, "tag_glob": glob})
    assert response.status_code == 400 and "tag_glob" in response.content.decode()


def test_the_image_page_draws_at_most_its_stack_limit(reader, client, monkeypatch):
    monkeypatch.setattr("analytics.web.pages.STACK_LIMIT", 10)
    layers = [f.layer(f"tall-{i}", 100 + i) for i in range(12)]
    repository = f.ingest(reader, "team/tall", {"1.0": f.image("tall", layers=layers)})
    holding = RepositoryManifest.objects.get(repository=repository)
    page = client.get(f"/ui/images/{holding.id}/").content.decode()
    assert "Only the bottom 10 layers are drawn." in page
    assert f"/api/v1/images/{holding.id}/layers/?page_size=10" in page
