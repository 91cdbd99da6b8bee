"""A real registry behind htpasswd basic auth: credentials work, are encrypted, and never come back."""

from __future__ import annotations

import subprocess

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from analytics.models import Registry, Scan
from analytics.scans.start import scan_start_inline
from harness.registry import RegistryServer, blobstore_bytes

pytestmark = pytest.mark.integration
PASSWORD = "s3cret-Pa55word"


@pytest.fixture
def auth_registry(test_registry):
    server = RegistryServer(username="scanner", password=PASSWORD).start()
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
         "--dest-creds", f"scanner:{PASSWORD}",
         f"docker://{test_registry.ref('apps/web', '1.0')}", f"docker://{server.host}/private/web:1.0"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    yield server
    server.cleanup()


def run(target, **credentials) -> Scan:
    return scan_start_inline(target=target, **credentials)


@pytest.mark.django_db
def test_scan_without_credentials_fails_with_a_clear_401(auth_registry):
    scan = run(auth_registry.url)
    assert scan.status == Scan.Status.FAILED
    assert "401" in scan.message or "unauthorized" in scan.message.lower()


@pytest.mark.django_db
def test_scan_with_basic_auth_reads_everything_and_keeps_the_password_secret(auth_registry):
    scan = run(auth_registry.url, username="scanner", password=PASSWORD)
    assert scan.status == Scan.Status.SUCCEEDED, scan.message
    registry = Registry.objects.get(url=auth_registry.url)
    assert PASSWORD not in registry.password_encrypted
    assert registry.get_password() == PASSWORD

    staff = User.objects.create_user("ops", password="x", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    for path in (f"/api/v1/registries/{registry.id}/", "/api/v1/registries/", f"/api/v1/scans/{scan.id}/"):
        body = client.get(path).content.decode()
        assert PASSWORD not in body and "password_encrypted" not in body
    summary = client.get("/api/v1/summary/", {"registry": auth_registry.host}).json()
    assert summary["stored_bytes"] == blobstore_bytes(auth_registry.root)


@pytest.mark.django_db
def test_scan_with_a_wrong_password_fails_clearly_and_never_shows_it(auth_registry):
    scan = run(auth_registry.url, username="scanner", password="not-the-password")
    assert scan.status == Scan.Status.FAILED
    assert "credentials for user 'scanner' rejected" in scan.message
    assert "not-the-password" not in scan.message
