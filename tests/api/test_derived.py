"""`images/{id}/derived/`: keyset pages over the images whose ordered layers start with all of a base's.

The expected answer is worked out here from the layer lists the images were built from (a list derives
from the base when it is longer and starts with the base's list), never from the chain ids the endpoint
reads; the order (extra layers, manifest id, image id) takes its ids from the rows ingest wrote.
"""

from __future__ import annotations

import pytest
from django.db.models import OuterRef, Subquery

from analytics.api import csv
from analytics.ingest.chains import chains_refresh
from analytics.models import LayerChain, Manifest, Registry, RepositoryManifest
from analytics.selectors import lineage
from harness import records as f

pytestmark = pytest.mark.django_db

A, B, C, D, E, G = (f.layer(n, 100 + i) for i, n in enumerate("abcdeg"))
BASE = f.image("base", [A, B])

# name -> layers. Derived: starts with [A, B] and is longer; several share a layer count (ties).
LAYERS: dict[str, list] = {
    "twin": [A, B],  # the same list under another config: not a proper prefix
    "swapped": [B, A, C],  # the base's layers, not in its order
    "partial": [A, C, D],  # shares the first layer only
    **{f"one{i}": [A, B, f.layer(f"one{i}", 10 + i)] for i in range(5)},  # five at +1
    **{f"two{i}": [A, B, C, f.layer(f"two{i}", 20 + i)] for i in range(4)},  # four at +2
    "mid": [A, B, C],  # +1 and itself a base of the two* images
    "three": [A, B, C, D, E],  # +3
    "four": [A, B, C, D, E, G],  # +4
}
IMAGES = {name: f.image(name, layers) for name, layers in LAYERS.items()}


def derived_from(base, image) -> int | None:
    """Extra layers when `image`'s layers start with all of `base`'s (and more), else None."""
    ours, theirs = list(base.layers), list(image.layers)
    return len(theirs) - len(ours) if len(theirs) > len(ours) and theirs[: len(ours)] == ours else None


@pytest.fixture
def registry():
    return Registry.objects.create(name="local", url="http://127.0.0.1:5000")


@pytest.fixture
def built(registry):
    """Base in `lib/base`; each image tagged in `apps/NAME`; `mid` also in `apps/copy` (two images, one
    manifest); `three` also untagged in `apps/old`; `four` also in another registry."""
    f.ingest(registry, "lib/base", {"1": BASE})
    for name, record in IMAGES.items():
        f.ingest(registry, f"apps/{name}", {"1": record})
    f.ingest(registry, "apps/copy", {"1": IMAGES["mid"]})
    f.ingest(registry, "apps/old", {"1": IMAGES["twin"]}, extra=[IMAGES["three"]])
    other = Registry.objects.create(name="other", url="http://127.0.0.1:5001")
    f.ingest(other, "apps/four", {"1": IMAGES["four"]})
    chains_refresh()
    return RepositoryManifest.objects.get(repository__name="lib/base", manifest__digest=BASE.digest)


def expected(registry, *, untagged: bool = False) -> list[tuple[int, str, str, int]]:
    """(image id, repository, digest, extra layers) of the registry's images built on BASE, in order."""
    extra = {r.digest: n for r in IMAGES.values() if (n := derived_from(BASE, r)) is not None}
    holdings = RepositoryManifest.objects.filter(
        repository__registry=registry, manifest__digest__in=extra
    ).select_related("repository", "manifest")
    if not untagged:
        holdings = holdings.filter(present=True)
    rows = sorted(holdings, key=lambda h: (extra[h.manifest.digest], h.manifest_id, h.id))
    return [(h.id, h.repository.name, h.manifest.digest, extra[h.manifest.digest]) for h in rows]


def walk(client, url: str, **query) -> tuple[list[tuple], list[dict]]:
    """Every row reached from the first page by `next`, and each page's body."""
    rows, bodies, params = [], [], {**query}
    while url:
        response = client.get(url, params)
        assert response.status_code == 200, response.content[:300]
        body = response.json()
        bodies.append(body)
        rows += [(r["image"], r["repository"], r["digest"], r["extra_layers"]) for r in body["results"]]
        url, params = body["next"], {}
    return rows, bodies


def test_the_fixture_is_what_the_tests_say(registry, built):
    """Ties at +1 and +2, a manifest held twice, an untagged holding and one in another registry."""
    want = expected(registry)
    extras = [row[3] for row in want]
    assert extras.count(1) == 7 and extras.count(2) == 4 and {3, 4} <= set(extras)
    assert RepositoryManifest.objects.filter(manifest__digest=IMAGES["mid"].digest).count() == 2
    old = RepositoryManifest.objects.get(repository__name="apps/old", manifest__digest=IMAGES["three"].digest)
    assert not old.present
    # the column the order reads is the manifest's layer count on every chain row
    count = Manifest.objects.filter(id=OuterRef("manifest_id")).values("layer_count")[:1]
    assert LayerChain.objects.exists()
    assert not LayerChain.objects.exclude(layer_count=Subquery(count)).exists()


