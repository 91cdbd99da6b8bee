"""A CSV request of a list streams the whole list (every page, filters and ordering applied); a named
page stays one page; a detail stays one row. Expected rows come from the records the test ingested or
from the database, queried independently of the API."""

from __future__ import annotations

import csv
import io

import pytest

from analytics.api import csv as csv_export
from analytics.models import Registry, RepositoryManifest, Tag, TagEvent
from analytics.registries import registry_upsert
from harness import records as f

API = "/api/v1/"
IMAGES_PER_REPOSITORY = 31  # with two repositories: more than one JSON page (50) and many chunks


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 7 rows, so a few dozen rows cross many chunk boundaries."""
    monkeypatch.setattr(csv_export, "CHUNK", 7)
    monkeypatch.setattr(csv_export, "OFFSET_CHUNK", 7)


@pytest.fixture
def fleet(db):
    """Two repositories of 31 images each; every image holds the base layer and one layer of its own,
    of size 1000 + i (so ordering by size is known)."""
    registry = registry_upsert(url="http://127.0.0.1:5998", name="fleet")
    base = f.layer("fleet-base", 50_000, uncompressed_size=150_000)
    images = {}
    for repo in ("team/a", "team/b"):
        records = [
            f.image(
                f"{repo}-{i}",
                layers=[base, f.layer(f"{repo}-{i}", 1_000 + i, uncompressed_size=3 * (1_000 + i))],
                config_size=100,
                manifest_size=200,
            )
            for i in range(IMAGES_PER_REPOSITORY)
        ]
        f.ingest(registry, repo, {f"v{i}": r for i, r in enumerate(records)})
        images[repo] = records
    return registry, base, images


def read_csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content[:300]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.DictReader(io.StringIO(body.decode())))


def stream(client, path, **params) -> list[dict[str, str]]:
    response = client.get(API + path, {**params, "format": "csv"})
    assert response.streaming is True
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response["Content-Disposition"].endswith('.csv"')
    return read_csv(response)


def once(values: list[str]) -> set[str]:
    assert len(values) == len(set(values)), "a row came twice"
    return set(values)


def test_image_csv_streams_every_image_once_across_pages_and_chunks(fleet, client_user, small_chunks):
    registry, _, images = fleet
    rows = stream(client_user, "images/")
    expected = {r.digest for records in images.values() for r in records}
    assert once([r["digest"] for r in rows]) == expected
    in_db = RepositoryManifest.objects.filter(repository__registry=registry, present=True)
    assert once([r["id"] for r in rows]) == {str(i) for i in in_db.values_list("id", flat=True)}
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)  # the default order, id
    # the same serializer as the JSON (flattened), and sizes as ingested
    first = client_user.get(API + "images/", {"page_size": 1}).json()["results"][0]
    record = next(r for rs in images.values() for r in rs if r.digest == rows[0]["digest"])
    own_layer = record.layers[1].size
    assert rows[0]["size_bytes"] == str(first["size_bytes"]) == str(200 + 100 + 50_000 + own_layer)
    assert rows[0]["tags"] == ";".join(first["tags"]) == f"v{own_layer - 1_000}"


def test_image_csv_honours_filters_and_ordering(fleet, client_user, small_chunks):
    _, _, images = fleet
    rows = stream(client_user, "images/", repository="team/b", ordering="-layers_size")
    by_size = sorted(images["team/b"], key=lambda r: -sum(layer.size for layer in r.layers))
    assert [r["digest"] for r in rows] == [r.digest for r in by_size]
    searched = stream(client_user, "images/", search=images["team/a"][3].digest)
    assert [r["digest"] for r in searched] == [images["team/a"][3].digest]


def test_accept_header_streams_too_and_json_stays_paginated(fleet, client_user, small_chunks):
    response = client_user.get(API + "images/", HTTP_ACCEPT="text/csv")
    assert response.streaming and len(read_csv(response)) == 2 * IMAGES_PER_REPOSITORY
    suffix = client_user.get(API + "images.csv")
    assert suffix["Content-Disposition"] == 'attachment; filename="images.csv"'
    assert len(read_csv(suffix)) == 2 * IMAGES_PER_REPOSITORY
    body = client_user.get(API + "images/").json()
    assert body["count"] == 2 * IMAGES_PER_REPOSITORY and len(body["results"]) == 50 and body["next"]


def test_named_page_keeps_meaning_that_page(fleet, client_user):
    response = client_user.get(API + "images/", {"format": "csv", "page": 2, "page_size": 10})
    assert response.streaming is False
    json_page = client_user.get(API + "images/", {"page": 2, "page_size": 10}).json()["results"]
    assert [r["id"] for r in read_csv(response)] == [str(i["id"]) for i in json_page]


def test_detail_is_one_row(fleet, client_user):
    holding = RepositoryManifest.objects.filter(present=True).order_by("id").first()
    response = client_user.get(API + f"images/{holding.id}/", {"format": "csv"})
    assert response.streaming is False
    (row,) = read_csv(response)
    assert row["digest"] == holding.manifest.digest


def test_tag_csv_beyond_the_largest_page(db, client_user):
    """1,100 tags: more than page_size may ever ask (1,000), with the real chunk size."""
    registry = registry_upsert(url="http://127.0.0.1:5997")
    record = f.image("many-tags", layers=[f.layer("one", 10)], config_size=1, manifest_size=1)
    f.ingest(registry, "big/tags", {f"t{i:04d}": record for i in range(1_100)})
    rows = stream(client_user, "tags/")
    assert once([r["name"] for r in rows]) == set(Tag.objects.values_list("name", flat=True))
    assert len(rows) == 1_100 and [r["name"] for r in rows] == sorted(r["name"] for r in rows)
    events = stream(client_user, "tag-events/")
    assert once([r["id"] for r in events]) == {str(i) for i in TagEvent.objects.values_list("id", flat=True)}
    assert len(events) == 1_100
    tag = Tag.objects.get(name="t0007")
    (created,) = stream(client_user, f"tags/{tag.id}/events/")
    assert created["tag"] == str(tag.id)


def test_layer_holders_csv_walks_the_keyset(fleet, client_user, small_chunks):
    registry, base, images = fleet
    everyone = {r.digest for records in images.values() for r in records}
    assert once([r["digest"] for r in stream(client_user, f"layers/{base.digest}/images/")]) == everyone
    # a namespace scope takes the queryset path
    scoped = stream(client_user, f"layers/{base.digest}/images/", namespace="team/a".split("/")[0])
    assert once([r["digest"] for r in scoped]) == everyone
    repos = stream(client_user, f"layers/{base.digest}/repositories/")
    assert once([r["name"] for r in repos]) == {"team/a", "team/b"}
    top = stream(client_user, "layers/top/", registry=registry.id)
    layers = {base.digest} | {r.layers[1].digest for records in images.values() for r in records}
    assert once([r["digest"] for r in top]) == layers
    assert top[0]["digest"] == base.digest and top[0]["images"] == str(2 * IMAGES_PER_REPOSITORY)


def test_layer_ranking_csv_streams_every_layer(fleet, client_user, small_chunks):
    _, base, images = fleet
    rows = stream(client_user, "layers/")
    layers = {base.digest} | {r.layers[1].digest for records in images.values() for r in records}
    assert once([r["digest"] for r in rows]) == layers and rows[0]["digest"] == base.digest


def test_insight_csv_walks_offset_pages(fleet, client_user, small_chunks):
    registry, base, images = fleet
    rows = stream(client_user, "largest-layers/", registry=registry.id)
    sizes = {base.digest: 50_000} | {
        r.layers[1].digest: r.layers[1].size for rs in images.values() for r in rs
    }
    assert once([r["digest"] for r in rows]) == set(sizes)
    assert [int(r["size"]) for r in rows] == sorted(sizes.values(), reverse=True)
    history = stream(client_user, "build-history/", registry=registry.id)
    # each image's own layer has its own line; the shared base layer the line of the first manifest
    own = {h.created_by for rs in images.values() for r in rs for h in r.history if h.layer_position == 1}
    names = once([r["created_by"] for r in history])
    (base_line,) = names - own
    assert own < names and base_line.endswith(" step 0")


def test_anonymous_csv_is_refused_like_json(fleet, anon_client):
    for path in ("images/", "layers/top/", "largest-layers/", "tags/"):
        json_status = anon_client.get(API + path).status_code
        assert json_status in (401, 403)
        assert anon_client.get(API + path, {"format": "csv"}).status_code == json_status


def test_formula_cells_are_quoted(fleet, client_user):
    Registry.objects.filter(name="fleet").update(name='=HYPERLINK("http://x")')
    (row,) = stream(client_user, "registries/")
    assert row["name"] == '\'=HYPERLINK("http://x")'
    lines = csv_export.csv_text([{"a": "-5", "b": "-x", "c": "@SUM(A1)", "d": "+1.5e3", "e": -7}])
    assert list(csv.reader(io.StringIO(lines)))[1] == ["-5", "'-x", "'@SUM(A1)", "+1.5e3", "-7"]


def test_unknown_scope_is_404_before_any_csv_is_sent(fleet, client_user):
    for path in ("images/", "layers/", "largest-layers/", "layers/top/"):
        response = client_user.get(API + path, {"registry": "nowhere:1", "format": "csv"})
        assert response.status_code == 404 and response.streaming is False
    missing = client_user.get(API + "layers/sha256:" + "0" * 64 + "/images/", {"format": "csv"})
    assert missing.status_code == 404 and missing.streaming is False


def test_empty_list_is_its_header(fleet, client_user):
    """No rows: the file is the header a non-empty export of the same list starts with."""
    full = client_user.get(API + "tags/", {"format": "csv"})
    header = b"".join(full.streaming_content).decode().split("\r\n", 1)[0]
    empty = client_user.get(API + "tags/", {"format": "csv", "name": "no-such-tag"})
    assert empty.streaming is True
    assert b"".join(empty.streaming_content).decode() == header + "\r\n"
    assert header.startswith("id,") and "name" in header.split(",")


def test_empty_image_list_is_its_header(fleet, client_user):
    full = client_user.get(API + "images/", {"format": "csv"})
    header = b"".join(full.streaming_content).decode().split("\r\n", 1)[0]
    empty = client_user.get(API + "images/", {"format": "csv", "tag_glob": "no-such-*"})
    assert b"".join(empty.streaming_content).decode() == header + "\r\n"
