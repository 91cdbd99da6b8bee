"""Registry URLs and scan targets the workers could never use are refused where they are written: a 400
(or a form or command error) naming the field, nothing created or changed, no secret repeated."""

from __future__ import annotations

import io
import logging

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from analytics.models import Registry, Repository, Scan
from tests.api.test_write_paths import _admin_registry_form

pytestmark = pytest.mark.django_db

API = "/api/v1/"
SECRET = "Hunter2-url-secret"

# (url, what the message says)
BAD_URLS = [
    (f"http://robot:{SECRET}@127.0.0.1:5998", "user:password@"),
    (f"https://robot:{SECRET}@registry.example", "user:password@"),
    ("http://127.0.0.1:5998/?x=1", "no query or fragment"),
    ("http://127.0.0.1:5998#frag", "no query or fragment"),
    ("ftp://127.0.0.1:5998", "scheme must be http or https"),
    ("http://0177.0.0.1:8100", "IPv4"),
    ("http://127.1:8100", "IPv4"),
    ("http://2130706433:8100", "IPv4"),
]


def _quiet(text: str) -> None:
    assert SECRET not in text


@pytest.mark.parametrize(("url", "complaint"), BAD_URLS)
def test_patch_of_a_registry_url_refuses_it_naming_the_field_and_keeps_the_old_one(
    world, client_staff, caplog, url, complaint
):
    caplog.set_level(logging.INFO)
    response = client_staff.patch(f"{API}registries/{world.registry.id}/", {"url": url}, format="json")
    assert response.status_code == 400, response.content
    body = response.content.decode()
    assert "url" in body and (complaint in body or "Enter a valid URL" in body)
    _quiet(body)
    _quiet(caplog.text)
    world.registry.refresh_from_db()
    assert world.registry.url == "http://127.0.0.1:5999"


@pytest.mark.parametrize(("url", "complaint"), BAD_URLS)
def test_post_of_a_registry_url_refuses_it_and_creates_nothing(db, client_staff, caplog, url, complaint):
    caplog.set_level(logging.INFO)
    response = client_staff.post(f"{API}registries/", {"url": url, "name": "bad"}, format="json")
    assert response.status_code == 400, response.content
    body = response.content.decode()
    assert "url" in body and (complaint in body or "Enter a valid URL" in body)
    _quiet(body)
    _quiet(caplog.text)
    assert not Registry.objects.exists()


@pytest.mark.parametrize(("url", "complaint"), BAD_URLS)
def test_scan_of_an_unusable_target_is_a_400_and_creates_nothing(db, client_staff, caplog, url, complaint):
    caplog.set_level(logging.INFO)
    response = client_staff.post(f"{API}scans/", {"target": url}, format="json")
    assert response.status_code == 400, response.content
    body = response.content.decode()
    assert complaint in body
    _quiet(body)
    _quiet(caplog.text)
    assert not Registry.objects.exists() and not Scan.objects.exists() and not Repository.objects.exists()


@pytest.mark.parametrize(("url", "complaint"), BAD_URLS)
def test_commands_refuse_an_unusable_url_with_a_command_error(db, url, complaint):
    with pytest.raises(CommandError) as info:
        call_command("registry", "add", url, stdout=io.StringIO())
    assert complaint in str(info.value)
    _quiet(str(info.value))
    with pytest.raises(CommandError) as info:
        call_command("scan", url, "--inline", stdout=io.StringIO(), stderr=io.StringIO())
    assert complaint in str(info.value)
    _quiet(str(info.value))
    assert not Registry.objects.exists() and not Scan.objects.exists()


@pytest.mark.parametrize(("url", "complaint"), BAD_URLS)
def test_admin_refuses_an_unusable_url_as_a_form_error(world, admin_client, url, complaint):
    change = reverse("admin:analytics_registry_change", args=[world.registry.pk])
    response = admin_client.post(change, _admin_registry_form(world.registry, url=url))
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    world.registry.refresh_from_db()
    assert world.registry.url == "http://127.0.0.1:5999"


