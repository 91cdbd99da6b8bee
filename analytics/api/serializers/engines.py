"""Shapes of Docker Engines, their scans, their `docker system df -v` view and the fleet across them.
Engine writes go through `analytics.engines.services`."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from analytics.api.serializers.common import BoundedListField
from analytics.engines import services as engine_services
from analytics.models import Engine, EngineScan
from analytics.registries import MAX_PEM_CHARS, MAX_SCAN_INTERVAL, MAX_SECRET_CHARS


class EngineSerializer(serializers.ModelSerializer):
    tls_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=MAX_SECRET_CHARS
    )
    has_tls_key = serializers.SerializerMethodField()
    allow_internal = serializers.BooleanField(
        required=False,
        help_text="Staff only: allow a tcp:// or ssh:// engine on a loopback, private or link-local address.",
    )

    class Meta:
        model = Engine
        fields = [
            "id",
            "name",
            "endpoint",
            "tls_ca",
            "tls_cert",
            "tls_key",
            "has_tls_key",
            "tracked",
            "scan_interval",
            "pull_tracked",
            "allow_internal",
            "next_scan_at",
            "last_scanned_at",
            "engine_id",
            "server_version",
            "os",
            "architecture",
            "storage_driver",
            "created_at",
        ]
        read_only_fields = [
            "next_scan_at",
            "last_scanned_at",
            "engine_id",
            "server_version",
            "os",
            "architecture",
            "storage_driver",
            "created_at",
        ]
        extra_kwargs = {
            "name": {"required": False},
            "scan_interval": {"min_value": timedelta(seconds=1), "max_value": MAX_SCAN_INTERVAL},
            "tls_ca": {"max_length": MAX_PEM_CHARS},
            "tls_cert": {"max_length": MAX_PEM_CHARS},
        }

    def validate_allow_internal(self, value: bool) -> bool:
        request = self.context.get("request")
        if value and not (request and request.user.is_staff):
            raise PermissionDenied("only staff may allow an engine on an internal address")
        return value

    def get_has_tls_key(self, obj: Engine) -> bool:
        return bool(obj.tls_key_encrypted)

    def _save(self, data: dict, engine: Engine | None = None) -> Engine:
        changes = {
            "name": data.get("name"),
            "tls_ca": data.get("tls_ca"),
            "tls_cert": data.get("tls_cert"),
            "tls_key": data.get("tls_key"),
            "pull_tracked": data.get("pull_tracked"),
            "allow_internal": data.get("allow_internal"),
            "check_reachable": True,
        }
        with transaction.atomic():
            if engine is None:
                saved = engine_services.engine_upsert(endpoint=data.get("endpoint") or "", **changes)
            else:
                saved = engine_services.engine_update(engine=engine, endpoint=data.get("endpoint"), **changes)
            if "tracked" in data or "scan_interval" in data:
                engine_services.engine_schedule(
                    engine=saved,
                    tracked=data.get("tracked", saved.tracked),
                    interval=data.get("scan_interval", saved.scan_interval),
                )
        return saved

    def create(self, validated_data: dict) -> Engine:
        return self._save(validated_data)

    def update(self, instance: Engine, validated_data: dict) -> Engine:
        return self._save(validated_data, instance)


class EngineScanSerializer(serializers.ModelSerializer):
    class Meta:
        model = EngineScan
        fields = [
            "id",
            "engine",
            "status",
            "trigger",
            "pull",
            "created_at",
            "started_at",
            "finished_at",
            "images_count",
            "layers_count",
            "pulled_count",
            "linked_blobs_count",
            "errors",
            "message",
        ]
        read_only_fields = fields


class EngineScanRequestSerializer(serializers.Serializer):
    pull = BoundedListField(
        child=serializers.CharField(max_length=500),
        required=False,
        default=list,
        max_length=engine_services.MAX_PULL,
        help_text=f"Image references to pull first, at most {engine_services.MAX_PULL}.",
    )


# --- docker system df -------------------------------------------------------------------------------------


class EngineImageUsageSerializer(serializers.Serializer):
    """One image of `docker system df -v`; sizes are null while a layer's size is unknown."""

    id = serializers.CharField(help_text="Image ID.")
    tags = serializers.ListField(child=serializers.CharField())
    digests = serializers.ListField(child=serializers.CharField())
    created = serializers.DateTimeField(allow_null=True)
    containers = serializers.IntegerField()
    size_bytes = serializers.IntegerField(allow_null=True)
    shared_bytes = serializers.IntegerField(allow_null=True, help_text="Layers (ChainIDs) other images use.")
    unique_bytes = serializers.IntegerField(allow_null=True)


class EngineDiskUsageSerializer(serializers.Serializer):
    """`EngineDiskUsage`: the engine's images and what sharing by ChainID saves on it."""

    engine = serializers.CharField()
    endpoint = serializers.CharField()
    images = EngineImageUsageSerializer(many=True)
    active = serializers.IntegerField(help_text="Images with at least one container.")
    stored_bytes = serializers.IntegerField(allow_null=True, help_text="The engine's LayersSize.")
    logical_bytes = serializers.IntegerField(allow_null=True, help_text="Σ image sizes, nothing shared.")
    saved_bytes = serializers.IntegerField(allow_null=True, help_text="logical_bytes - stored_bytes")
    reclaimable_bytes = serializers.IntegerField(allow_null=True)
    unknown_layers = serializers.ListField(
        child=serializers.CharField(), help_text="ChainIDs of unknown size; figures needing them are null."
    )


# --- the fleet --------------------------------------------------------------------------------------------


class FleetLayerSerializer(serializers.Serializer):
    chain_id = serializers.CharField()
    diff_id = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)
    engines = serializers.IntegerField()
    images = serializers.IntegerField()


class FleetImageSerializer(serializers.Serializer):
    image_id = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    engines = serializers.IntegerField()


class FleetNodeSerializer(serializers.Serializer):
    engine = serializers.CharField()
    endpoint = serializers.CharField()
    images = serializers.IntegerField()
    logical_bytes = serializers.IntegerField(allow_null=True)
    stored_bytes = serializers.IntegerField(allow_null=True)
    saved_bytes = serializers.IntegerField(allow_null=True)


class FleetSerializer(serializers.Serializer):
    layers = FleetLayerSerializer(many=True, help_text="Per ChainID: engines and images holding it.")
    images = FleetImageSerializer(many=True, help_text="Per image ID: engines holding it.")
    nodes = FleetNodeSerializer(many=True, help_text="Per engine: what sharing saves on its disk.")
