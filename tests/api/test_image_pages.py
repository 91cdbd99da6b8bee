"""An image's layers and history come in the project's offset pages (an image can have tens of thousands
of layers: one unpaginated answer was megabytes); a CSV without `page` is still the whole list, and the
image's detail embeds at most a page of them."""

from __future__ import annotations

import csv
import io

import pytest

from analytics.api.content import DETAIL_LAYERS
from analytics.api.params import MAX_PAGE_SIZE
from analytics.models import RepositoryManifest
from analytics.registries import registry_upsert
from harness import records as f

pytestmark = pytest.mark.django_db

API = "/api/v1/"
LAYERS = 130


@pytest.fixture
def tall(db) -> RepositoryManifest:
    registry = registry_upsert(url="http://127.0.0.1:5997")
    layers = [f.layer(f"tall-{i}", 100 + i) for i in range(LAYERS)]
    repository = f.ingest(registry, "team/tall", {"1.0": f.image("tall", layers=layers)})
    return RepositoryManifest.objects.get(repository=repository)


def _csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.parametrize(("action", "rows"), [("layers", LAYERS), ("history", LAYERS + 1)])
def test_the_json_is_paged(action, rows, tall, client_user):
    url = f"{API}images/{tall.id}/{action}/"
    first = client_user.get(url).json()
    assert first["count"] == rows and len(first["results"]) == 50 and first["previous"] is None
    assert first["next"].endswith("?page=2")
    last = client_user.get(url, {"page": "last", "page_size": 60}).json()
    assert len(last["results"]) == rows - 120 and last["next"] is None
    whole = client_user.get(url, {"page_size": 5000}).json()
    assert len(whole["results"]) == rows and [r["position"] for r in whole["results"]] == sorted(
        r["position"] for r in whole["results"]
    )


@pytest.mark.parametrize(("action", "rows"), [("layers", LAYERS), ("history", LAYERS + 1)])
def test_a_csv_without_page_is_the_whole_list(action, rows, tall, client_user):
    url = f"{API}images/{tall.id}/{action}/"
    response = client_user.get(url, {"format": "csv", "page_size": 10})
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    assert len(_csv(response)) == rows
    page = client_user.get(url, {"format": "csv", "page": 2, "page_size": 10})
    assert len(list(csv.DictReader(io.StringIO(page.content.decode())))) == 10


def test_the_first_page_of_a_tall_image_is_small(tall, client_user):
    url = f"{API}images/{tall.id}/layers/"
    assert len(client_user.get(url).content) < len(client_user.get(url, {"page_size": 1000}).content) / 2


@pytest.mark.parametrize("action", ["layers", "history"])
def test_a_bad_page_is_a_400_naming_it(action, tall, client_user):
    response = client_user.get(f"{API}images/{tall.id}/{action}/", {"page": "0"})
    assert response.status_code == 400 and "page" in response.json()["detail"]


def test_the_detail_embeds_at_most_a_page_of_layers(tall, client_user, monkeypatch):
    assert DETAIL_LAYERS == MAX_PAGE_SIZE
    monkeypatch.setattr("analytics.api.content.DETAIL_LAYERS", 100)
    body = client_user.get(f"{API}images/{tall.id}/").json()
    assert body["layer_count"] == LAYERS and [x["position"] for x in body["layers"]] == list(range(100))
