"""The receiver's two entry points agree. The web serves `POST /api/v1/registries/{id}/events/` in front
of Django (`config.wsgi.application`, `analytics.api.events_wsgi`); the documented receiver is the DRF
view behind Django's whole stack (middlewares, URL resolution), which tests/events/test_receiver.py
drives with Django's test client. Each rule is sent to both, from a state emptied in between: the same
status, body, headers that matter and rows stored. The served entry is driven as a WSGI server would
drive it (httpx's WSGI transport), with the DRF view made to fail, so an answer from it is its own.

Then what the served entry does that the view never needs to: a kept registry whose secret changed or
which was deleted, and a database connection that died between two requests.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import psycopg
import pytest
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test import Client

from analytics.infra.statements import web_statement_timeout_install
from analytics.models import Registry, RegistryEvent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
DISTRIBUTION = "application/vnd.docker.distribution.events.v1+json"
SECRET = "s3cret-for-tests"
COMPARED_HEADERS = (
    "WWW-Authenticate",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
    "X-Frame-Options",
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"quay:{password}".encode()).decode()


@pytest.fixture
def served():
    """The web's WSGI application, as gunicorn loads it. What it hands to Django runs with Django's
    request signals cut from the connections, as Django's test client does for its requests: they
    would close the connection inside the test's transaction."""
    import config.wsgi

    def application(environ, start_response):
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            answer = config.wsgi.application(environ, start_response)
            try:
                return [b"".join(answer)]
            finally:
                getattr(answer, "close", lambda: None)()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)

    try:
        yield application
    finally:
        web_statement_timeout_install(0)  # importing it bounded this process's new connections