@pytest.mark.parametrize("page_size", [1, 2, 3, 50])
def test_pages_walk_the_expected_list_in_order(client_user, registry, built, page_size):
    rows, bodies = walk(client_user, f"/api/v1/images/{built.id}/derived/", page_size=page_size)
    assert rows == expected(registry)
    assert all(set(body) == {"next", "previous", "results"} for body in bodies)
    assert all(body["previous"] is None for body in bodies)
    assert all(len(body["results"]) == page_size for body in bodies[:-1])
    if page_size < len(rows):
        assert "after=" in bodies[0]["next"] and f"page_size={page_size}" in bodies[0]["next"]


def test_untagged_images_on_request(client_user, registry, built):
    url = f"/api/v1/images/{built.id}/derived/"
    rows, _ = walk(client_user, url, page_size=2, include_untagged="true")
    assert rows == expected(registry, untagged=True)
    assert ("apps/old", IMAGES["three"].digest) in {(r[1], r[2]) for r in rows}
    assert ("apps/old", IMAGES["three"].digest) not in {(r[1], r[2]) for r in walk(client_user, url)[0]}


def test_a_walk_cut_short_still_reaches_every_row(client_user, registry, built, monkeypatch):
    """With few chain rows walked per page, pages can end short (even empty) yet `next` goes on."""
    monkeypatch.setattr(lineage, "DERIVED_WALK", 3)  # page_size 2: 3 rows walked at least
    RepositoryManifest.objects.filter(repository__name__startswith="apps/one").update(present=False)
    rows, bodies = walk(client_user, f"/api/v1/images/{built.id}/derived/", page_size=2)
    assert rows == expected(registry)
    assert any(len(body["results"]) < 2 and body["next"] for body in bodies)


def test_the_walk_stops_after_its_bound(registry, built, monkeypatch):
    """Derived manifests no holding of the registry reaches cost one page `DERIVED_WALK` rows, not all."""
    monkeypatch.setattr(lineage, "DERIVED_WALK", 3)
    RepositoryManifest.objects.filter(repository__registry=registry).exclude(id=built.id).update(
        present=False
    )
    found, nxt = lineage.image_derived(holding=built, limit=2)
    assert found == [] and nxt is not None
    pages = 1
    while nxt is not None:
        found, nxt = lineage.image_derived(holding=built, after=nxt, limit=2)
        assert found == []
        pages += 1
    # 12 derived manifests, 3 chain rows a page: 4 pages, the last one ending the list
    assert pages == 4


def test_whole_list_csv(client_user, registry, built, monkeypatch):
    monkeypatch.setattr(lineage, "DERIVED_WALK", 4)
    monkeypatch.setattr(csv, "CHUNK", 3)  # several chunks, some cut by the walk
    response = client_user.get(f"/api/v1/images/{built.id}/derived/", {"format": "csv"})
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "image,repository,digest,extra_layers"
    want = [tuple(map(str, row)) for row in expected(registry)]
    assert [tuple(line.split(",")) for line in lines[1:]] == want


def test_empty_csv_is_its_header(client_user, registry, built):
    four = RepositoryManifest.objects.get(repository__registry__name="other")
    response = client_user.get(f"/api/v1/images/{four.id}/derived/", {"format": "csv"})
    assert b"".join(response.streaming_content).decode().strip() == "image,repository,digest,extra_layers"
    assert client_user.get(f"/api/v1/images/{four.id}/derived/").json()["results"] == []


@pytest.mark.parametrize(("name", "value"), [("after", "1.2"), ("after", "x.y.z"), ("page", "2")])
def test_unusable_paging_is_a_400(client_user, built, name, value):
    response = client_user.get(f"/api/v1/images/{built.id}/derived/", {name: value})
    assert response.status_code == 400
    assert name in response.json()["detail"]


def test_mid_lists_its_own_derived(client_user, registry, built):
    """From another base: `mid` ([A, B, C]) is a base of the two* images; two holdings of it, one answer."""
    mid = RepositoryManifest.objects.get(repository__name="apps/mid", manifest__digest=IMAGES["mid"].digest)
    rows, _ = walk(client_user, f"/api/v1/images/{mid.id}/derived/", page_size=1)
    want = sorted((n, r.digest) for r in IMAGES.values() if (n := derived_from(IMAGES["mid"], r)) is not None)
    assert sorted((row[3], row[2]) for row in rows) == want and len(want) == 6
