"""Every GET list refuses an unusable page parameter with a 400 whose detail names it, never a 500.

The lists come from the generated OpenAPI schema, so a list added later is walked as soon as it is
routed; its path parameters are filled from the `world` fixture."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from drf_spectacular.generators import SchemaGenerator

from analytics.models import Engine, EngineScan, RepositoryManifest, Scan, Tag, TagEvent
from analytics.policies.saved import cleanup_policy_create

pytestmark = pytest.mark.django_db

# Lists answered whole, not in pages (`partners` takes a top-N `limit` instead).
UNPAGED = {
    "/api/v1/images/{id}/partners/",
}
BAD = {
    "page_size": ["x", "-1", "0", "1.5"],
    "page": ["0", "-2", "x", "9" * 30],
    "after": ["junk", "1.2.3.4.5", "1.x"],
    "limit": ["x", "0", "-3"],
}


@dataclass(frozen=True)
class Endpoint:
    path: str  # as the schema names it, `{id}` and `{digest}` unfilled
    params: frozenset[str]
    required: frozenset[str]
    is_list: bool


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _is_list(schema: dict, operation: dict) -> bool:
    ok = operation["responses"].get("200") or operation["responses"].get("202")
    if not ok or "content" not in ok:
        return False
    body = ok["content"]["application/json"]["schema"]
    if "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    return body.get("type") == "array" or "results" in body.get("properties", {})


def endpoints() -> list[Endpoint]:
    schema = _schema()
    found = []
    for path, item in schema["paths"].items():
        if "get" not in item:
            continue
        query = [p for p in item["get"].get("parameters", []) if p["in"] == "query"]
        found.append(
            Endpoint(
                path=path,
                params=frozenset(p["name"] for p in query),
                required=frozenset(p["name"] for p in query if p.get("required")),
                is_list=_is_list(schema, item["get"]),
            )
        )
    return found


@pytest.fixture
def fill(world):
    """Path and required query values for every GET endpoint, from the world and a few extra rows."""
    holding = RepositoryManifest.objects.filter(repository=world.app).first()
    scan = Scan.objects.create(kind="registry", registry=world.registry)
    engine = Engine.objects.create(name="local", endpoint="unix:///var/run/docker.sock")
    ids = {
        "registries": world.registry.id,
        "repositories": world.app.id,
        "tags": Tag.objects.first().id,
        "tag-events": TagEvent.objects.first().id,
        "images": holding.id,
        "scans": scan.id,
        "engines": engine.id,
        "engine-scans": EngineScan.objects.create(engine=engine).id,
        "policies": cleanup_policy_create(registry=world.registry, name="all", text='{"tag_glob": "*"}').id,
    }
    required = {"registry": str(world.registry.id), "start": "2024-01-01", "end": "2025-01-01"}

    def fill(endpoint: Endpoint) -> tuple[str, dict[str, str]]:
        room = endpoint.path.removeprefix("/api/v1/").split("/", 1)[0]
        path = endpoint.path.replace("{id}", str(ids.get(room, 0))).replace("{digest}", world.base.digest)
        return path, {name: required[name] for name in endpoint.required}

    return fill


def test_the_lists_are_the_ones_expected():
    """Every list pages with `page_size` except the few answered whole; a new unpaged list is noticed."""
    lists = [e for e in endpoints() if e.is_list]
    assert len(lists) >= 20
    assert {e.path for e in lists if "page_size" not in e.params} == UNPAGED
    assert {e.path for e in lists if "after" in e.params} == {
        "/api/v1/layers/",
        "/api/v1/layers/top/",
        "/api/v1/layers/{digest}/repositories/",
        "/api/v1/layers/{digest}/images/",
        "/api/v1/images/{id}/derived/",
        "/api/v1/cold/",
    }


def test_every_list_answers_with_its_required_values(fill, client_user):
    for endpoint in endpoints():
        if endpoint.is_list:
            path, query = fill(endpoint)
            response = client_user.get(path, query)
            assert response.status_code == 200, (path, response.content[:200])


@pytest.mark.parametrize("name", list(BAD))
def test_an_unusable_page_parameter_is_a_400_naming_it(name, fill, client_user):
    walked, failures = 0, []
    for endpoint in endpoints():
        if not endpoint.is_list or name not in endpoint.params:
            continue
        path, query = fill(endpoint)
        for value in BAD[name]:
            response = client_user.get(path, {**query, name: value})
            body = response.json()
            if response.status_code != 400 or set(body) != {"detail"} or name not in body["detail"]:
                failures.append((path, value, response.status_code, body))
        walked += 1
    assert walked and not failures, failures


def test_a_nul_byte_in_any_parameter_of_any_get_is_a_400(fill, client_user):
    failures = []
    for endpoint in endpoints():
        path, query = fill(endpoint)
        name = sorted(endpoint.params - {"format"} or {"q"})[0]
        response = client_user.get(path, {**query, name: "a\x00b"})
        if response.status_code != 400 or name not in response.json()["detail"]:
            failures.append((path, name, response.status_code, response.content[:200]))
    assert not failures, failures


def test_a_page_of_many_rows_takes_the_queries_of_a_page_of_one(fill, client_user):
    """Serializers run no queries: per-page extras are fetched once for the page."""
    compared = []
    for endpoint in endpoints():
        if not endpoint.is_list or "page_size" not in endpoint.params:
            continue
        path, query = fill(endpoint)
        with CaptureQueriesContext(connection) as one:
            client_user.get(path, {**query, "page_size": 1})
        with CaptureQueriesContext(connection) as many:
            rows = client_user.get(path, {**query, "page_size": 50}).json()["results"]
        if len(rows) > 1:
            compared.append((path, len(one), len(many)))
    assert len(compared) >= 10 and all(one == many for _, one, many in compared), compared


def test_a_page_size_above_the_cap_is_capped_not_refused(world, client_user):
    for path in ("tags/", "largest-layers/", f"layers/{world.base.digest}/repositories/"):
        for size in ("5000", "9" * 30):
            assert client_user.get("/api/v1/" + path, {"page_size": size}).status_code == 200, path
