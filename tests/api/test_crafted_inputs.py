"""Every route of the API against the classes of input a probe crafts: huge, negative and non-finite
numbers, NUL bytes and long strings, in every query parameter and every field of every request body.
The routes come from the OpenAPI schema, so one added later is walked too. None may answer 5xx; what each
one answers instead is asserted by subject (test_request_bounds, test_crafted_numbers, test_text_bounds,
test_listed_bounds, test_tag_globs)."""

from __future__ import annotations

import pytest
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator

from analytics.models import Engine, EngineScan, RepositoryManifest, Scan, Tag, TagEvent
from analytics.policies.saved import cleanup_policy_create

pytestmark = pytest.mark.django_db

QUERY_VALUES = ["9" * 30, "-1", "-9" * 20, "1e300", "99999999999", "x" * 1000, "[z-a]"]
BODY_VALUES = [
    10**30,
    -(10**30),
    -1,
    99999999999,
    1e300,
    "9" * 40,
    "a\x00b",
    "x" * 70_000,
    [10**30],
    {"a": 1},
]


@pytest.fixture
def paths(world):
    """Each schema path with its `{id}` filled by a row of its room and `{digest}` by a shared layer."""
    engine = Engine.objects.create(name="local", endpoint="tcp://127.0.0.1:2375")
    ids = {
        "registries": world.registry.id,
        "repositories": world.app.id,
        "tags": Tag.objects.first().id,
        "tag-events": TagEvent.objects.first().id,
        "images": RepositoryManifest.objects.filter(repository=world.app).first().id,
        "scans": Scan.objects.create(kind="registry", registry=world.registry).id,
        "engines": engine.id,
        "engine-scans": EngineScan.objects.create(engine=engine).id,
        "policies": cleanup_policy_create(registry=world.registry, name="all", text='{"tag_glob": "*"}').id,
    }

    def fill(path: str) -> str:
        room = path.removeprefix("/api/v1/").split("/", 1)[0]
        return path.replace("{id}", str(ids.get(room, 0))).replace("{digest}", world.base.digest)

    return fill


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _status(client, method: str, url: str, data: dict, **kwargs) -> int:
    """The status of one request, in a savepoint undone after it: a failed statement would otherwise
    abort the test's transaction and every request after it."""
    sid = transaction.savepoint()
    try:
        return getattr(client, method)(url, data, **kwargs).status_code
    finally:
        transaction.savepoint_rollback(sid)


def test_no_query_parameter_value_is_a_5xx(world, paths, client_user):
    client_user.raise_request_exception = False
    failures, walked = [], 0
    for path, item in _schema()["paths"].items():
        if "get" not in item:
            continue
        names = {p["name"] for p in item["get"].get("parameters", []) if p["in"] == "query"} - {"format"}
        base = {"registry": str(world.registry.id), "start": "2024-01-01", "end": "2025-01-01"}
        for name in sorted(names):
            for value in QUERY_VALUES:
                status = _status(client_user, "get", paths(path), {**base, name: value})
                walked += 1
                if status >= 500:
                    failures.append((path, name, value[:20], status))
    assert walked > 500 and not failures, failures


def test_no_request_body_field_is_a_5xx(world, paths, client_staff, sent_tasks):
    client_staff.raise_request_exception = False
    schema = _schema()
    components = schema["components"]["schemas"]
    needed = {
        "url": "http://127.0.0.1:5401",
        "endpoint": "tcp://127.0.0.1:2401",
        "target": world.registry.url,
    }
    failures, walked = [], 0
    for path, item in schema["paths"].items():
        for method in ("post", "put", "patch"):
            body = item.get(method, {}).get("requestBody", {}).get("content", {}).get("application/json")
            if not body or "$ref" not in body["schema"]:
                continue
            fields = components[body["schema"]["$ref"].rsplit("/", 1)[-1]].get("properties", {})
            base = {k: v for k, v in needed.items() if k in fields and method == "post"}
            for field in fields:
                for value in BODY_VALUES:
                    status = _status(client_staff, method, paths(path), {**base, field: value}, format="json")
                    walked += 1
                    if status >= 500:
                        failures.append((method, path, field, str(value)[:20], status))
    assert walked > 200 and not failures, failures
