"""Listing: Link followed verbatim, short pages, duplicates, page size on 400, Docker Hub names."""

from __future__ import annotations

import httpx
import pytest

from tests.registry.fakes import FakeRegistry, error_body
from workers.registry import ProtocolError
from workers.registry.reference import parse_scan_target


def test_short_page_with_a_link_is_not_the_end_and_duplicates_are_dropped() -> None:
    reg = FakeRegistry()
    pages = {
        "": (["a", "b"], '</v2/team/app/tags/list?cursor=opaque%2F1>; rel="next"'),
        "cursor=opaque%2F1": (
            ["b"],
            '<http://registry.test:5000/v2/team/app/tags/list?cursor=2>; rel="next"',
        ),
        "cursor=2": (["c", "a"], None),
    }
    asked: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        query = request.url.query.decode()
        key = "" if query.startswith("n=") else query
        asked.append(query)
        tags, link = pages[key]
        return httpx.Response(200, json={"tags": tags}, headers={"Link": link} if link else {})

    reg.routes["/v2/team/app/tags/list"] = serve
    with reg.client() as client:
        assert list(client.iter_tags("team/app")) == ["a", "b", "c"]
    # the opaque cursor went back exactly as the registry wrote it, relative and absolute alike
    assert asked[1:] == ["cursor=opaque%2F1", "cursor=2"]


def test_bare_400_halves_the_page_size_until_the_registry_accepts_it() -> None:
    reg = FakeRegistry()
    sizes: list[int] = []

    def picky(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("n", "0"))
        sizes.append(n)
        if n > 30:
            return httpx.Response(400)  # no error body at all
        return httpx.Response(200, json={"tags": [f"t{i}" for i in range(5)]})

    reg.routes["/v2/team/app/tags/list"] = picky
    with reg.client(page_size=1000) as client:
        assert len(list(client.iter_tags("team/app"))) == 5
    assert sizes[:6] == [1000, 500, 250, 125, 62, 31] and sizes[6] == 15


def test_link_to_another_origin_is_refused() -> None:
    reg = FakeRegistry()
    reg.routes["/v2/team/app/tags/list"] = lambda r: httpx.Response(
        200, json={"tags": ["a"]}, headers={"Link": '<https://evil.test/v2/team/app/tags/list>; rel="next"'}
    )
    with reg.client() as client, pytest.raises(ProtocolError, match="another origin"):
        list(client.iter_tags("team/app"))


def test_unsupported_catalog_is_raised_for_the_fallback_to_decide() -> None:
    reg = FakeRegistry()
    reg.routes["/v2/_catalog"] = lambda r: httpx.Response(
        400, content=error_body("UNSUPPORTED", "catalog disabled")
    )
    with reg.client() as client, pytest.raises(Exception, match="UNSUPPORTED") as info:
        list(client.iter_repositories())
    assert getattr(info.value, "code", None) == "UNSUPPORTED"


@pytest.mark.parametrize(
    ("target", "url", "repository"),
    [
        ("docker.io/alpine", "https://registry-1.docker.io", "library/alpine"),
        ("docker.io/library/alpine:3.20", "https://registry-1.docker.io", "library/alpine"),
        ("index.docker.io/bitnami/redis", "https://registry-1.docker.io", "bitnami/redis"),
        ("https://registry-1.docker.io/alpine", "https://registry-1.docker.io", "library/alpine"),
        ("127.0.0.1:5000/alpine", "http://127.0.0.1:5000", "alpine"),
    ],
)
def test_docker_hub_names_are_normalised(target: str, url: str, repository: str) -> None:
    parsed = parse_scan_target(target)
    assert (parsed.registry_url, parsed.repository) == (url, repository)
