"""Docker Engines: editable, saved through `analytics.engines.services`; what their scans wrote is
read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction

from analytics.admin.base import ReadOnlyAdmin, ReadOnlyTabularInline, SecretSafeAdmin, _service_check
from analytics.engines.services import (
    engine_endpoint_normalise,
    engine_reachable_check,
    engine_scan_start,
    engine_schedule,
    engine_update,
    engine_upsert,
)
from analytics.models import (
    Engine,
    EngineHistoryEntry,
    EngineImage,
    EngineImageLayer,
    EngineScan,
)
from analytics.registries import schedule_check


class EngineForm(forms.ModelForm):
    """An engine's settings; saved by `analytics.engines.services`, which normalises the endpoint,
    checks it against the SSRF policy, keeps the TLS key write-only and starts the schedule."""

    name = forms.CharField(
        required=False, max_length=200, help_text="Display name; left empty, the endpoint."
    )
    tls_key = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: the PEM client key, stored encrypted, never shown. Leave empty to keep it.",
    )

    class Meta:
        model = Engine
        fields = [
            "name",
            "endpoint",
            "tls_ca",
            "tls_cert",
            "allow_internal",
            "pull_tracked",
            "tracked",
            "scan_interval",
        ]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("endpoint") and (
            "endpoint" in self.changed_data or "allow_internal" in self.changed_data
        ):
            _service_check(
                engine_reachable_check,
                endpoint=_service_check(engine_endpoint_normalise, data["endpoint"]),
                allow_internal=data.get("allow_internal", False),
            )
        if "tracked" in data and "scan_interval" in data:
            _service_check(
                schedule_check, tracked=data["tracked"], interval=data["scan_interval"], what="engine"
            )
        return data


@admin.register(Engine)
class EngineAdmin(SecretSafeAdmin):
    form = EngineForm
    list_display = ["name", "endpoint", "server_version", "storage_driver", "tracked", "last_scanned_at"]
    list_filter = ["tracked", "storage_driver"]
    search_fields = ["name", "endpoint", "engine_id"]
    readonly_fields = [
        "engine_id",
        "server_version",
        "os",
        "architecture",
        "storage_driver",
        "last_scanned_at",
    ]
    actions = ["scan_now"]

    def save_model(self, request, obj: Engine, form: EngineForm, change: bool) -> None:
        data = form.cleaned_data
        changes = {
            "name": data["name"] or None,
            "tls_ca": data["tls_ca"],
            "tls_cert": data["tls_cert"],
            "tls_key": data["tls_key"] or None,
            "pull_tracked": data["pull_tracked"],
            "allow_internal": data["allow_internal"],
        }
        with transaction.atomic():
            if change:
                engine = engine_update(
                    engine=Engine.objects.get(pk=obj.pk), endpoint=data["endpoint"], **changes
                )
            else:
                engine = engine_upsert(endpoint=data["endpoint"], **changes)
            if "tracked" in form.changed_data or "scan_interval" in form.changed_data or not change:
                engine_schedule(engine=engine, tracked=data["tracked"], interval=data["scan_interval"])
        obj.pk = engine.pk
        obj.refresh_from_db()

    @admin.action(description="Scan the selected engines now")
    def scan_now(self, request, queryset):
        for engine in queryset:
            engine_scan_start(endpoint=engine.endpoint, trigger="admin")
        self.message_user(request, f"{queryset.count()} engine scan(s) queued", messages.SUCCESS)


class EngineImageLayerInline(ReadOnlyTabularInline):
    model = EngineImageLayer
    extra = 0
    fields = ["position", "layer"]


class EngineHistoryInline(ReadOnlyTabularInline):
    model = EngineHistoryEntry
    extra = 0
    fields = ["position", "row_id", "created", "created_by", "size", "empty_layer"]
    readonly_fields = fields


@admin.register(EngineImage)
class EngineImageAdmin(ReadOnlyAdmin):
    list_display = ["image_id", "engine", "repo_tags", "layer_count", "containers", "present", "last_seen"]
    list_filter = ["present", "engine"]
    search_fields = ["image_id", "repo_tags", "repo_digests"]
    inlines = [EngineImageLayerInline, EngineHistoryInline]


@admin.register(EngineScan)
class EngineScanAdmin(ReadOnlyAdmin):
    list_display = ["id", "engine", "status", "trigger", "images_count", "pulled_count", "created_at"]
    list_filter = ["status", "engine"]
    readonly_fields = [f.name for f in EngineScan._meta.fields]
