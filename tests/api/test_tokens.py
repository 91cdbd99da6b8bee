"""API tokens: several per user with a name, stored as digests (shown once), revocable, made by the
command or the admin, and cheap to check (no password hash per request)."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from analytics.models import ApiToken

pytestmark = pytest.mark.django_db
API = "/api/v1/"


def token_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stderr(err):
        call_command("token", *args, stdout=out)
    return out.getvalue(), err.getvalue()


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_created_token_is_printed_once_and_only_its_digest_is_stored(world, user):
    out, err = token_command("create", "reader", "--name", "ci")
    token = out.strip()
    assert token.startswith("layerlens_") and len(token) == len("layerlens_") + 64
    assert "shown this once" in err and token not in err
    row = ApiToken.objects.get(user=user, name="ci")
    assert row.expiry is None and row.digest != token and token.startswith(row.token_key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM analytics_apitoken")
        assert not any(token in str(v) for r in cursor.fetchall() for v in r)
    listed, _ = token_command("list")
    assert "reader\tci\tlayerlens_" in listed and token not in listed and row.digest not in listed
    assert bearer(token).get(API + "summary/").status_code == 200


def test_a_user_has_several_named_tokens_each_revoked_on_its_own(world, user):
    first = token_command("create", "reader", "--name", "laptop")[0].strip()
    second = token_command("create", "reader", "--name", "cron")[0].strip()
    with pytest.raises(CommandError, match="already has a token named 'cron'"):
        token_command("create", "reader", "--name", "cron")
    assert ApiToken.objects.filter(user=user).count() == 2
    out, _ = token_command("revoke", "reader", "--name", "laptop")
    assert out.startswith("revoked 1")
    refused = bearer(first).get(API + "summary/")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert bearer(second).get(API + "summary/").status_code == 200
    token_command("revoke", "reader", "--all")
    assert bearer(second).get(API + "summary/").status_code == 401
    with pytest.raises(CommandError, match="no token named"):
        token_command("revoke", "reader", "--name", "laptop")
    with pytest.raises(CommandError, match="no user"):
        token_command("create", "nobody", "--name", "x")


def test_an_expired_token_is_refused(world, user):
    token = token_command("create", "reader", "--name", "short", "--expires-days", "1")[0].strip()
    assert bearer(token).get(API + "summary/").status_code == 200
    ApiToken.objects.filter(name="short").update(expiry=timezone.now() - timedelta(seconds=1))
    assert bearer(token).get(API + "summary/").status_code == 401


def test_token_requests_hash_no_password(world, user, monkeypatch):
    token = token_command("create", "reader", "--name", "fast")[0].strip()
    hashed = []
    original = PBKDF2PasswordHasher.verify
    monkeypatch.setattr(
        PBKDF2PasswordHasher, "verify", lambda self, *a: hashed.append(1) or original(self, *a)
    )
    client = bearer(token)
    assert [client.get(API + "summary/").status_code for _ in range(5)] == [200] * 5
    assert hashed == []


def test_wrong_missing_or_garbled_credentials_are_401_with_a_challenge(world, anon_client):
    for client in (anon_client, bearer("layerlens_" + "0" * 64), bearer("nonsense")):
        response = client.get(API + "summary/")
        assert response.status_code == 401 and response["WWW-Authenticate"] == 'Bearer realm="api"'
    garbled = APIClient().get(API + "summary/", HTTP_AUTHORIZATION="Bearer caf\xe9")
    assert garbled.status_code == 401


def test_admin_makes_a_token_shows_it_once_and_deleting_revokes_it(world, user, admin_client):
    response = admin_client.post(
        reverse("admin:analytics_apitoken_add"), {"user": user.id, "name": "from-admin", "expires_days": ""}
    )
    assert response.status_code == 200, response.content[:500]
    page = response.content.decode()
    row = ApiToken.objects.get(name="from-admin")
    token = page.split('<code id="api-token"', 1)[1].split(">", 1)[1].split("<", 1)[0]
    assert token.startswith(row.token_key) and bearer(token).get(API + "summary/").status_code == 200
    listing = admin_client.get(reverse("admin:analytics_apitoken_changelist")).content.decode()
    assert "from-admin" in listing and token not in listing
    detail = admin_client.get(reverse("admin:analytics_apitoken_change", args=[row.pk])).content.decode()
    assert token not in detail
    duplicate = admin_client.post(
        reverse("admin:analytics_apitoken_add"), {"user": user.id, "name": "from-admin"}
    )
    assert duplicate.status_code == 200 and ApiToken.objects.filter(name="from-admin").count() == 1
    admin_client.post(
        reverse("admin:analytics_apitoken_changelist"),
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert not ApiToken.objects.exists() and bearer(token).get(API + "summary/").status_code == 401
