"""The admin reads no secret column one prefix at a time: lookups that reach a registry's password, an
engine's TLS key, a user's password hash or a token's digest are refused (400), on every admin of the
site and through relations, and no admin searches, filters or orders by them."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from analytics.admin.base import SECRET_FIELDS, SecretSafeAdmin, lookup_reaches_secret
from analytics.models import ApiToken, Engine, Registry
from analytics.tokens import token_create

pytestmark = pytest.mark.django_db


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def test_secret_lookups_are_refused(world, admin_client, admin_user):
    engine = Engine.objects.create(name="e", endpoint="tcp://127.0.0.1:2376")
    engine.set_tls_key("-----BEGIN PRIVATE KEY-----")
    engine.save()
    token_create(user=admin_user, name="t")
    prefix = world.registry.password_encrypted[:1]
    refused = [
        (Registry, {"password_encrypted__startswith": prefix}),
        (Registry, {"password_encrypted": world.registry.password_encrypted}),
        (Registry, {"password_encrypted__isnull": "False"}),
        (Engine, {"tls_key_encrypted__startswith": engine.tls_key_encrypted[:1]}),
        (ApiToken, {"digest__startswith": "a"}),
        (ApiToken, {"pk__startswith": "a"}),
        (ApiToken, {"user__password__startswith": "pbkdf2"}),
        (world.registry.repositories.model, {"registry__password_encrypted__startswith": prefix}),
        (world.registry.scans.model, {"registry__password_encrypted__startswith": prefix}),
        (admin_user.__class__, {"password__startswith": "pbkdf2"}),
    ]
    for model, query in refused:
        assert admin_client.get(changelist(model), query).status_code == 400, (model, query)
    # ordinary lookups still work, and search does not look into the secret
    assert admin_client.get(changelist(Registry), {"tracked__exact": "0"}).status_code == 200
    found = admin_client.get(changelist(Registry), {"q": world.registry.password_encrypted[:12]})
    assert found.status_code == 200 and world.registry.url not in found.content.decode()


def test_lookup_paths_that_reach_a_secret():
    assert lookup_reaches_secret(Registry, "password_encrypted__startswith")
    assert lookup_reaches_secret(Registry, "repositories__registry__password_encrypted")
    assert lookup_reaches_secret(ApiToken, "pk__regex")
    assert not lookup_reaches_secret(Registry, "username__startswith")
    assert not lookup_reaches_secret(Registry, "repositories__name__startswith")


def test_every_admin_refuses_them_and_none_searches_filters_or_orders_by_one():
    for model, model_admin in admin.site._registry.items():
        assert isinstance(model_admin, SecretSafeAdmin), model
        named = [
            *model_admin.search_fields,
            *(f if isinstance(f, str) else "" for f in model_admin.list_filter),
            *(f for f in model_admin.list_display if isinstance(f, str) and f != "__str__"),
            *(model_admin.ordering or []),
            *(model_admin.list_display_links or []),
        ]
        for name in named:
            assert not lookup_reaches_secret(model, name.lstrip("-^=@")), (model, name)
    assert set(SECRET_FIELDS) <= set(admin.site._registry)
