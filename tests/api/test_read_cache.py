"""Read answers cached per database snapshot: a repeated GET is a cache read while nothing commits, and
any commit makes the next GET read the database again. Outside a test's transaction (as in production,
where a GET runs in autocommit), against the shared Redis cache."""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from analytics.api import content
from analytics.ingest.chains import chains_refresh
from analytics.registries import registry_upsert
from harness import records as f

pytestmark = pytest.mark.django_db(transaction=True)

# team/app: manifest 500 + config 1000 + layers 10000 + 2000; team/web: 600 + 1100 + 10000 + 3000, the
# 10000-byte base shared: stored 18200 (the sum of distinct blobs and manifests)
STORED = 500 + 1_000 + 10_000 + 2_000 + 600 + 1_100 + 3_000


@pytest.fixture
def setup(shared_cache):
    registry = registry_upsert(url="http://127.0.0.1:5999")
    base = f.layer("base", 10_000)
    f.ingest(
        registry,
        "team/app",
        {"1.0": f.image("a", layers=[base, f.layer("app", 2_000)], config_size=1_000, manifest_size=500)},
    )
    f.ingest(
        registry,
        "team/web",
        {"latest": f.image("b", layers=[base, f.layer("web", 3_000)], config_size=1_100, manifest_size=600)},
    )
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("reader", password="pw-reader-cache"))
    return registry, base, client


def _get(client, url: str) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return response, [q["sql"] for q in queries.captured_queries]


def _from_cache(client, url: str):
    """A repeat answered from the cache. Any commit in the cluster (other databases' too) starts a new
    snapshot, so on a shared server a repeat may read the database: try a few times."""
    for _ in range(20):
        response, sql = _get(client, url)
        if sql == ["SELECT pg_current_snapshot()::text"]:
            return response
    pytest.fail(f"{url} never came from the cache")


def test_repeat_is_read_from_the_cache_and_a_commit_ends_it(setup):
    registry, base, client = setup
    url = f"/api/v1/summary/?registry={registry.id}"
    first, first_sql = _get(client, url)
    assert first.json()["stored_bytes"] == STORED
    assert len(first_sql) > 1

    assert _from_cache(client, url).content == first.content

    # a third image (700 + 1200 + its own 4000-byte layer on the shared base) commits
    f.ingest(
        registry,
        "team/api",
        {"v1": f.image("c", layers=[base, f.layer("api", 4_000)], config_size=1_200, manifest_size=700)},
    )
    after, after_sql = _get(client, url)
    assert after.json()["stored_bytes"] == STORED + 700 + 1_200 + 4_000
    assert len(after_sql) > 1


def test_lists_and_their_pages_are_cached_apart(setup):
    registry, _, client = setup
    one, _ = _get(client, f"/api/v1/images/?registry={registry.id}&page_size=1")
    two, _ = _get(client, f"/api/v1/images/?registry={registry.id}&page_size=1&page=2")
    names = [one.json()["results"][0]["repository_name"], two.json()["results"][0]["repository_name"]]
    assert sorted(names) == ["team/app", "team/web"]
    assert (
        _from_cache(client, f"/api/v1/images/?registry={registry.id}&page_size=1&page=2").content
        == two.content
    )


def test_inside_a_transaction_nothing_is_cached(setup):
    registry, _, client = setup
    url = f"/api/v1/layers/?registry={registry.id}"
    with transaction.atomic():
        _, first_sql = _get(client, url)
        _, again_sql = _get(client, url)
    assert len(again_sql) == len(first_sql) > 1


def test_csv_and_errors_are_not_cached(setup):
    registry, _, client = setup
    url = f"/api/v1/tags/?registry={registry.id}&format=csv"
    first = client.get(url)
    assert first.status_code == 200 and b"team/app" in b"".join(first.streaming_content)
    with CaptureQueriesContext(connection) as queries:
        again = b"".join(client.get(url).streaming_content)  # a stream reads the database as it is sent
    sql = [q["sql"] for q in queries.captured_queries]
    assert b"team/app" in again and any('FROM "analytics_tag"' in q for q in sql)
    assert not any("pg_current_snapshot" in q for q in sql)
    assert client.get("/api/v1/images/?registry=999999").status_code == 404
    assert client.get("/api/v1/images/?registry=999999").status_code == 404


def test_other_readers_and_no_login_are_still_checked(setup, settings):
    registry, _, client = setup
    url = f"/api/v1/summary/?registry={registry.id}"
    _get(client, url)
    assert APIClient().get(url).status_code == 401  # the cached answer is not served without a login


def test_a_tag_move_ends_the_cached_stale_bases(setup):
    registry, base, client = setup
    old_base = f.image("os-1", layers=[base], config_size=900, manifest_size=400)
    built = f.image("built", layers=[base, f.layer("tool", 700)], config_size=950, manifest_size=450)
    for name, tags in (("base/os", {"1": old_base}), ("apps/tool", {"1": built})):
        chains_refresh(repository_ids=[f.ingest(registry, name, tags).id])
    url = f"/api/v1/stale-bases/?registry={registry.id}"
    assert _get(client, url)[0].json()["results"] == []
    assert _from_cache(client, url).json()["results"] == []

    new_base = f.image("os-2", layers=[f.layer("os2", 1_100)], config_size=910, manifest_size=410)
    chains_refresh(repository_ids=[f.ingest(registry, "base/os", {"1": new_base}).id])
    [row] = _get(client, url)[0].json()["results"]
    assert (row["tag"], row["old_digest"], row["new_digest"]) == ("1", old_base.digest, new_base.digest)
    assert [a[2] for a in row["affected"]] == [built.digest]


def test_threads_asking_at_once_after_a_commit_compute_it_once(setup, monkeypatch):
    """A new snapshot makes every waiting request miss together: one computes, the others take its answer."""
    registry, _, client = setup
    computed = []
    real = content.dedup_summary

    def slow(**kwargs):
        computed.append(1)
        time.sleep(0.3)  # the others arrive while it computes
        return real(**kwargs)

    monkeypatch.setattr(content, "dedup_summary", slow)
    url = f"/api/v1/summary/?registry={registry.id}"

    def trial() -> tuple[int, set[bytes]]:
        computed.clear()
        bodies: list[bytes] = []
        barrier = threading.Barrier(8)

        def ask() -> None:
            barrier.wait()
            response = client.get(url)
            bodies.append(response.content)
            connection.close()

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return len(computed), set(bodies)

    # other databases' commits on a shared server start new snapshots: a few trials
    for _ in range(5):
        f.ingest(registry, "team/more", {"1": f.image("more", layers=[f.layer("more", 10)])})  # a commit
        count, bodies = trial()
        assert len(bodies) == 1 and b'"stored_bytes"' in next(iter(bodies))
        if count == 1:
            return
    pytest.fail(f"the same answer was computed {count} times at once")
