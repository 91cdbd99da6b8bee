"""A registry without `_catalog` (Docker Hub, GitLab, Harbor non-admin) is scanned by known repositories."""

from __future__ import annotations

import httpx
import pytest

from analytics.models import Registry, Repository, Scan, ScanError, Tag
from analytics.scans import clients
from analytics.scans.start import scan_create, scan_run_inline
from tests.registry.fakes import BASE_URL, FakeRegistry, error_body

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(401, content=error_body("UNAUTHORIZED", "authentication required")),
        httpx.Response(404, content=error_body("NOT_FOUND", "no catalog here")),
        httpx.Response(400, content=error_body("UNSUPPORTED", "catalog disabled")),
    ],
)
def test_registry_scan_without_catalog_falls_back_to_known_repositories(
    reply: httpx.Response, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = FakeRegistry()
    digest = reg.add_docker_image("team/app", "v1")
    reg.routes["/v2/_catalog"] = lambda r: reply
    monkeypatch.setattr(clients, "registry_client", lambda registry: reg.client())
    registry = Registry.objects.create(name="hub", url=BASE_URL)
    Repository.objects.create(registry=registry, name="team/app")

    scan = scan_run_inline(scan_id=scan_create(registry=registry).id)

    assert Tag.objects.get(repository__name="team/app", name="v1").manifest.digest == digest
    note = ScanError.objects.get(scan=scan, kind="CatalogUnavailable")
    assert "already known" in note.message and str(reply.status_code) in note.message
    assert scan.status == Scan.Status.PARTIAL  # the listing may have missed repositories: it says so


def test_registry_scan_without_catalog_and_no_known_repository_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = FakeRegistry()
    reg.routes["/v2/_catalog"] = lambda r: httpx.Response(404, content=error_body("NOT_FOUND", "no catalog"))
    monkeypatch.setattr(clients, "registry_client", lambda registry: reg.client())
    registry = Registry.objects.create(name="hub", url=BASE_URL)
    scan = scan_run_inline(scan_id=scan_create(registry=registry).id)
    assert scan.status == Scan.Status.FAILED and "404" in scan.message
