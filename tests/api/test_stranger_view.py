"""What a reader who is not staff may see of the operators' settings: no registry user names, in JSON
or CSV."""

from __future__ import annotations

import csv
import io

import pytest

pytestmark = pytest.mark.django_db
API = "/api/v1/"


def rows(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.DictReader(io.StringIO(body.decode())))


def test_registry_user_names_are_for_staff_only(world, client_user, client_staff):
    detail = f"{API}registries/{world.registry.id}/"
    for path in (API + "registries/", detail):
        body = client_user.get(path).json()
        for row in body.get("results", [body]):
            assert "username" not in row and row["has_password"] is True
        for query in ({"format": "csv"}, {"format": "csv", "page": 1}):
            (row,) = rows(client_user.get(path, query))
            assert "username" not in row and "robot" not in row.values()
    assert client_staff.get(detail).json()["username"] == "robot"
    (row,) = rows(client_staff.get(API + "registries/", {"format": "csv"}))
    assert row["username"] == "robot"
