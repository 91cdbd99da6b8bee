"""The texts a caller may have stored, and their caps: PEM material 64 KiB, a Docker config 64 KiB, a
secret 16 KiB, names, usernames, URLs and endpoints their column's length. Past a cap it is a 400 naming
the field, on every write path (API, admin, commands), and nothing is stored; a name derived from a long
URL or endpoint is refused the same way instead of failing in the database."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from analytics.models import Engine, Registry, Scan
from analytics.registries import MAX_DOCKER_CONFIG_CHARS, MAX_PEM_CHARS, MAX_SECRET_CHARS

pytestmark = pytest.mark.django_db

API = "/api/v1/"
# no trailing newline: forms and serializers strip it, and the length is counted after
PEM = "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----"


def _pem(chars: int) -> str:
    return PEM.format("A" * (chars - len(PEM.format(""))))


@pytest.mark.parametrize(
    ("field", "most"),
    [
        ("ca_bundle", MAX_PEM_CHARS),
        ("docker_config", MAX_DOCKER_CONFIG_CHARS),
        ("password", MAX_SECRET_CHARS),
        ("name", 200),
        ("username", 200),
    ],
)
def test_a_registry_text_past_its_cap_is_a_400_naming_it(field, most, world, client_staff):
    value = _pem(most + 1) if field == "ca_bundle" else "x" * (most + 1)
    response = client_staff.post(
        API + "registries/", {"url": "http://127.0.0.1:5301", field: value}, format="json"
    )
    assert response.status_code == 400 and field in response.json(), response.content[:300]
    assert not Registry.objects.filter(url="http://127.0.0.1:5301").exists()
    response = client_staff.patch(f"{API}registries/{world.registry.id}/", {field: value}, format="json")
    assert response.status_code == 400 and field in response.json()


def test_a_ca_bundle_at_the_cap_is_stored_and_returned(world, client_staff):
    bundle = _pem(MAX_PEM_CHARS)
    response = client_staff.patch(
        f"{API}registries/{world.registry.id}/", {"ca_bundle": bundle}, format="json"
    )
    assert response.status_code == 200 and response.json()["ca_bundle"] == bundle


@pytest.mark.parametrize(
    ("field", "most"), [("tls_ca", MAX_PEM_CHARS), ("tls_cert", MAX_PEM_CHARS), ("tls_key", MAX_SECRET_CHARS)]
)
def test_engine_tls_material_past_its_cap_is_a_400_naming_it(field, most, db, client_staff):
    body = {"endpoint": "tcp://127.0.0.1:2376", field: _pem(most + 1)}
    response = client_staff.post(API + "engines/", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not Engine.objects.exists()


def test_an_engine_named_after_a_long_endpoint_is_a_400_naming_the_name(db, client_staff):
    endpoint = "tcp://" + "h" * 300 + ":2376"
    response = client_staff.post(API + "engines/", {"endpoint": endpoint}, format="json")
    assert response.status_code == 400 and "name is at most 200" in response.json()["detail"]
    response = client_staff.post(API + "engines/", {"endpoint": endpoint, "name": "far"}, format="json")
    assert response.status_code == 201


def test_a_scan_target_too_long_for_its_rows_is_a_400(db, client_staff, sent_tasks):
    response = client_staff.post(API + "scans/", {"target": "x" * 200_000}, format="json")
    assert response.status_code == 400 and "target" in response.json()
    # a host of 230 characters is a valid DNS name, and longer than a registry's name may be
    response = client_staff.post(API + "scans/", {"target": "h" * 230 + ":5000/app"}, format="json")
    assert response.status_code == 400 and "name is at most 200" in response.json()["detail"]
    assert not Registry.objects.exists() and not Scan.objects.exists() and not sent_tasks


def test_the_command_refuses_a_ca_file_past_the_cap(db, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(_pem(MAX_PEM_CHARS + 1))
    with pytest.raises(CommandError, match="ca_bundle is at most"):
        call_command("registry", "add", "http://127.0.0.1:5302", "--ca-file", str(ca), stdout=io.StringIO())
    assert not Registry.objects.exists()


def test_the_admin_form_refuses_a_ca_bundle_past_the_cap(world, admin_client):
    change = reverse("admin:analytics_registry_change", args=[world.registry.pk])
    form = {
        "name": world.registry.name,
        "url": world.registry.url,
        "username": world.registry.username,
        "ca_bundle": _pem(MAX_PEM_CHARS + 1),
        "password": "",
        "scan_interval": "",
        "next_scan_at_0": "",
        "next_scan_at_1": "",
        "max_concurrency": "",
        "max_requests_per_second": "",
    }
    response = admin_client.post(change, form)
    assert response.status_code == 200 and "ca_bundle is at most" in response.content.decode()
    world.registry.refresh_from_db()
    assert world.registry.ca_bundle == ""
