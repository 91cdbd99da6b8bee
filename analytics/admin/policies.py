"""Saved cleanup policies: added and edited here, saved through `analytics.policies.saved` (a text that does
not parse is a form error naming its line or JSON path); their evaluations are read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from analytics.admin.base import ReadOnlyAdmin, SecretSafeAdmin, _size
from analytics.errors import LayerlensError
from analytics.models import CleanupPolicy, PolicyEvaluation
from analytics.policies.saved import (
    cleanup_policy_create,
    cleanup_policy_delete,
    cleanup_policy_update,
    policy_name_check,
    policy_scope_check,
    policy_text_check,
)
from analytics.selectors.policies import policy_series

SHOWN_POINTS = 20


class CleanupPolicyForm(forms.ModelForm):
    format = forms.ChoiceField(
        choices=[("", "guess from the text's fields"), *CleanupPolicy.Format.choices],
        required=False,
        help_text="The policy's format; left to guess, it is read from the text's fields.",
    )
    text = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 18, "cols": 100, "spellcheck": "false"}),
        help_text="The policy's JSON document, kept as given (at most 64 KiB).",
    )

    class Meta:
        model = CleanupPolicy
        fields = ["registry", "name", "format", "text", "namespace", "repository", "enabled"]

    def clean(self) -> dict:
        """Each refusal of the services shown on its field: the text's names its line or JSON path."""
        data = super().clean()
        registry = data.get("registry") or (self.instance.registry if self.instance.pk else None)
        try:
            if data.get("name") is not None:
                data["name"] = policy_name_check(data["name"])
        except LayerlensError as exc:
            self.add_error("name", str(exc))
        try:
            if data.get("text") is not None:
                data["format"] = policy_text_check(text=data["text"], format=data.get("format") or None)
        except LayerlensError as exc:
            self.add_error("text", str(exc))
        if registry is None:
            return data
        try:
            data["namespace"], data["repository"] = policy_scope_check(
                registry=registry, namespace=data.get("namespace", ""), repository=data.get("repository", "")
            )
        except LayerlensError as exc:
            self.add_error("repository" if str(exc).startswith("repository") else "namespace", str(exc))
        name = data.get("name")
        taken = CleanupPolicy.objects.filter(registry=registry, name=name).exclude(pk=self.instance.pk)
        if name and "name" not in self.errors and taken.exists():
            self.add_error("name", f"registry {registry.name} already has a policy named {name!r}")
        return data

    def validate_unique(self) -> None:
        """The name's uniqueness is said once, by `clean`, in the words of the API and the command."""


@admin.register(CleanupPolicy)
class CleanupPolicyAdmin(SecretSafeAdmin):
    form = CleanupPolicyForm
    list_display = ["name", "registry", "format", "namespace", "repository", "enabled", "updated_at"]
    list_filter = ["registry", "format", "enabled"]
    search_fields = ["name", "registry__name"]
    list_select_related = ["registry"]
    readonly_fields = ["revision", "created_at", "updated_at", "latest_points"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(self.readonly_fields)
        if obj is not None:
            fields.append("registry")  # a policy stays with its registry
        return fields

    def save_model(self, request, obj: CleanupPolicy, form: CleanupPolicyForm, change: bool) -> None:
        data = form.cleaned_data
        values = {k: data[k] for k in ("name", "text", "format", "namespace", "repository", "enabled")}
        if change:
            cleanup_policy_update(policy=CleanupPolicy.objects.get(pk=obj.pk), **values)
        else:
            obj.pk = cleanup_policy_create(registry=data["registry"], **values).pk
        obj.refresh_from_db()

    def delete_model(self, request, obj: CleanupPolicy) -> None:
        cleanup_policy_delete(policy=obj)

    @admin.display(description="latest evaluations")
    def latest_points(self, obj: CleanupPolicy) -> str:
        if obj.pk is None:
            return "-"
        points = list(policy_series(policy_id=obj.pk)[:SHOWN_POINTS])
        if not points:
            return "not evaluated yet: after the registry's next scan or batch of events"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    e.at.isoformat(timespec="seconds"),
                    _size(e.freed_bytes) if not e.error else "-",
                    e.tags_removed if not e.error else "-",
                    e.manifests_freed if not e.error else "-",
                    e.error or "",
                )
                for e in points
            ),
        )
        url = reverse("admin:analytics_policyevaluation_changelist") + f"?policy__id__exact={obj.pk}"
        return format_html(
            "<table><tr><th>at</th><th>reclaimable</th><th>tags removed</th><th>manifests freed</th>"
            "<th>error</th></tr>{}</table><p><a href='{}'>every evaluation</a></p>",
            rows,
            url,
        )


@admin.register(PolicyEvaluation)
class PolicyEvaluationAdmin(ReadOnlyAdmin):
    list_display = ["policy", "at", "freed", "tags_removed", "manifests_freed", "push_times", "error"]
    list_filter = ["policy"]
    list_select_related = ["policy"]
    ordering = ["-at", "-id"]

    @admin.display(description="reclaimable", ordering="freed_bytes")
    def freed(self, obj: PolicyEvaluation) -> str:
        return _size(obj.freed_bytes)
