"""The events secret in the admin: a write-only field like the password's. Never in a page (change form,
list, a refused form), kept when left empty, cleared by its box."""

from __future__ import annotations

import pytest
from django.urls import reverse

from analytics.models import Registry

pytestmark = pytest.mark.django_db
SECRET = "admin-Events-Secret-0123456789"


def _form(registry: Registry, **changes: str) -> dict[str, str]:
    return {
        "name": registry.name,
        "url": registry.url,
        "username": registry.username,
        "ca_bundle": "",
        "password": "",
        **changes,
    }


def _pages(client, registry: Registry) -> list[str]:
    change = client.get(reverse("admin:analytics_registry_change", args=[registry.pk]))
    listing = client.get(reverse("admin:analytics_registry_changelist"))
    assert change.status_code == listing.status_code == 200
    return [change.content.decode(), listing.content.decode()]


def test_the_events_secret_is_write_only_in_the_admin(world, admin_client):
    url = reverse("admin:analytics_registry_change", args=[world.registry.pk])
    assert admin_client.post(url, _form(world.registry, events_secret=SECRET)).status_code == 302
    registry = Registry.objects.get(pk=world.registry.pk)
    assert registry.get_events_secret() == SECRET and registry.followed
    for page in _pages(admin_client, registry):
        assert SECRET not in page and registry.events_secret_encrypted not in page
    change = _pages(admin_client, registry)[0]
    assert 'name="events_secret"' in change and 'name="clear_events_secret"' in change
    assert "followed by events" in _pages(admin_client, registry)[1].lower()

    # saved again with the field empty: kept
    assert admin_client.post(url, _form(registry, name="renamed")).status_code == 302
    assert Registry.objects.get(pk=registry.pk).get_events_secret() == SECRET
    # cleared by its box
    assert admin_client.post(url, _form(registry, clear_events_secret="on")).status_code == 302
    assert Registry.objects.get(pk=registry.pk).events_secret_encrypted == ""


def test_a_refused_form_shows_neither_the_secret_nor_writes_it(world, admin_client):
    url = reverse("admin:analytics_registry_change", args=[world.registry.pk])
    for changes in (
        {"events_secret": "too-short"},  # the secret itself refused, named, not repeated
        {"events_secret": SECRET, "tracked": "on", "scan_interval": "00:00:05"},  # another field refused
    ):
        response = admin_client.post(url, _form(world.registry, **changes))
        page = response.content.decode()
        assert response.status_code == 200 and "errornote" in page, changes
        assert changes["events_secret"] not in page
    assert "an events secret is 16 to 256 characters" in admin_client.post(
        url, _form(world.registry, events_secret="too-short")
    ).content.decode().replace("&#x27;", "'")
    assert Registry.objects.get(pk=world.registry.pk).events_secret_encrypted == ""
