"""No secret reaches the logs: failed and successful logins (forms, Basic auth, tokens), lockouts, a 500
with credentials on the request, and a registry saved with its password, each log line formatted as
production writes it (JSON) and as people read it (plain)."""

from __future__ import annotations

import base64
import io
import logging
from contextlib import redirect_stderr

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from rest_framework.test import APIClient

from analytics.infra.logs import JsonFormatter, PlainFormatter

pytestmark = pytest.mark.django_db
API = "/api/v1/"
WRONG = "Wr0ng-Passw0rd-guess"
REGISTRY_SECRET = "registry-Pa55-in-a-body"


def test_no_secret_in_any_log_line(world, user, staff, settings, caplog, monkeypatch):
    settings.DEBUG = False
    settings.LAYERLENS_API_BASIC_AUTH = True
    settings.AXES_FAILURE_LIMIT = 3
    caplog.set_level(logging.DEBUG)

    out = io.StringIO()
    with redirect_stderr(io.StringIO()):
        call_command("token", "create", "reader", "--name", "logs", stdout=out)
    token = out.getvalue().strip()

    def basic(username: str, password: str, address: str):
        header = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        return APIClient().get(API + "summary/", HTTP_AUTHORIZATION=header, REMOTE_ADDR=address)

    assert basic("reader", "reader-pw", "10.0.0.1").status_code == 200
    assert [basic("reader", WRONG, "10.0.0.2").status_code for _ in range(4)][-1] == 429
    assert basic("boss", WRONG, "10.0.0.3").status_code == 401
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bearer.get(API + "summary/").status_code == 200
    assert APIClient().get(API + "summary/", HTTP_AUTHORIZATION=f"Bearer {token[:-4]}beef").status_code == 401
    forms = APIClient(REMOTE_ADDR="10.0.0.4")
    for _ in range(4):
        forms.post("/ui/login/", {"username": "reader", "password": WRONG}, format="multipart")
        forms.post("/admin/login/", {"username": "boss", "password": WRONG}, format="multipart")
    staff_client = APIClient()
    staff_client.force_authenticate(staff)
    bad = {"url": "not a url", "username": "robot", "password": REGISTRY_SECRET}
    assert staff_client.post(API + "registries/", bad, format="json").status_code == 400
    monkeypatch.setattr("analytics.api.content.dedup_summary", lambda **kw: 1 / 0)
    failing = APIClient(raise_request_exception=False)
    failing.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert failing.get(API + "summary/").status_code == 500

    lines = [f.format(r) for r in caplog.records for f in (JsonFormatter(), PlainFormatter("%(message)s"))]
    assert any("Locking out" in line for line in lines) and any("ZeroDivisionError" in line for line in lines)
    for secret in (WRONG, "reader-pw", "boss-pw", token, token[len("layerlens_") :], REGISTRY_SECRET):
        assert not [line for line in lines if secret in line], secret
    assert not [line for line in lines if django_settings.SECRET_KEY in line]
    assert not [line for line in lines if world.registry.password_encrypted in line]


EVENTS_SECRET = "events-Secret-in-a-body-0123"


def test_no_events_secret_in_any_log_line(world, staff, admin_user, settings, caplog, monkeypatch):
    """The events secret set, refused and failing to save through the API, the admin and the command,
    and printed by events-config: in no log line."""
    from django.test import Client

    settings.DEBUG = False
    caplog.set_level(logging.DEBUG)
    api = APIClient(raise_request_exception=False)
    api.force_authenticate(staff)
    detail = f"{API}registries/{world.registry.id}/"
    assert api.patch(detail, {"events_secret": EVENTS_SECRET}, format="json").status_code == 200
    assert api.patch(detail, {"events_secret": EVENTS_SECRET + " x"}, format="json").status_code == 400
    bad = {"url": "not a url", "events_secret": EVENTS_SECRET}
    assert api.post(API + "registries/", bad, format="json").status_code == 400
    admin = Client(raise_request_exception=False)
    admin.force_login(admin_user)
    change = f"/admin/analytics/registry/{world.registry.id}/change/"
    form = {
        "name": "r",
        "url": world.registry.url,
        "username": "",
        "ca_bundle": "",
        "events_secret": EVENTS_SECRET,
    }
    assert admin.post(change, form).status_code == 302
    with redirect_stderr(io.StringIO()):
        call_command("registry", "events-config", str(world.registry.id), stdout=io.StringIO())
        monkeypatch.setattr("sys.stdin", io.StringIO(EVENTS_SECRET + "\n"))
        call_command("registry", "events-secret", str(world.registry.id), "--stdin", stdout=io.StringIO())

    def fail(**kwargs):
        raise RuntimeError("saving failed")

    monkeypatch.setattr("analytics.api.serializers.registries.registry_update", fail)
    monkeypatch.setattr("analytics.admin.registries.registry_update", fail)
    assert api.patch(detail, {"events_secret": EVENTS_SECRET}, format="json").status_code == 500
    assert admin.post(change, form).status_code == 500

    lines = [f.format(r) for r in caplog.records for f in (JsonFormatter(), PlainFormatter("%(message)s"))]
    assert sum("saving failed" in line for line in lines) >= 2  # both failures were logged
    encrypted = world.registry.__class__.objects.get(id=world.registry.id).events_secret_encrypted
    assert not [line for line in lines if EVENTS_SECRET in line or encrypted in line]
