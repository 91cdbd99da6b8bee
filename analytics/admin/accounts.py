"""Users and groups (auth's admins, re-registered on the secret-safe base) and API tokens."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.template.response import TemplateResponse

from analytics.admin.base import SecretSafeAdmin
from analytics.models import ApiToken
from analytics.tokens import token_create

admin.site.unregister(get_user_model())
admin.site.unregister(Group)


@admin.register(get_user_model())
class LayerlensUserAdmin(SecretSafeAdmin, UserAdmin):
    pass


@admin.register(Group)
class LayerlensGroupAdmin(SecretSafeAdmin, GroupAdmin):
    pass


class ApiTokenForm(forms.ModelForm):
    expires_days = forms.IntegerField(
        required=False, min_value=1, help_text="Lifetime in days; empty: until revoked (deleted)."
    )

    class Meta:
        model = ApiToken
        fields = ["user", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(SecretSafeAdmin):
    """Made here (the token is shown once, on the page after saving) or by `manage.py token`; deleting
    one revokes it. Only a digest is stored, so a token is never shown again nor edited."""

    form = ApiTokenForm
    list_display = ["name", "user", "starts_with", "created", "expiry"]
    ordering = ["user_id", "name"]
    list_select_related = ["user"]
    search_fields = ["name", "user__username"]
    autocomplete_fields = ["user"]
    fields = ["user", "name", "expires_days"]

    def get_fields(self, request, obj=None):
        return self.fields if obj is None else ["user", "name", "starts_with", "created", "expiry"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["user", "name", "starts_with", "created", "expiry"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="starts with")
    def starts_with(self, obj: ApiToken) -> str:
        return f"{obj.token_key}..."

    def save_model(self, request, obj: ApiToken, form: ApiTokenForm, change: bool) -> None:
        days = form.cleaned_data.get("expires_days")
        row, token = token_create(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            expires_in=timedelta(days=days) if days else None,
        )
        obj.digest, obj.token_key, obj.created, obj.expiry = (
            row.digest,
            row.token_key,
            row.created,
            row.expiry,
        )
        request.layerlens_new_token = token

    def response_add(self, request, obj: ApiToken, post_url_continue=None):
        # The token on this page only: not in a message, which a cookie would carry.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API token created",
            "row": obj,
            "token": request.layerlens_new_token,
        }
        return TemplateResponse(request, "admin/analytics/apitoken/created.html", context)