# --- targets the SSRF policy will refuse: refused in the request, nothing created ---------------------

INTERNAL = ["http://169.254.169.254", "http://10.0.0.5:5000", "http://[64:ff9b::a9fe:a9fe]:5000"]
HINT = "LAYERLENS_ALLOWED_NETWORKS"


@pytest.mark.parametrize("url", INTERNAL)
def test_a_scan_of_an_internal_target_is_a_400_saying_how_to_allow_it(db, client_staff, url):
    response = client_staff.post(f"{API}scans/", {"target": url}, format="json")
    assert response.status_code == 400, response.content
    detail = response.json()["detail"]
    assert detail.startswith("target:") and "allow_internal" in detail and HINT in detail
    assert not Registry.objects.exists() and not Scan.objects.exists()


def test_a_name_resolving_to_an_internal_address_is_refused_too(db, client_staff, settings):
    settings.LAYERLENS_ALLOWED_NETWORKS = []
    response = client_staff.post(f"{API}scans/", {"target": "localhost:5000/team/app"}, format="json")
    assert response.status_code == 400 and "loopback" in response.json()["detail"]
    assert not Registry.objects.exists() and not Repository.objects.exists()


def test_a_registry_allowed_internal_is_scanned(db, client_staff, monkeypatch):
    monkeypatch.setattr("analytics.scans.start.scan_enqueue", lambda scan: None)
    Registry.objects.create(name="inside", url="http://10.0.0.5:5000", allow_internal=True)
    response = client_staff.post(f"{API}scans/", {"target": "http://10.0.0.5:5000"}, format="json")
    assert response.status_code == 202, response.content


@pytest.mark.parametrize("url", INTERNAL)
def test_registry_writes_refuse_an_internal_url_unless_allowed(world, client_staff, url):
    response = client_staff.post(f"{API}registries/", {"url": url, "name": "inside"}, format="json")
    assert response.status_code == 400 and HINT in response.json()["detail"]
    assert not Registry.objects.filter(name="inside").exists()
    response = client_staff.patch(f"{API}registries/{world.registry.id}/", {"url": url}, format="json")
    assert response.status_code == 400 and HINT in response.json()["detail"]
    world.registry.refresh_from_db()
    assert world.registry.url == "http://127.0.0.1:5999"
    response = client_staff.post(
        f"{API}registries/", {"url": url, "name": "inside", "allow_internal": True}, format="json"
    )
    assert response.status_code == 201, response.content
    inside = Registry.objects.get(name="inside")
    response = client_staff.patch(f"{API}registries/{inside.id}/", {"allow_internal": False}, format="json")
    assert response.status_code == 400 and HINT in response.json()["detail"]
    inside.refresh_from_db()
    assert inside.allow_internal


def test_commands_refuse_an_internal_url_unless_allowed(db):
    with pytest.raises(CommandError, match="--allow-internal"):
        call_command("registry", "add", "http://10.0.0.5:5000", stdout=io.StringIO())
    with pytest.raises(CommandError, match="--allow-internal"):
        call_command("scan", "http://10.0.0.5:5000", "--inline", stdout=io.StringIO(), stderr=io.StringIO())
    assert not Registry.objects.exists() and not Scan.objects.exists()
    call_command("registry", "add", "http://10.0.0.5:5000", "--allow-internal", stdout=io.StringIO())
    assert Registry.objects.get(url="http://10.0.0.5:5000").allow_internal


def test_admin_refuses_an_internal_url_as_a_form_error(world, admin_client):
    change = reverse("admin:analytics_registry_change", args=[world.registry.pk])
    response = admin_client.post(change, _admin_registry_form(world.registry, url="http://10.0.0.5:5000"))
    assert response.status_code == 200 and HINT in response.content.decode()
    world.registry.refresh_from_db()
    assert world.registry.url == "http://127.0.0.1:5999"
