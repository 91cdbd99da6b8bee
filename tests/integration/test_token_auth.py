"""A real registry behind token auth: JWTs from tests/support/token_server.py, verified by the registry.

Scanned with the right credentials (figures equal the blob store on disk), wrong ones and none; and the
SSRF policy's opt-in for a loopback registry, through the registry row and the setting.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from django.test import override_settings

from analytics.models import Registry, Scan, ScanError
from analytics.scans.start import scan_start_inline
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from harness.registry import RegistryServer, blobstore_bytes
from tests.support.token_server import TokenServer

pytestmark = pytest.mark.integration
PASSWORD = "t0ken-Pa55word"


@pytest.fixture(scope="module")
def token_registry(test_registry):
    workdir = Path(tempfile.mkdtemp(prefix="ll-token-"))
    tokens = TokenServer(users={"scanner": PASSWORD}, grants={"scanner": {"private/web"}}, workdir=workdir)
    tokens.start()
    server = RegistryServer(token_auth=tokens).start()
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
         "--dest-creds", f"scanner:{PASSWORD}",
         f"docker://{test_registry.ref('apps/web', '1.0')}", f"docker://{server.host}/private/web:1.0"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    yield server, tokens
    server.cleanup()
    tokens.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def run(target, **credentials) -> Scan:
    return scan_start_inline(target=target, **credentials)


def messages(scan: Scan) -> str:
    errors = ScanError.objects.filter(scan__in=[scan, *scan.children.all()]).values_list("message", flat=True)
    return " | ".join([scan.message, *errors])


@pytest.mark.django_db
def test_scan_with_right_credentials_reads_everything_through_registry_verified_tokens(token_registry):
    server, tokens = token_registry
    before = len(tokens.requests)
    scan = run(server.url, username="scanner", password=PASSWORD)
    assert scan.status == Scan.Status.SUCCEEDED, messages(scan)
    registry = Registry.objects.get(url=server.url)
    summary = dedup_summary(scope=Scope(registry_id=registry.id))
    assert summary.stored_bytes == blobstore_bytes(server.root)
    # OAuth2 POST with the password grant, once per scope (catalog, repository), tokens then reused.
    asked = tokens.requests[before:]
    assert asked and all(r == ("POST", "password", "scanner") for r in asked)
    assert len(asked) <= 3


@pytest.mark.django_db
def test_scan_with_wrong_password_fails_clearly_and_never_shows_it(token_registry):
    server, _ = token_registry
    scan = run(f"{server.host}/private/web", username="scanner", password="wrong-password")
    assert scan.status == Scan.Status.FAILED
    text = messages(scan)
    assert "refused user 'scanner'" in text and "wrong-password" not in text


@pytest.mark.django_db
def test_anonymous_scan_fails_clearly(token_registry):
    server, _ = token_registry
    scan = run(f"{server.host}/private/web")
    assert scan.status == Scan.Status.FAILED
    assert "grants no access to repository 'private/web'" in messages(scan)


@pytest.mark.django_db
def test_loopback_registry_needs_an_operator_opt_in(test_registry):
    with override_settings(LAYERLENS_ALLOWED_NETWORKS=[]):
        scan = run(f"{test_registry.host}/apps/web:1.0")
        # Nothing was read: the tag's one request was refused before connecting.
        assert scan.status in (Scan.Status.FAILED, Scan.Status.PARTIAL) and scan.images_count == 0
        assert "127.0.0.1 is loopback" in messages(scan) and "--allow-internal" in messages(scan)
        Registry.objects.filter(url=test_registry.url).update(allow_internal=True)
        scan = run(f"{test_registry.host}/apps/web:1.0")
        assert scan.status == Scan.Status.SUCCEEDED, messages(scan)
