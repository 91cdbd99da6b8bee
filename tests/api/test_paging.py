"""Pages link to each other: walking `next` with one row a page gives the rows of one large page, in
order, once each, for the offset pages (counted and not) and the keyset pages. Parameters other than
the page ones are checked too: a value that cannot be used is a 400 naming it."""

from __future__ import annotations

import pytest

from analytics.models import Tag, TagEvent

pytestmark = pytest.mark.django_db

API = "/api/v1/"


def walk(client, path: str, key: str, **params) -> tuple[list, list[dict]]:
    """Every row reached from the first page by `next`, and each page's body."""
    bodies, url, query = [], API + path, {**params, "page_size": 1}
    while url:
        response = client.get(url, query)
        assert response.status_code == 200, response.content[:300]
        bodies.append(response.json())
        url, query = bodies[-1]["next"], None
    return [row[key] for body in bodies for row in body["results"]], bodies


@pytest.mark.parametrize(
    ("path", "key", "keys"),
    [
        ("tags/", "id", {"next", "previous", "results"}),
        ("tag-events/", "id", {"next", "previous", "results"}),
        ("tag-events/?registry={registry}", "id", {"next", "previous", "results"}),
        ("largest-layers/", "digest", {"next", "previous", "results"}),
        ("layers/top/", "digest", {"next", "results"}),
        ("layers/{digest}/repositories/", "name", {"count", "next", "results"}),
        ("layers/{digest}/images/", "id", {"count", "next", "previous", "results"}),
        ("layers/{digest}/images/?namespace=team", "id", {"count", "next", "previous", "results"}),
    ],
)
def test_next_links_walk_the_whole_list(world, client_user, path, key, keys):
    path = path.format(digest=world.base.digest, registry=world.registry.id)
    params = {"registry": world.registry.id} if "top" in path else {}
    whole = client_user.get(API + path, params).json()
    rows, bodies = walk(client_user, path, key, **params)
    assert len(whole["results"]) >= 2 and len(bodies) == len(whole["results"])
    assert rows == [row[key] for row in whole["results"]]
    assert all(set(body) == keys for body in bodies)
    if "after=" in bodies[0]["next"]:  # keyset: no way back
        assert all(body.get("previous") is None for body in bodies)
    else:
        assert bodies[0]["previous"] is None and all(body["previous"] for body in bodies[1:])


def test_keyset_pages_carry_the_key_and_the_other_parameters(world, client_user):
    first = client_user.get(
        API + "layers/top/", {"registry": world.registry.id, "order": "saved_bytes", "page_size": 1}
    ).json()
    assert all(part in first["next"] for part in ("after=", "order=saved_bytes", "page_size=1"))


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("images/", "include_untagged", "maybe"),
        ("images/", "last_seen_before", "2024-13-01"),
        ("images/", "last_seen_after", "yesterday"),
        ("tags/", "include_removed", "perhaps"),
        ("trends/", "since", "2024-02-30"),
        ("trends/", "repository", "app"),
        ("build-history/", "order", "newest"),
        ("layers/top/", "order", "size"),
        ("stale-bases/", "registry", ""),
        ("cross-registry/", "include_untagged", "2"),
    ],
)
def test_an_unusable_value_is_a_400_naming_it(world, client_user, path, name, value):
    params = {"registry": world.registry.id} if path == "layers/top/" else {}
    response = client_user.get(API + path, {**params, name: value})
    assert response.status_code == 400, response.content[:300]
    assert set(response.json()) == {"detail"} and name in response.json()["detail"]


def test_growth_needs_both_dates(world, client_user):
    response = client_user.get(f"{API}repositories/{world.app.id}/growth/", {"start": "2024-01-01"})
    assert response.status_code == 400 and "end" in response.json()["detail"]


def test_a_counted_list_still_takes_page_last(world, client_user):
    query = {"include_untagged": "true", "page_size": 1}
    count = client_user.get(API + "images/", query).json()["count"]
    body = client_user.get(API + "images/", {**query, "page": "last"}).json()
    assert count >= 2 and body["count"] == count and len(body["results"]) == 1
    assert body["next"] is None and body["previous"]


def test_tags_and_tag_events_pages_are_the_ordered_rows_without_a_count(world, client_user):
    tags = client_user.get(API + "tags/", {"include_removed": "true"}).json()
    expected = list(Tag.objects.order_by("repository_id", "name").values_list("id", flat=True))
    assert "count" not in tags and [t["id"] for t in tags["results"]] == expected
    events = client_user.get(API + "tag-events/", {"registry": world.registry.id}).json()
    newest_first = TagEvent.objects.filter(tag__repository__registry=world.registry).order_by(
        "-seen_at", "-id"
    )
    assert "count" not in events and [e["id"] for e in events["results"]] == [e.id for e in newest_first]
    assert client_user.get(API + "tags/", {"page": "last"}).status_code == 400  # no count, no last page