@pytest.fixture(autouse=True)
def _no_tasks(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(
        "analytics.events.inbox.events_apply_soon", lambda *, registry_id: sent.append(registry_id)
    )
    return sent


@pytest.fixture
def registries(db) -> dict[str, int]:
    followed = Registry.objects.create(name="followed", url="http://127.0.0.1:5999")
    followed.set_events_secret(SECRET)
    followed.save()
    bare = Registry.objects.create(name="bare", url="http://127.0.0.1:5998")
    return {"followed": followed.id, "bare": bare.id, "unknown": 999_999}


def _event(**target: object) -> bytes:
    event = json.loads(fixture("distribution_push_manifest.json"))["events"][0]
    event["target"].update(target)
    return json.dumps({"events": [event]}).encode()


# (name, registry, body, content type, Authorization; None: the secret as a bearer)
CASES = [
    ("push stored", "followed", fixture("distribution_push_manifest.json"), DISTRIBUTION, None),
    ("pull stored", "followed", fixture("distribution_pull_manifest.json"), DISTRIBUTION, None),
    ("a HEAD ignored", "followed", fixture("distribution_pull_head.json"), DISTRIBUTION, None),
    ("harbor push", "followed", fixture("harbor_push_artifact.json"), "application/json", None),
    ("quay push, Basic", "followed", fixture("quay_repo_push.json"), "application/json", basic(SECRET)),
    ("no secret", "followed", fixture("distribution_push_manifest.json"), DISTRIBUTION, ""),
    ("wrong bearer", "followed", fixture("distribution_push_manifest.json"), DISTRIBUTION, "Bearer wrong"),
    ("other scheme", "followed", fixture("distribution_push_manifest.json"), DISTRIBUTION, f"Token {SECRET}"),
    ("wrong Basic", "followed", fixture("quay_repo_push.json"), "application/json", basic("wrong")),
    ("Basic not base64", "followed", fixture("quay_repo_push.json"), "application/json", "Basic not-base64!"),
    ("registry without a secret", "bare", fixture("distribution_push_manifest.json"), DISTRIBUTION, None),
    ("no such registry", "unknown", fixture("distribution_push_manifest.json"), DISTRIBUTION, None),
    ("malformed JSON", "followed", b"{not json", DISTRIBUTION, None),
    ("no JSON object", "followed", b"[1, 2]", DISTRIBUTION, None),
    ("unknown shape", "followed", b'{"hello": "world"}', "application/json", None),
    ("unknown media type", "followed", fixture("distribution_push_manifest.json"), "text/plain", None),
    ("no repository name", "followed", _event(repository="Team/App"), DISTRIBUTION, None),
    ("no tag", "followed", _event(tag="-bad"), DISTRIBUTION, None),
    ("no digest", "followed", _event(digest="sha256:xyz"), DISTRIBUTION, None),
    ("too deep", "followed", b'{"events": [' + b"[" * 20 + b"]" * 20 + b"]}", DISTRIBUTION, None),
    ("over EVENTS_MAX_BODY_BYTES", "followed", _event(url="x" * 2000), DISTRIBUTION, None),
    ("over the request cap", "followed", b'{"events": []' + b" " * 6000 + b"}", DISTRIBUTION, None),
    ("over the cap, no secret", "followed", b'{"events": []' + b" " * 6000 + b"}", DISTRIBUTION, ""),
]


def _answer(response, status: int, content: bytes) -> dict:
    headers = {name: response.headers.get(name) for name in COMPARED_HEADERS}
    return {
        "status": status,
        "body": json.loads(content),
        "content_type": (response.headers.get("Content-Type") or "").split(";")[0],
        "headers": headers,
        "retry_after": response.headers.get("Retry-After") is not None,
        "rows": sorted(
            RegistryEvent.objects.values_list("source", "action", "target", "repository", "tag", "digest")
        ),
    }


def _documented(path: str, body: bytes, content_type: str, auth: str) -> dict:
    response = Client().post(path, body, content_type=content_type, HTTP_AUTHORIZATION=auth)
    return _answer(response, response.status_code, response.content)


def _served(app, path: str, body: bytes, content_type: str, auth: str) -> dict:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://127.0.0.1") as client:
        headers = {"Content-Type": content_type, "Authorization": auth}
        response = client.post(path, content=body, headers=headers)
    return _answer(response, response.status_code, response.content)


def _reset() -> None:
    RegistryEvent.objects.all().delete()
    cache.clear()  # the refusal counts per address


def _view_fails(*args, **kwargs):
    raise AssertionError("the DRF view answered a request the served entry should have")


@pytest.mark.parametrize(
    ("name", "registry", "body", "content_type", "auth"), CASES, ids=[c[0] for c in CASES]
)
def test_both_entry_points_answer_and_store_alike(
    served, registries, settings, monkeypatch, name, registry, body, content_type, auth
):
    settings.EVENTS_MAX_BODY_BYTES = 1500
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5000
    path = f"/api/v1/registries/{registries[registry]}/events/"
    auth = f"Bearer {SECRET}" if auth is None else auth
    # twice each: the second is a redelivery (duplicates), or a refusal from a warm process
    documented = [_documented(path, body, content_type, auth) for _ in range(2)]
    _reset()
    with monkeypatch.context() as patch:
        patch.setattr("analytics.api.events.events_receive", _view_fails)
        answered = [_served(served, path, body, content_type, auth) for _ in range(2)]
    assert answered == documented
    assert documented[0]["status"] in (202, 400, 401, 413), documented[0]
    if documented[0]["status"] != 202:
        assert documented[0]["rows"] == [] and documented[1]["rows"] == []


def test_both_entry_points_refuse_past_the_rate_alike(served, registries, settings, monkeypatch):
    settings.LAYERLENS_THROTTLE_RATES = {**settings.LAYERLENS_THROTTLE_RATES, "events_refused": "3/min"}
    path = f"/api/v1/registries/{registries['followed']}/events/"
    good = fixture("distribution_push_manifest.json")
    documented = [_documented(path, b"{}", DISTRIBUTION, "Bearer wrong") for _ in range(5)]
    documented.append(_documented(path, good, DISTRIBUTION, f"Bearer {SECRET}"))
    _reset()
    with monkeypatch.context() as patch:
        patch.setattr("analytics.api.events.events_receive", _view_fails)
        answered = [_served(served, path, b"{}", DISTRIBUTION, "Bearer wrong") for _ in range(5)]
        answered.append(_served(served, path, good, DISTRIBUTION, f"Bearer {SECRET}"))
    assert answered == documented
    assert [a["status"] for a in answered] == [401, 401, 401, 429, 429, 202]
    assert answered[3]["retry_after"]


def test_requests_django_must_bound_go_to_django(served, registries, monkeypatch):
    """A query string, a cookie or an unknown host: the middlewares' answer, not the fast path's."""
    calls: list[int] = []
    monkeypatch.setattr(
        "analytics.api.events_wsgi.events_receive", lambda **kw: calls.append(1) or pytest.fail("fast path")
    )
    path = f"/api/v1/registries/{registries['followed']}/events/"
    body = fixture("distribution_push_manifest.json")
    headers = {"Content-Type": DISTRIBUTION, "Authorization": f"Bearer {SECRET}"}
    with httpx.Client(transport=httpx.WSGITransport(app=served), base_url="http://127.0.0.1") as client:
        nul = client.post(path + "?a=%00", content=body, headers=headers)
        assert nul.status_code == 400 and "NUL" in nul.json()["detail"]
        assert client.post(path + "?a=1", content=body, headers=headers).status_code == 202
        assert client.post(path, content=body, headers={**headers, "Cookie": "a=b"}).status_code == 202
        elsewhere = {**headers, "Host": "elsewhere.example"}
        assert client.post(path, content=body, headers=elsewhere).status_code == 400
        assert client.get(path).status_code == 405
    assert calls == []
    assert RegistryEvent.objects.count() == 1  # the push, once


def test_a_kept_registry_whose_secret_changed_or_which_was_deleted_is_refused(served, registries):
    path = f"/api/v1/registries/{registries['followed']}/events/"
    body = fixture("distribution_push_manifest.json")
    with httpx.Client(transport=httpx.WSGITransport(app=served), base_url="http://127.0.0.1") as client:

        def post(secret: str, event: bytes = body) -> httpx.Response:
            headers = {"Content-Type": DISTRIBUTION, "Authorization": f"Bearer {secret}"}
            return client.post(path, content=event, headers=headers)

        assert post(SECRET).status_code == 202  # the registry is kept from here on
        row = Registry.objects.get(id=registries["followed"])
        row.set_events_secret("the-new-one")
        row.save()
        refused = post(SECRET, fixture("distribution_pull_manifest.json"))
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert post(SECRET, b"{not json").status_code == 401  # not a 400: the secret is checked first
        assert post("the-new-one", fixture("distribution_pull_manifest.json")).status_code == 202
        row.name = "renamed"
        row.save()
        assert post("the-new-one", fixture("distribution_push_blob.json")).status_code == 202
        # stored: the first push, the pull with the new secret, the blob push after the rename
        assert sorted(RegistryEvent.objects.values_list("action", "target")) == [
            ("pull", "manifest"),
            ("push", "blob"),
            ("push", "manifest"),
        ]
        Registry.objects.filter(id=row.id).delete()
        assert post("the-new-one", fixture("distribution_mount_blob.json")).status_code == 401
    assert not RegistryEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_died_between_requests_is_replaced_and_nothing_is_lost(served, registries):
    """No health check before the first statement: the statement finds the connection dead, and runs
    again on a new one; the answer is a 202 and the event is stored once."""
    path = f"/api/v1/registries/{registries['followed']}/events/"
    with httpx.Client(transport=httpx.WSGITransport(app=served), base_url="http://127.0.0.1") as client:

        def post(name: str) -> httpx.Response:
            headers = {"Content-Type": DISTRIBUTION, "Authorization": f"Bearer {SECRET}"}
            return client.post(path, content=fixture(name), headers=headers)

        assert post("distribution_push_manifest.json").status_code == 202
        backend = connection.connection.info.backend_pid
        dsn = connection.connection.info.dsn
        with psycopg.connect(dsn, autocommit=True) as other:
            assert other.execute("SELECT pg_terminate_backend(%s)", [backend]).fetchone()[0]
        second = post("distribution_pull_manifest.json")
        assert second.status_code == 202, second.text
        assert second.json() == {"received": 1, "stored": 1, "duplicates": 0, "ignored": 0}
        assert connection.connection.info.backend_pid != backend
    assert sorted(RegistryEvent.objects.values_list("action", flat=True)) == ["pull", "push"]


def test_the_schema_still_documents_the_receiver(admin_client):
    paths = admin_client.get("/api/schema/?format=json").json()["paths"]
    (path,) = [p for p in paths if p.startswith("/api/v1/registries/") and p.endswith("/events/")]
    post = paths[path]["post"]
    assert set(post["responses"]) == {"202", "400", "401", "413", "429", "503"}
    assert set(post["requestBody"]["content"]) == {DISTRIBUTION, "application/json"}
    accepted = post["responses"]["202"]["content"]["application/json"]["schema"]
    assert accepted == {"$ref": "#/components/schemas/EventsAccepted"}
