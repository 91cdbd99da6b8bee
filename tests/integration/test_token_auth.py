"""A real registry behind token auth: JWTs from tests/support/token_server.py, verified by the registry.

Scanned with the right credentials (figures equal the blob store on disk), wrong ones and none, an
identity token; against a token server that answers the OAuth2 POST 501 and one that speaks only the
POST; and the SSRF policy's opt-in for a loopback registry, through the registry row and the setting.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from django.test import override_settings

from analytics.models import Registry, Repository, RepositoryManifest, Scan, ScanError, Tag
from analytics.registries import registry_upsert
from analytics.scans.start import scan_start_inline
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from harness.registry import RegistryServer, blobstore_bytes
from tests.support.token_server import TokenServer
from workers.registry.auth import SHARED_TOKEN_CACHE

pytestmark = pytest.mark.integration
PASSWORD = "t0ken-Pa55word"
IDENTITY_TOKEN = "id-t0ken-for-scanner"
REPOSITORIES = {"private/web": "apps/web", "private/api": "apps/api"}


@pytest.fixture(scope="module")
def token_registry(test_registry):
    workdir = Path(tempfile.mkdtemp(prefix="ll-token-"))
    tokens = TokenServer(
        users={"scanner": PASSWORD},
        grants={"scanner": set(REPOSITORIES)},
        identity_tokens={IDENTITY_TOKEN: "scanner"},
        workdir=workdir,
    )
    tokens.start()
    server = RegistryServer(token_auth=tokens).start()
    for name, source in REPOSITORIES.items():
        subprocess.run(
            ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
             "--dest-creds", f"scanner:{PASSWORD}",
             f"docker://{test_registry.ref(source, '1.0')}", f"docker://{server.host}/{name}:1.0"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    yield server, tokens
    server.cleanup()
    tokens.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_cached_tokens():
    """Every test asks the token server afresh: the process-wide cache would otherwise answer."""
    SHARED_TOKEN_CACHE.clear()
    yield
    SHARED_TOKEN_CACHE.clear()


@pytest.fixture
def post_mode(token_registry):
    """Set the token server's `post` behaviour for one test; the registry keeps the same realm."""
    _, tokens = token_registry

    def use(mode: str) -> None:
        tokens.post = mode

    yield use
    tokens.post = "serve"


def run(target, **credentials) -> Scan:
    return scan_start_inline(target=target, **credentials)


def messages(scan: Scan) -> str:
    errors = ScanError.objects.filter(scan__in=[scan, *scan.children.all()]).values_list("message", flat=True)
    return " | ".join([scan.message, *errors])


def assert_read_everything(server, scan: Scan) -> None:
    assert scan.status == Scan.Status.SUCCEEDED, messages(scan)
    registry = Registry.objects.get(url=server.url)
    read = Repository.objects.filter(registry=registry, tags__isnull=False).values_list("name", flat=True)
    assert set(read) == set(REPOSITORIES)
    summary = dedup_summary(scope=Scope(registry_id=registry.id))
    assert summary.stored_bytes == blobstore_bytes(server.root)


@pytest.mark.django_db
def test_scan_with_right_credentials_reads_everything_through_registry_verified_tokens(token_registry):
    server, tokens = token_registry
    before = len(tokens.requests)
    scan = run(server.url, username="scanner", password=PASSWORD)
    assert_read_everything(server, scan)
    # One token per scope (the catalog, each repository), then reused.
    asked = tokens.requests[before:]
    assert asked and len(asked) <= 1 + len(REPOSITORIES)


@pytest.mark.django_db
def test_password_asks_for_tokens_with_get_and_basic_credentials_never_the_post(token_registry):
    # As `docker login`: the server here would answer the POST too, but the GET comes first and serves.
    server, tokens = token_registry
    before = len(tokens.requests)
    scan = run(server.url, username="scanner", password=PASSWORD)
    assert scan.status == Scan.Status.SUCCEEDED, messages(scan)
    asked = tokens.requests[before:]
    assert asked[0] == ("GET", "basic", "scanner")
    assert set(asked) == {("GET", "basic", "scanner")}


@pytest.mark.django_db
def test_token_server_answering_the_post_501_serves_a_password_scan(token_registry, post_mode):
    server, tokens = token_registry
    post_mode("not-implemented")
    before = len(tokens.requests)
    scan = run(server.url, username="scanner", password=PASSWORD)
    assert_read_everything(server, scan)
    assert {method for method, _, _ in tokens.requests[before:]} == {"GET"}


@pytest.mark.django_db
def test_token_server_answering_the_post_501_rejects_a_wrong_password_clearly(token_registry, post_mode):
    server, tokens = token_registry
    post_mode("not-implemented")
    before = len(tokens.requests)
    scan = run(server.url, username="scanner", password="wrong-password")
    assert scan.status == Scan.Status.FAILED
    text = messages(scan)
    assert "refused user 'scanner' (HTTP 401); check the user name and password" in text, text
    assert "wrong-password" not in text and "try again later" not in text
    assert tokens.requests[before:] == [("GET", "basic", "scanner")]  # refused once, not retried
    registry = Registry.objects.get(url=server.url)
    assert not Repository.objects.filter(registry=registry).exists()
    assert not Tag.objects.filter(repository__registry=registry).exists()
    assert not RepositoryManifest.objects.filter(repository__registry=registry).exists()


@pytest.mark.django_db
def test_identity_token_asks_for_tokens_with_the_oauth2_post(token_registry):
    server, tokens = token_registry
    config = {"auths": {server.host: {"identitytoken": IDENTITY_TOKEN}}}
    registry_upsert(url=server.url, docker_config=json.dumps(config))
    before = len(tokens.requests)
    scan = run(server.url)
    assert_read_everything(server, scan)
    asked = tokens.requests[before:]
    assert asked and set(asked) == {("POST", "refresh_token", "scanner")}


@pytest.mark.django_db
def test_token_server_speaking_only_the_post_serves_a_password_scan(token_registry, post_mode):
    server, tokens = token_registry
    post_mode("only")
    before = len(tokens.requests)
    scan = run(server.url, username="scanner", password=PASSWORD)
    assert_read_everything(server, scan)
    asked = tokens.requests[before:]
    assert asked[:2] == [("GET", "basic", "scanner"), ("POST", "password", "scanner")]


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
