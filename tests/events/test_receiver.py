"""The events receiver: what it stores from each format, and what it refuses with nothing stored.

The payloads are real: `tests/fixtures/events/distribution_*.json` are bodies Debian's docker-registry
(distribution 2.8.2) sent to a listener for pushes, mounts, pulls (GET and HEAD) and a manifest delete;
`harbor_push_artifact.json` is Harbor's documented example (goharbor.io "Configure Webhook
Notifications"), the pull and delete ones the same shape as Harbor's `constructArtifactPayload` builds
them (a delete of an untagged artifact names its digest as `tag`); `quay_repo_push.json` is what
Quay's `RepoPushEvent.get_sample_data` builds (`notifications/__init__.py` build_repository_event_data).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from django.test import Client

from analytics.models import Registry, RegistryEvent

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
DISTRIBUTION = "application/vnd.docker.distribution.events.v1+json"
SECRET = "s3cret-for-tests"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def registry() -> Registry:
    row = Registry.objects.create(name="followed", url="http://127.0.0.1:5999")
    row.set_events_secret(SECRET)
    row.save()
    return row


@pytest.fixture(autouse=True)
def _no_tasks(monkeypatch):
    """The apply task is sent by its own tests; here only what the receiver stores matters."""
    sent: list[int] = []
    monkeypatch.setattr(
        "analytics.events.inbox.events_apply_soon", lambda *, registry_id: sent.append(registry_id)
    )
    return sent


def post(registry_id: int, body: bytes, *, content_type: str = DISTRIBUTION, auth: str | None = None):
    headers = {"HTTP_AUTHORIZATION": auth if auth is not None else f"Bearer {SECRET}"}
    return Client().post(
        f"/api/v1/registries/{registry_id}/events/", body, content_type=content_type, **headers
    )


def test_distribution_push_is_stored_once_and_a_redelivery_is_a_duplicate(
    registry, _no_tasks, django_capture_on_commit_callbacks
):
    body = fixture("distribution_push_manifest.json")
    with django_capture_on_commit_callbacks(execute=True):
        first = post(registry.id, body)
    assert first.status_code == 202, first.content
    assert first.json() == {"received": 1, "stored": 1, "duplicates": 0, "ignored": 0}
    event = RegistryEvent.objects.get()
    sent = json.loads(body)["events"][0]
    assert (event.source, event.action, event.target) == ("distribution", "push", "manifest")
    assert (event.repository, event.tag, event.digest) == ("team/app", "v5", sent["target"]["digest"])
    assert event.key == f"distribution:{sent['id']}"
    assert event.user_agent == "python-httpx/0.28.1" and event.applied_at is None
    assert event.occurred_at.isoformat().startswith("2026-12-07T09:09:50.016254")

    with django_capture_on_commit_callbacks(execute=True):
        again = post(registry.id, body)
    assert again.status_code == 202
    assert again.json()["duplicates"] == 1
    assert RegistryEvent.objects.count() == 1
    assert _no_tasks == [registry.id]  # a duplicate asks for nothing more


def test_distribution_blobs_mounts_deletes_and_pulls_are_told_apart(registry):
    for name in (
        "distribution_push_blob.json",
        "distribution_mount_blob.json",
        "distribution_pull_blob.json",
        "distribution_pull_manifest.json",
        "distribution_delete_manifest.json",
        "distribution_delete_tag.json",
    ):
        assert post(registry.id, fixture(name)).status_code == 202, name
    rows = list(RegistryEvent.objects.order_by("id").values_list("action", "target", "tag", "digest"))
    kinds = [(a, t, bool(tag), bool(d)) for a, t, tag, d in rows]
    assert kinds == [
        ("push", "blob", False, True),
        ("mount", "blob", False, True),
        ("pull", "blob", False, True),
        ("pull", "manifest", True, True),
        ("delete", "manifest", False, True),  # the digest deleted
        ("delete", "manifest", True, False),  # each tag it untagged
    ]


def test_a_head_and_the_scanners_reads_are_no_pulls(registry):
    response = post(registry.id, fixture("distribution_pull_head.json"))
    assert response.status_code == 202
    assert response.json() == {"received": 0, "stored": 0, "duplicates": 0, "ignored": 1}
    scanner = json.loads(fixture("distribution_pull_manifest.json"))
    scanner["events"][0]["request"]["useragent"] = "layerlens/1.0 (+https://github.com/layerlens)"
    assert post(registry.id, json.dumps(scanner).encode()).json()["ignored"] == 1
    assert not RegistryEvent.objects.exists()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("harbor_push_artifact.json", ("push", "test-webhook/debian", "latest")),
        ("harbor_pull_artifact.json", ("pull", "test-webhook/debian", "latest")),
        ("harbor_delete_artifact.json", ("delete", "test-webhook/debian", "")),
    ],
)
def test_harbor_webhooks_round_trip(registry, name, expected):
    response = post(registry.id, fixture(name), content_type="application/json")
    assert response.status_code == 202, response.content
    event = RegistryEvent.objects.get()
    assert event.source == "harbor"
    assert (event.action, event.repository, event.tag) == expected
    assert event.digest == "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
    assert event.occurred_at is not None
    # Harbor retries a delivery that got no 2xx: the same content is the same event
    assert post(registry.id, fixture(name), content_type="application/json").json()["duplicates"] == 1


def test_quay_repository_push_round_trips_with_the_secret_as_a_url_password(registry):
    # Quay's webhooks send no header of one's choosing: the secret rides in the URL's userinfo, which
    # `requests` sends as Basic credentials
    basic = "Basic " + base64.b64encode(f"quay:{SECRET}".encode()).decode()
    response = post(registry.id, fixture("quay_repo_push.json"), content_type="application/json", auth=basic)
    assert response.status_code == 202, response.content
    rows = set(RegistryEvent.objects.values_list("source", "action", "repository", "tag", "digest"))
    assert rows == {
        ("quay", "push", "mynamespace/repository", "latest", ""),
        ("quay", "push", "mynamespace/repository", "foo", ""),
    }


def test_harbor_events_of_other_kinds_are_answered_and_ignored(registry):
    body = json.dumps({"type": "SCANNING_COMPLETED", "occur_at": 1, "operator": "auto", "event_data": {}})
    response = post(registry.id, body.encode(), content_type="application/json")
    assert response.status_code == 202 and response.json()["ignored"] == 1
    assert not RegistryEvent.objects.exists()


@pytest.mark.parametrize(
    "auth",
    [
        "",
        "Bearer wrong",
        f"Token {SECRET}",
        "Basic " + base64.b64encode(b"user:wrong").decode(),
        "Basic not-base64!",
    ],
)
def test_no_or_a_wrong_secret_is_401_and_nothing_is_stored(registry, auth):
    response = post(registry.id, fixture("distribution_push_manifest.json"), auth=auth)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not RegistryEvent.objects.exists()


def test_a_registry_without_a_secret_or_unknown_is_401(registry):
    bare = Registry.objects.create(name="bare", url="http://127.0.0.1:5998")
    assert post(bare.id, fixture("distribution_push_manifest.json")).status_code == 401
    assert post(bare.id, fixture("distribution_push_manifest.json"), auth="Bearer ").status_code == 401
    assert post(999_999, fixture("distribution_push_manifest.json")).status_code == 401
    assert not RegistryEvent.objects.exists()


def test_refusals_past_the_rate_are_429_and_the_registry_is_never_throttled(registry, settings):
    settings.LAYERLENS_THROTTLE_RATES = {**settings.LAYERLENS_THROTTLE_RATES, "events_refused": "3/min"}
    for _ in range(3):
        assert post(registry.id, b"{}", auth="Bearer wrong").status_code == 401
    refused = post(registry.id, b"{}", auth="Bearer wrong")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert not RegistryEvent.objects.exists()
    for _ in range(5):  # the same address with the secret: every request taken
        assert post(registry.id, fixture("distribution_push_manifest.json")).status_code == 202


def _event(**target: object) -> bytes:
    event = json.loads(fixture("distribution_push_manifest.json"))["events"][0]
    event["target"].update(target)
    return json.dumps({"events": [event]}).encode()


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"{not json", DISTRIBUTION, "malformed JSON"),
        (b"[1, 2]", DISTRIBUTION, "no JSON object"),
        (b'{"events": {"a": 1}}', DISTRIBUTION, "events is no list"),
        (b'{"hello": "world"}', "application/json", "no distribution envelope"),
        (fixture("distribution_push_manifest.json"), "text/plain", "unknown media type"),
        (_event(repository="Team/App"), DISTRIBUTION, "no repository name"),
        (_event(repository="../etc"), DISTRIBUTION, "no repository name"),
        (_event(tag="-bad"), DISTRIBUTION, "no tag"),
        (_event(digest="sha256:xyz"), DISTRIBUTION, "no digest"),
        (b'{"events": [' + b"[" * 20 + b"]" * 20 + b"]}", DISTRIBUTION, "nested deeper"),
    ],
)
def test_malformed_bodies_are_400_and_nothing_is_stored(registry, body, content_type, reason):
    response = post(registry.id, body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert reason in response.json()["detail"]
    assert not RegistryEvent.objects.exists()


def test_one_bad_event_refuses_the_whole_request(registry):
    good = json.loads(fixture("distribution_push_manifest.json"))["events"][0]
    bad = json.loads(_event(repository="UPPER/case"))["events"][0]
    response = post(registry.id, json.dumps({"events": [good, bad]}).encode())
    assert response.status_code == 400
    assert not RegistryEvent.objects.exists()


def test_an_oversized_body_is_refused(registry, settings):
    settings.EVENTS_MAX_BODY_BYTES = 500
    body = fixture("distribution_push_manifest.json")
    assert len(body) > 500
    response = post(registry.id, body)
    assert response.status_code == 413
    assert not RegistryEvent.objects.exists()
    # past the deployment's request cap, the middleware refuses it before the view reads anything
    settings.EVENTS_MAX_BODY_BYTES = 10 * 1024 * 1024
    huge = b'{"events": []' + b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + b"}"
    assert post(registry.id, huge).status_code == 413
