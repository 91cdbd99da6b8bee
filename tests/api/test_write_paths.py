"""Every write of a registry or repository goes through `analytics.registries`: the API, the admin and
the commands validate a schedule the same way, start it the same way and keep secrets the same way."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from analytics.models import Engine, Registry, Repository
from analytics.registries import registry_upsert

pytestmark = pytest.mark.django_db

API = "/api/v1/"
NO_INTERVAL = "needs a scan interval of at least 60 seconds"


def _admin_registry_form(registry: Registry, **changes) -> dict:
    data = {
        "name": registry.name,
        "url": registry.url,
        "username": registry.username,
        "ca_bundle": registry.ca_bundle,
        "password": "",
        "scan_interval": "",
        "next_scan_at_0": "",
        "next_scan_at_1": "",
        "max_concurrency": "",
        "max_requests_per_second": "",
    }
    return {**data, **changes}


# --- the API ---------------------------------------------------------------------------------------


def test_patch_tracking_a_registry_without_an_interval_is_a_400_and_changes_nothing(world, client_staff):
    url = f"{API}registries/{world.registry.id}/"
    response = client_staff.patch(url, {"tracked": True}, format="json")
    assert response.status_code == 400 and NO_INTERVAL in response.json()["detail"]
    response = client_staff.patch(url, {"tracked": True, "scan_interval": 30}, format="json")
    assert response.status_code == 400 and NO_INTERVAL in response.json()["detail"]
    world.registry.refresh_from_db()
    assert (world.registry.tracked, world.registry.scan_interval, world.registry.next_scan_at) == (
        False,
        None,
        None,
    )


def test_patch_tracking_a_registry_starts_its_schedule_now(world, client_staff):
    before = timezone.now()
    url = f"{API}registries/{world.registry.id}/"
    response = client_staff.patch(url, {"tracked": True, "scan_interval": 3600}, format="json")
    assert response.status_code == 200, response.content
    world.registry.refresh_from_db()
    assert world.registry.tracked and world.registry.scan_interval == timedelta(hours=1)
    assert before <= world.registry.next_scan_at <= timezone.now()
    # dropping the interval of a tracked registry would leave it never scanned: refused
    response = client_staff.patch(url, {"scan_interval": None}, format="json")
    assert response.status_code == 400 and NO_INTERVAL in response.json()["detail"]
    response = client_staff.patch(url, {"tracked": False}, format="json")
    assert response.status_code == 200
    world.registry.refresh_from_db()
    assert not world.registry.tracked and world.registry.next_scan_at is None


def test_patch_tracking_a_repository_without_an_interval_is_a_400(world, client_staff):
    url = f"{API}repositories/{world.app.id}/"
    response = client_staff.patch(url, {"tracked": True}, format="json")
    assert response.status_code == 400 and NO_INTERVAL in response.json()["detail"]
    world.app.refresh_from_db()
    assert not world.app.tracked
    response = client_staff.patch(url, {"tracked": True, "scan_interval": 120}, format="json")
    assert response.status_code == 200
    world.app.refresh_from_db()
    assert world.app.tracked and world.app.next_scan_at is not None


def test_patch_password_replaces_an_identity_token(world, client_staff):
    config = json.dumps({"auths": {"127.0.0.1:5999": {"identitytoken": "idtok-1"}}})
    registry = registry_upsert(url=world.registry.url, docker_config=config)
    assert registry.identity_token and registry.get_password() == "idtok-1"
    url = f"{API}registries/{registry.id}/"
    assert client_staff.patch(url, {"password": "pw-2"}, format="json").status_code == 200
    registry.refresh_from_db()
    assert not registry.identity_token and registry.get_password() == "pw-2"


def test_patch_url_is_normalised_and_a_taken_url_is_a_409(world, client_staff):
    other = registry_upsert(url="http://127.0.0.1:5998")
    url = f"{API}registries/{world.registry.id}/"
    response = client_staff.patch(url, {"url": "http://127.0.0.1:5997/"}, format="json")
    assert response.status_code == 200 and response.json()["url"] == "http://127.0.0.1:5997"
    response = client_staff.patch(url, {"url": other.url + "/"}, format="json")
    assert response.status_code == 409 and "exists already" in response.json()["detail"]


# --- the admin -------------------------------------------------------------------------------------


def test_admin_new_password_drops_the_identity_token(world, admin_client):
    config = json.dumps({"auths": {"127.0.0.1:5999": {"identitytoken": "idtok-1"}}})
    registry = registry_upsert(url=world.registry.url, docker_config=config)
    change = reverse("admin:analytics_registry_change", args=[registry.pk])
    response = admin_client.post(change, _admin_registry_form(registry, password="new-pw"))
    assert response.status_code == 302, response.content.decode()[:2000]
    registry.refresh_from_db()
    assert not registry.identity_token and registry.get_password() == "new-pw"


def test_admin_normalises_the_url_and_refuses_a_repository_url(world, admin_client):
    change = reverse("admin:analytics_registry_change", args=[world.registry.pk])
    response = admin_client.post(change, _admin_registry_form(world.registry, url="http://127.0.0.1:5996/"))
    assert response.status_code == 302
    world.registry.refresh_from_db()
    assert world.registry.url == "http://127.0.0.1:5996"
    response = admin_client.post(
        change, _admin_registry_form(world.registry, url="http://127.0.0.1:5996/team/app")
    )
    assert response.status_code == 200 and "names a repository" in response.content.decode()
    world.registry.refresh_from_db()
    assert world.registry.url == "http://127.0.0.1:5996"


def test_admin_tracking_without_an_interval_is_a_form_error(world, admin_client):
    change = reverse("admin:analytics_registry_change", args=[world.registry.pk])
    response = admin_client.post(change, _admin_registry_form(world.registry, tracked="on"))
    assert response.status_code == 200 and NO_INTERVAL in response.content.decode()
    world.registry.refresh_from_db()
    assert not world.registry.tracked
    response = admin_client.post(
        change, _admin_registry_form(world.registry, tracked="on", scan_interval="01:00:00")
    )
    assert response.status_code == 302
    world.registry.refresh_from_db()
    assert world.registry.tracked and world.registry.next_scan_at is not None

    repo_change = reverse("admin:analytics_repository_change", args=[world.web.pk])
    empty_time = {"next_scan_at_0": "", "next_scan_at_1": ""}
    response = admin_client.post(repo_change, {"tracked": "on", "scan_interval": "", **empty_time})
    assert response.status_code == 200 and NO_INTERVAL in response.content.decode()
    response = admin_client.post(repo_change, {"tracked": "on", "scan_interval": "00:10:00", **empty_time})
    assert response.status_code == 302
    repository = Repository.objects.get(pk=world.web.pk)
    assert repository.tracked and repository.next_scan_at is not None


def test_admin_adds_a_registry_through_the_service(db, admin_client):
    response = admin_client.post(
        reverse("admin:analytics_registry_add"),
        {
            **_admin_registry_form(Registry(name="", url="")),
            "name": "added",
            "url": "http://127.0.0.1:5995/",
            "password": "pw",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    registry = Registry.objects.get(name="added")
    assert registry.url == "http://127.0.0.1:5995" and registry.get_password() == "pw"


# --- the commands -----------------------------------------------------------------------------------


def test_registry_add_track_validates_and_starts_the_schedule(db):
    with pytest.raises(CommandError, match=NO_INTERVAL):
        call_command("registry", "add", "http://127.0.0.1:5994", "--track", "--interval", "10")
    assert not Registry.objects.filter(url="http://127.0.0.1:5994").exists()
    call_command(
        "registry", "add", "http://127.0.0.1:5994", "--track", "--interval", "600", stdout=io.StringIO()
    )
    registry = Registry.objects.get(url="http://127.0.0.1:5994")
    assert registry.tracked and registry.scan_interval == timedelta(minutes=10)
    assert registry.next_scan_at is not None


# --- engines ----------------------------------------------------------------------------------------


def test_patch_of_an_engine_endpoint_moves_that_engine_instead_of_adding_one(db, client_staff):
    made = client_staff.post(f"{API}engines/", {"endpoint": "unix:///run/one.sock"}, format="json")
    assert made.status_code == 201, made.content
    engine_id = made.json()["id"]
    moved = client_staff.patch(
        f"{API}engines/{engine_id}/", {"endpoint": "unix:///run/two.sock/"}, format="json"
    )
    assert moved.status_code == 200 and moved.json()["endpoint"] == "unix:///run/two.sock"
    assert list(Engine.objects.values_list("id", "endpoint")) == [(engine_id, "unix:///run/two.sock")]
    client_staff.post(f"{API}engines/", {"endpoint": "unix:///run/three.sock"}, format="json")
    taken = client_staff.patch(
        f"{API}engines/{engine_id}/", {"endpoint": "unix:///run/three.sock"}, format="json"
    )
    assert taken.status_code in (400, 409)
    assert Engine.objects.get(id=engine_id).endpoint == "unix:///run/two.sock"


def test_admin_engine_form_goes_through_the_service(db, admin_client):
    add = reverse("admin:analytics_engine_add")
    form = {
        "name": "",
        "endpoint": "/run/docker-admin.sock",
        "tls_ca": "",
        "tls_cert": "",
        "tls_key": "-----BEGIN PRIVATE KEY-----x",
        "scan_interval": "",
    }
    response = admin_client.post(add, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    engine = Engine.objects.get()
    assert engine.endpoint == "unix:///run/docker-admin.sock" and engine.name == engine.endpoint
    assert engine.get_tls_key() == "-----BEGIN PRIVATE KEY-----x"
    assert "BEGIN PRIVATE KEY" not in engine.tls_key_encrypted
    change = reverse("admin:analytics_engine_change", args=[engine.pk])
    page = admin_client.get(change).content.decode()
    assert "BEGIN PRIVATE KEY" not in page
    response = admin_client.post(change, {**form, "tls_key": "", "tracked": "on"})
    assert response.status_code == 200 and "needs a scan interval" in response.content.decode()
    response = admin_client.post(
        change, {**form, "tls_key": "", "tracked": "on", "scan_interval": "01:00:00"}
    )
    assert response.status_code == 302
    engine.refresh_from_db()
    assert engine.tracked and engine.next_scan_at is not None
    assert engine.get_tls_key() == "-----BEGIN PRIVATE KEY-----x"  # an empty field keeps it
    response = admin_client.post(change, {**form, "tls_key": "", "endpoint": "tcp://10.0.0.5:2375"})
    assert response.status_code == 200 and "would refuse" in response.content.decode()
    engine.refresh_from_db()
    assert engine.endpoint == "unix:///run/docker-admin.sock"
