"""Credentials and the internal-address opt-in through the commands and the API."""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.exceptions import PermissionDenied
from rest_framework.test import APIRequestFactory

from analytics.api.serializers.registries import RegistrySerializer
from analytics.models import Registry
from analytics.scans.clients import registry_client
from analytics.scans.start import scan_request_resolve

pytestmark = pytest.mark.django_db
SECRET = "cfg-Pa55-word"


def docker_config(tmp_path, doc: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_registry_add_from_docker_config_stores_user_and_password_encrypted(tmp_path):
    auth = base64.b64encode(f"robot:{SECRET}".encode()).decode()
    path = docker_config(tmp_path, {"auths": {"127.0.0.1:5990": {"auth": auth}}})
    out = io.StringIO()
    call_command("registry", "add", "http://127.0.0.1:5990", "--from-docker-config", path, stdout=out)
    registry = Registry.objects.get(url="http://127.0.0.1:5990")
    assert registry.username == "robot" and registry.get_password() == SECRET and not registry.identity_token
    assert SECRET not in out.getvalue() and SECRET not in registry.password_encrypted
    assert not registry.allow_internal  # loopback or not, only --allow-internal allows it


def test_identity_token_is_stored_as_the_secret_and_used_as_a_refresh_token(tmp_path):
    path = docker_config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"identitytoken": "idtok-123"}}})
    call_command(
        "registry", "add", "https://registry-1.docker.io", "--from-docker-config", path, stdout=io.StringIO()
    )
    registry = Registry.objects.get(url="https://registry-1.docker.io")
    assert registry.identity_token and registry.get_password() == "idtok-123" and registry.username == ""
    client = registry_client(registry)
    creds = client._session.auth.credentials
    assert creds.identity_token == "idtok-123" and creds.password is None


def test_credential_helpers_are_reported_never_run(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: ran.append(a))
    monkeypatch.setattr("subprocess.run", lambda *a, **k: ran.append(a))
    path = docker_config(
        tmp_path, {"auths": {}, "credHelpers": {"127.0.0.1:5991": "evil"}, "credsStore": "x"}
    )
    with pytest.raises(CommandError, match="docker-credential-evil.*does not run"):
        call_command("registry", "add", "http://127.0.0.1:5991", "--from-docker-config", path)
    assert ran == []


def test_registry_add_allow_internal_and_scan_allow_internal_are_saved(monkeypatch):
    call_command("registry", "add", "http://127.0.0.1:5992", "--allow-internal", stdout=io.StringIO())
    assert Registry.objects.get(url="http://127.0.0.1:5992").allow_internal
    scan_request_resolve(target="127.0.0.1:5993/team/app", allow_internal=True)
    assert Registry.objects.get(url="http://127.0.0.1:5993").allow_internal


def test_api_docker_config_is_write_only_and_staff_may_allow_internal(client_staff):
    auth = base64.b64encode(f"robot:{SECRET}".encode()).decode()
    body = {
        "url": "http://10.1.2.3:5000",
        "docker_config": json.dumps({"auths": {"10.1.2.3:5000": {"auth": auth}}}),
        "allow_internal": True,
    }
    resp = client_staff.post("/api/v1/registries/", body, format="json")
    assert resp.status_code == 201, resp.content
    text = resp.content.decode()
    assert SECRET not in text and "docker_config" not in text and resp.json()["allow_internal"] is True
    registry = Registry.objects.get(url="http://10.1.2.3:5000")
    assert registry.username == "robot" and registry.get_password() == SECRET
    assert SECRET not in client_staff.get(f"/api/v1/registries/{registry.id}/").content.decode()

    bad = client_staff.patch(
        f"/api/v1/registries/{registry.id}/", {"docker_config": '{"credsStore": "desktop"}'}, format="json"
    )
    assert bad.status_code == 400 and "does not run" in bad.content.decode()


def test_allow_internal_is_refused_to_non_staff_by_the_serializer_itself(user):
    # Registry writes are staff-only already; the field is guarded again where it is read.
    request = APIRequestFactory().post("/api/v1/registries/")
    request.user = user
    form = RegistrySerializer(
        data={"url": "http://10.9.9.9:5000", "allow_internal": True}, context={"request": request}
    )
    with pytest.raises(PermissionDenied, match="only staff"):
        form.is_valid()
    assert not Registry.objects.filter(url="http://10.9.9.9:5000").exists()
