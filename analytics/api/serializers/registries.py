"""Shapes of registries (credentials write-only) and repositories; writes go through
`analytics.registries`."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from analytics.api.serializers.common import DurationSecondsField
from analytics.api.serializers.content import DedupSummarySerializer
from analytics.models import Registry, Repository
from analytics.registries import (
    EVENTS_SECRET_MAX_CHARS,
    KEEP,
    MAX_DOCKER_CONFIG_CHARS,
    MAX_PEM_CHARS,
    MAX_SECRET_CHARS,
    registry_create,
    registry_update,
    repository_schedule,
)


class RegistrySerializer(serializers.ModelSerializer):
    password = serializers.CharField(
        write_only=True,
        required=False,
        max_length=MAX_SECRET_CHARS,
        allow_blank=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Write-only; stored encrypted, never returned. An empty string clears it.",
    )
    has_password = serializers.BooleanField(read_only=True)
    docker_config = serializers.CharField(
        write_only=True,
        required=False,
        max_length=MAX_DOCKER_CONFIG_CHARS,
        trim_whitespace=False,
        style={"base_template": "textarea.html"},
        help_text="Write-only: the text of a Docker config.json; its `auths` entry for this registry "
        "(user and password, or identity token) becomes the credentials. Credential helpers are not run.",
    )
    allow_internal = serializers.BooleanField(
        required=False,
        help_text="Staff only: allow the registry on a loopback, private or link-local address.",
    )
    events_secret = serializers.CharField(
        write_only=True,
        required=False,
        max_length=EVENTS_SECRET_MAX_CHARS,
        allow_blank=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Write-only: the secret the registry sends its events with (`Authorization: Bearer "
        "<secret>`); stored encrypted, never returned. Setting one makes the registry followed by events; "
        "an empty string clears it. `manage.py registry events-config ID` prints what to paste into the "
        "registry's configuration.",
    )
    followed = serializers.BooleanField(
        read_only=True, help_text="Whether the registry has an events secret: it announces its changes."
    )
    events_pending = serializers.SerializerMethodField(
        help_text="Events received from the registry and not applied yet."
    )
    events_oldest_pending_at = serializers.SerializerMethodField(
        help_text="When the oldest event not applied yet arrived (null: none waits)."
    )
    events_oldest_pending_age_seconds = serializers.SerializerMethodField(
        help_text="How long the oldest event not applied yet has waited, in seconds (null: none waits)."
    )
    scan_interval = DurationSecondsField(
        required=False, allow_null=True, help_text="Seconds between scheduled scans (integer); null for none."
    )

    class Meta:
        model = Registry
        fields = [
            "id",
            "name",
            "url",
            "username",
            "password",
            "has_password",
            "identity_token",
            "docker_config",
            "insecure",
            "allow_internal",
            "ca_bundle",
            "tracked",
            "scan_interval",
            "max_concurrency",
            "max_requests_per_second",
            "next_scan_at",
            "last_scanned_at",
            "events_secret",
            "followed",
            "last_event_at",
            "events_pending",
            "events_oldest_pending_at",
            "events_oldest_pending_age_seconds",
            "created_at",
        ]
        read_only_fields = [
            "identity_token",
            "next_scan_at",
            "last_scanned_at",
            "last_event_at",
            "created_at",
        ]
        extra_kwargs = {
            "name": {"required": False},
            "ca_bundle": {"max_length": MAX_PEM_CHARS},
            "last_scanned_at": {"help_text": "When a registry scan last finished: last confirmed by a scan."},
            "last_event_at": {"help_text": "When an applied event last changed what is recorded of it."},
        }

    def get_fields(self):
        fields = super().get_fields()
        # The account a registry is read with is the operators' business: staff only (JSON and CSV alike).
        request = self.context.get("request")
        if request is not None and not (request.user and request.user.is_staff):
            fields.pop("username", None)
        return fields

    def get_initial(self):
        # What a form shows after a refused write (the browsable API renders the request's own values):
        # never the secrets it carried.
        initial = super().get_initial()
        for name in ("password", "events_secret", "docker_config"):
            if name in initial:
                initial[name] = ""
        return initial

    # The inbox figures are annotations of `registry_list()`; a registry just created has no events.
    def get_events_pending(self, obj: Registry) -> int:
        return getattr(obj, "events_pending", 0)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_events_oldest_pending_at(self, obj: Registry) -> str | None:
        oldest = getattr(obj, "events_oldest_pending_at", None)
        return serializers.DateTimeField().to_representation(oldest) if oldest else None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_events_oldest_pending_age_seconds(self, obj: Registry) -> float | None:
        oldest = getattr(obj, "events_oldest_pending_at", None)
        return round((timezone.now() - oldest).total_seconds(), 3) if oldest else None

    def validate_allow_internal(self, value: bool) -> bool:
        request = self.context.get("request")
        if value and not (request and request.user.is_staff):
            raise PermissionDenied("only staff may allow a registry on an internal address")
        return value

    def create(self, validated_data) -> Registry:
        return registry_create(**validated_data, check_reachable=True)

    def update(self, instance: Registry, validated_data) -> Registry:
        return registry_update(registry=instance, **validated_data, check_reachable=True)


class RegistryDetailSerializer(RegistrySerializer):
    summary = serializers.SerializerMethodField()

    class Meta(RegistrySerializer.Meta):
        fields = [*RegistrySerializer.Meta.fields, "summary"]

    @extend_schema_field(DedupSummarySerializer)
    def get_summary(self, obj: Registry) -> dict | None:
        summary = self.context.get("summary")
        return summary.as_dict() if summary is not None else None


# --- repositories -----------------------------------------------------------------------------------------


class RepositorySerializer(serializers.ModelSerializer):
    registry_name = serializers.CharField(source="registry.name", read_only=True)
    full_name = serializers.SerializerMethodField()
    scan_interval = DurationSecondsField(
        required=False, allow_null=True, help_text="Seconds between scheduled scans (integer); null for none."
    )

    class Meta:
        model = Repository
        fields = [
            "id",
            "registry",
            "registry_name",
            "name",
            "full_name",
            "tracked",
            "scan_interval",
            "next_scan_at",
            "last_scanned_at",
            "first_seen",
        ]
        read_only_fields = ["registry", "name", "next_scan_at", "last_scanned_at", "first_seen"]

    def get_full_name(self, obj: Repository) -> str:
        return f"{obj.registry.host}/{obj.name}"

    def update(self, instance: Repository, validated_data) -> Repository:
        return repository_schedule(
            repository=instance,
            tracked=validated_data.get("tracked"),
            interval=validated_data.get("scan_interval", KEEP),
        )
