"""A detail that embeds a list embeds at most a page of it: a scan's errors (a registry scan can meet
thousands), the rest paged by `scans/{id}/errors/`. (An image's layers: test_image_pages.)"""

from __future__ import annotations

import pytest

from analytics.api.params import MAX_PAGE_SIZE
from analytics.api.scans import DETAIL_ERRORS
from analytics.models import Scan

pytestmark = pytest.mark.django_db

API = "/api/v1/"


def test_a_scan_detail_embeds_at_most_a_page_of_errors(world, client_user, monkeypatch):
    assert DETAIL_ERRORS == MAX_PAGE_SIZE
    monkeypatch.setattr("analytics.api.scans.DETAIL_ERRORS", 10)
    scan = Scan.objects.create(kind="registry", registry=world.registry, status="partial", errors_count=12)
    for i in range(12):
        scan.errors.create(repository=f"team/r{i}", reference="x", kind="DigestMismatch", message="bad")
    body = client_user.get(f"{API}scans/{scan.id}/").json()
    assert body["errors_count"] == 12
    assert [e["repository"] for e in body["errors"]] == [f"team/r{i}" for i in range(10)]
    assert client_user.get(f"{API}scans/{scan.id}/errors/").json()["count"] == 12
