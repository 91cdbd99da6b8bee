"""What every admin here shares: the guard on secret columns, the read-only bases for what scans
wrote, and the helpers the forms and columns use."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP

from analytics.errors import LayerlensError
from analytics.infra.units import human_size
from analytics.models import ApiToken, Engine, Registry

# Columns holding secrets (ciphertext, password hashes, token digests). The changelist takes any
# `?field__lookup=value` on a model's own columns, so `?password_encrypted__startswith=g` would read a
# secret one prefix at a time: every admin here refuses a lookup that reaches one of these (400), and none
# searches, filters or orders by them.
SECRET_FIELDS: dict[type[models.Model], frozenset[str]] = {
    Registry: frozenset({"password_encrypted", "events_secret_encrypted"}),
    Engine: frozenset({"tls_key_encrypted"}),
    ApiToken: frozenset({"digest"}),
    get_user_model(): frozenset({"password"}),
}


def lookup_reaches_secret(model: type[models.Model], lookup: str) -> bool:
    """Whether `lookup` (`registry__password_encrypted__startswith`, `pk`, ...) reads a secret column."""
    for part in lookup.split(LOOKUP_SEP):
        try:
            field = model._meta.pk if part == "pk" else model._meta.get_field(part)
        except FieldDoesNotExist:
            return False  # a transform or lookup name: the path to a column ended before it
        if field.name in SECRET_FIELDS.get(model, ()):
            return True
        if not field.is_relation or field.related_model is None:
            return False
        model = field.related_model
    return False


class SecretSafeAdmin(admin.ModelAdmin):
    """The base of every admin on the site (those of auth's models are re-registered in `accounts`)."""

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        if lookup_reaches_secret(self.model, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)


class ReadOnlyAdminMixin:
    """Scanned data is written by ingest only: view it, never add or edit it here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnlyAdminMixin, SecretSafeAdmin):
    pass


class ReadOnlyTabularInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request, obj=None):
        return list(dict.fromkeys([*self.fields, *self.readonly_fields]))


def _size(value: int | None) -> str:
    return "" if value is None else f"{human_size(value)} ({value:,} B)"


def _service_check(check, *args, **kwargs):
    """A service's validation as a form error on the field or the form."""
    try:
        return check(*args, **kwargs)
    except LayerlensError as exc:
        raise forms.ValidationError(str(exc)) from exc
