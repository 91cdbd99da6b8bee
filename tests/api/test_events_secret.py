"""A registry's events secret through the API: staff write it, nobody reads it back (JSON, CSV, the
browsable API, the schema), the answer says only whether the registry is `followed`; and the registry's
events inbox as the API shows it, from rows made directly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.models import Registry, RegistryEvent

pytestmark = pytest.mark.django_db
API = "/api/v1/"
SECRET = "evt-Secret-0123456789abcdef"
OTHER = "another-Secret_0123456789~+/=="


def _texts(client, registry_id: int) -> dict[str, str]:
    """Every way a reader sees registries: JSON, CSV (page and whole list), browsable HTML, OPTIONS."""
    detail = f"{API}registries/{registry_id}/"
    answers = {
        "list": client.get(API + "registries/"),
        "detail": client.get(detail),
        "csv list": client.get(API + "registries/", {"format": "csv"}),
        "csv page": client.get(API + "registries/", {"format": "csv", "page": 1}),
        "csv detail": client.get(detail, {"format": "csv"}),
        "html list": client.get(API + "registries/", HTTP_ACCEPT="text/html"),
        "html detail": client.get(detail, HTTP_ACCEPT="text/html"),
        "options": client.options(detail),
    }
    out = {}
    for name, response in answers.items():
        assert response.status_code == 200, (name, response.status_code)
        body = response.getvalue() if response.streaming else response.content
        out[name] = body.decode()
    return out


def test_staff_set_the_events_secret_and_no_answer_ever_contains_it(world, client_staff, client_user):
    url = f"{API}registries/{world.registry.id}/"
    response = client_staff.patch(url, {"events_secret": SECRET}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["followed"] is True and "events_secret" not in response.json()
    assert SECRET not in response.content.decode()
    registry = Registry.objects.get(id=world.registry.id)
    assert registry.get_events_secret() == SECRET and SECRET not in registry.events_secret_encrypted

    for client in (client_staff, client_user):
        for name, text in _texts(client, registry.id).items():
            assert SECRET not in text, name
            assert registry.events_secret_encrypted not in text, name
            assert "events_secret_encrypted" not in text, name
    assert '"followed":true' in client_user.get(url).content.decode().replace(" ", "")
    schema = client_staff.get("/api/schema/").content.decode()
    assert "events_secret_encrypted" not in schema and "events_secret" in schema

    # left out: kept; another: replaced; empty: cleared, not followed
    assert client_staff.patch(url, {"name": "renamed"}, format="json").json()["followed"] is True
    assert Registry.objects.get(id=registry.id).get_events_secret() == SECRET
    assert client_staff.patch(url, {"events_secret": OTHER}, format="json").status_code == 200
    assert Registry.objects.get(id=registry.id).get_events_secret() == OTHER
    cleared = client_staff.patch(url, {"events_secret": ""}, format="json")
    assert cleared.status_code == 200 and cleared.json()["followed"] is False
    assert Registry.objects.get(id=registry.id).events_secret_encrypted == ""


def test_a_registry_created_with_a_secret_is_followed(db, client_staff):
    response = client_staff.post(
        API + "registries/", {"url": "http://127.0.0.1:5996", "events_secret": SECRET}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (
        body["followed"] is True and body["events_pending"] == 0 and SECRET not in response.content.decode()
    )
    assert body["events_oldest_pending_at"] is None and body["last_event_at"] is None
    assert Registry.objects.get(id=body["id"]).get_events_secret() == SECRET


def test_only_staff_write_it(world, client_user, anon_client):
    url = f"{API}registries/{world.registry.id}/"
    assert client_user.patch(url, {"events_secret": SECRET}, format="json").status_code == 403
    assert anon_client.patch(url, {"events_secret": SECRET}, format="json").status_code in (401, 403)
    assert client_user.patch(url, {"events_secret": ""}, format="json").status_code == 403
    assert Registry.objects.get(id=world.registry.id).events_secret_encrypted == ""


@pytest.mark.parametrize(
    "bad",
    [
        "short-secret",  # under 16 characters
        "has a space in it, 0123456789",
        "line\nbreak-0123456789abcdef",
        'quote"d-0123456789abcdef',
        "x" * 257,
        "=leading-padding-0123456789",
    ],
)
def test_an_unusable_secret_is_a_400_that_does_not_repeat_it_and_writes_nothing(world, client_staff, bad):
    before = Registry.objects.get(id=world.registry.id)
    response = client_staff.patch(
        f"{API}registries/{world.registry.id}/", {"events_secret": bad, "name": "renamed"}, format="json"
    )
    assert response.status_code == 400 and "events_secret" in response.content.decode()
    assert bad not in response.content.decode()
    after = Registry.objects.get(id=world.registry.id)
    assert (after.name, after.events_secret_encrypted) == (before.name, "")
    created = client_staff.post(
        API + "registries/", {"url": "http://127.0.0.1:5996", "events_secret": bad}, format="json"
    )
    assert created.status_code == 400 and not Registry.objects.filter(url="http://127.0.0.1:5996").exists()


def test_a_refused_write_in_the_browsable_api_does_not_show_the_secrets_it_carried(world, client_staff):
    """The browsable API answers a refused form with the form again, filled with what was sent."""
    sent = {
        "url": "not a url",
        "events_secret": SECRET,
        "password": "pw-Never-Shown-0123",
        "scan_interval": "soon",
    }
    for method, path in (("post", "registries/"), ("put", f"registries/{world.registry.id}/")):
        response = getattr(client_staff, method)(API + path, sent, HTTP_ACCEPT="text/html")
        text = response.content.decode()
        assert response.status_code == 400 and 'name="events_secret"' in text, method
        assert SECRET not in text and "pw-Never-Shown-0123" not in text, method
    assert Registry.objects.count() == 1 and Registry.objects.get().events_secret_encrypted == ""


def test_the_inbox_per_registry_counts_pending_events_only(world, client_user):
    now = timezone.now()

    def event(key: str, *, age: float, applied: bool) -> None:
        RegistryEvent.objects.create(
            registry=world.registry,
            source="distribution",
            key=key,
            action="push",
            repository="team/app",
            tag="1.0",
            received_at=now - timedelta(seconds=age),
            applied_at=now if applied else None,
        )

    body = client_user.get(f"{API}registries/{world.registry.id}/").json()
    assert (body["events_pending"], body["events_oldest_pending_at"], body["followed"]) == (0, None, False)
    event("old-applied", age=900, applied=True)
    event("pending-1", age=120, applied=False)
    event("pending-2", age=30, applied=False)
    other = Registry.objects.create(name="other", url="http://127.0.0.1:5995")
    RegistryEvent.objects.create(
        registry=other, source="harbor", key="x", action="push", repository="r", received_at=now
    )
    body = client_user.get(f"{API}registries/{world.registry.id}/").json()
    assert body["events_pending"] == 2
    oldest = RegistryEvent.objects.get(key="pending-1").received_at
    assert body["events_oldest_pending_at"] == oldest.isoformat().replace("+00:00", "Z")
    assert 120 <= body["events_oldest_pending_age_seconds"] < 180
    listed = {r["name"]: r for r in client_user.get(API + "registries/").json()["results"]}
    assert listed[world.registry.name]["events_pending"] == 2 and listed["other"]["events_pending"] == 1
    csv = client_user.get(API + "registries/", {"format": "csv"}).getvalue().decode().splitlines()
    header = csv[0].split(",")
    assert {"followed", "last_event_at", "last_scanned_at", "events_pending"} <= set(header)
    assert "events_secret" not in header
