"""Serializers: shapes only. Nothing here runs a query; per-page extras (sizes, tags, summaries) come
in through the serializer context, computed by the view for the current page."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from analytics.models import (
    Blob,
    HistoryEntry,
    ManifestLayer,
    Registry,
    Repository,
    RepositoryManifest,
    Scan,
    ScanError,
    Tag,
    TagEvent,
)
from analytics.registries import KEEP, registry_create, registry_update, repository_schedule


@extend_schema_field(OpenApiTypes.INT)
class DurationSecondsField(serializers.Field):
    """A `DurationField` exposed as whole seconds (an integer), null when unset."""

    def to_representation(self, value: timedelta) -> int:
        return int(value.total_seconds())

    def to_internal_value(self, data) -> timedelta:
        try:
            seconds = int(data)
        except (TypeError, ValueError):
            raise serializers.ValidationError("A whole number of seconds is required.")
        if seconds <= 0:
            raise serializers.ValidationError("Must be a positive number of seconds.")
        return timedelta(seconds=seconds)


class ErrorSerializer(serializers.Serializer):
    """Every error reply: a domain error's message, or DRF's own."""

    detail = serializers.CharField()


class DedupSummarySerializer(serializers.Serializer):
    """`reports.DedupSummary.as_dict()`: the six summary figures first, then the extras."""

    images = serializers.IntegerField(help_text="Single-platform manifests per repository in the scope.")
    distinct_layers = serializers.IntegerField()
    logical_bytes = serializers.IntegerField(help_text="What the scope would cost if nothing were shared.")
    stored_bytes = serializers.IntegerField(
        help_text="What a registry keeps: distinct digests, counted once."
    )
    saved_bytes = serializers.IntegerField(help_text="logical_bytes - stored_bytes")
    dedup_ratio = serializers.FloatField(help_text="logical_bytes / stored_bytes")
    layers_logical_bytes = serializers.IntegerField()
    layers_stored_bytes = serializers.IntegerField()
    manifests = serializers.IntegerField()
    indexes = serializers.IntegerField()
    repositories = serializers.IntegerField()
    tagged_only = serializers.BooleanField()
    scope = serializers.DictField(child=serializers.JSONField(), help_text="The scope the figures are about.")
    foreign_bytes = serializers.IntegerField(help_text="Foreign layers: named, stored elsewhere.")
    uncompressed_known_layers = serializers.IntegerField(
        help_text="Distinct layers whose uncompressed size is known (engine pull-through or deep scan)."
    )
    uncompressed_coverage = serializers.FloatField(help_text="uncompressed_known_layers / distinct_layers")
    uncompressed_logical_bytes = serializers.IntegerField(
        allow_null=True,
        help_text="Uncompressed layer bytes over those layers, per image; null if none known.",
    )
    uncompressed_stored_bytes = serializers.IntegerField(
        allow_null=True, help_text="Uncompressed bytes of those layers, each counted once."
    )
    uncompressed_known_compressed_bytes = serializers.IntegerField(
        allow_null=True, help_text="The same layers' compressed bytes, each counted once (to compare)."
    )


# --- registries -------------------------------------------------------------------------------------------


class RegistrySerializer(serializers.ModelSerializer):
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Write-only; stored encrypted, never returned. An empty string clears it.",
    )
    has_password = serializers.BooleanField(read_only=True)
    docker_config = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        style={"base_template": "textarea.html"},
        help_text="Write-only: the text of a Docker config.json; its `auths` entry for this registry "
        "(user and password, or identity token) becomes the credentials. Credential helpers are not run.",
    )
    allow_internal = serializers.BooleanField(
        required=False,
        help_text="Staff only: allow the registry on a loopback, private or link-local address.",
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
            "created_at",
        ]
        read_only_fields = ["identity_token", "next_scan_at", "last_scanned_at", "created_at"]
        extra_kwargs = {"name": {"required": False}}

    def validate_allow_internal(self, value: bool) -> bool:
        request = self.context.get("request")
        if value and not (request and request.user.is_staff):
            raise PermissionDenied("only staff may allow a registry on an internal address")
        return value

    def create(self, validated_data) -> Registry:
        return registry_create(**validated_data)

    def update(self, instance: Registry, validated_data) -> Registry:
        return registry_update(registry=instance, **validated_data)


class RegistryDetailSerializer(RegistrySerializer):
    summary = serializers.SerializerMethodField()

    class Meta(RegistrySerializer.Meta):
        fields = [*RegistrySerializer.Meta.fields, "summary"]

    @extend_schema_field(DedupSummarySerializer)
    def get_summary(self, obj: Registry) -> dict | None:
        summary = self.context.get("summary")
        return summary.as_dict() if summary is not None else None


# --- repositories and tags --------------------------------------------------------------------------------


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


class TagSerializer(serializers.ModelSerializer):
    repository_name = serializers.CharField(source="repository.name", read_only=True)
    registry = serializers.IntegerField(source="repository.registry_id", read_only=True)
    digest = serializers.CharField(source="manifest.digest", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Tag
        fields = [
            "id",
            "registry",
            "repository",
            "repository_name",
            "name",
            "digest",
            "first_seen",
            "last_seen",
            "removed_at",
        ]


class TagEventSerializer(serializers.ModelSerializer):
    tag_name = serializers.CharField(source="tag.name", read_only=True)
    repository = serializers.IntegerField(source="tag.repository_id", read_only=True)
    repository_name = serializers.CharField(source="tag.repository.name", read_only=True)
    action = serializers.SerializerMethodField()

    class Meta:
        model = TagEvent
        fields = [
            "id",
            "tag",
            "tag_name",
            "repository",
            "repository_name",
            "action",
            "old_digest",
            "new_digest",
            "seen_at",
            "scan",
        ]

    def get_action(self, obj: TagEvent) -> str:
        if not obj.old_digest:
            return "created"
        return "removed" if not obj.new_digest else "moved"


# --- images and layers ------------------------------------------------------------------------------------


class LayerSerializer(serializers.ModelSerializer):
    """One layer of an image, bottom (position 0) to top."""

    digest = serializers.CharField(source="blob.digest")
    media_type = serializers.CharField(source="blob.media_type")
    size = serializers.IntegerField(source="blob.size", help_text="Bytes as stored (compressed).")
    uncompressed_size = serializers.IntegerField(source="blob.uncompressed_size", allow_null=True)
    diff_id = serializers.CharField(source="blob.diff_id")
    created_by = serializers.CharField(allow_null=True, read_only=True)

    class Meta:
        model = ManifestLayer
        fields = ["position", "digest", "media_type", "size", "uncompressed_size", "diff_id", "created_by"]


class HistorySerializer(serializers.ModelSerializer):
    layer_digest = serializers.CharField(
        allow_null=True, read_only=True, help_text="Null for an empty layer."
    )
    size = serializers.IntegerField(source="layer_size", allow_null=True, read_only=True)

    class Meta:
        model = HistoryEntry
        fields = [
            "position",
            "created",
            "created_by",
            "comment",
            "author",
            "empty_layer",
            "layer_position",
            "layer_digest",
            "size",
        ]


_SIZE_FIELDS = (
    "size_bytes",
    "shared_bytes",
    "unique_bytes",
    "layers_size_bytes",
    "layers_shared_bytes",
    "layers_unique_bytes",
)


class ImageSerializer(serializers.ModelSerializer):
    """An image: one single-platform manifest held by one repository (`id` is that holding's id).

    Sizes follow `docker system df -v`: `shared_bytes` are parts another image in the scope references
    too, `unique_bytes` what deleting this image frees. The `layers_*` variants count layers only.
    """

    manifest_id = serializers.IntegerField(read_only=True)
    digest = serializers.CharField(source="manifest.digest")
    registry = serializers.IntegerField(source="repository.registry_id")
    registry_name = serializers.CharField(source="repository.registry.name")
    repository = serializers.IntegerField(source="repository_id")
    repository_name = serializers.CharField(source="repository.name")
    tags = serializers.SerializerMethodField()
    platform = serializers.CharField(source="manifest.platform")
    os = serializers.CharField(source="manifest.os")
    architecture = serializers.CharField(source="manifest.architecture")
    variant = serializers.CharField(source="manifest.variant")
    created = serializers.DateTimeField(source="manifest.created", allow_null=True)
    media_type = serializers.CharField(source="manifest.media_type")
    manifest_size = serializers.IntegerField(source="manifest.size")
    config_digest = serializers.CharField(source="manifest.config.digest", allow_null=True, default=None)
    layer_count = serializers.IntegerField(source="manifest.layer_count")
    size_bytes = serializers.SerializerMethodField()
    shared_bytes = serializers.SerializerMethodField()
    unique_bytes = serializers.SerializerMethodField()
    layers_size_bytes = serializers.SerializerMethodField()
    layers_shared_bytes = serializers.SerializerMethodField()
    layers_unique_bytes = serializers.SerializerMethodField()

    class Meta:
        model = RepositoryManifest
        fields = [
            "id",
            "manifest_id",
            "digest",
            "registry",
            "registry_name",
            "repository",
            "repository_name",
            "tags",
            "platform",
            "os",
            "architecture",
            "variant",
            "created",
            "media_type",
            "manifest_size",
            "config_digest",
            "layer_count",
            *_SIZE_FIELDS,
            "present",
            "first_seen",
            "last_seen",
        ]

    def _size(self, obj: RepositoryManifest, name: str) -> int | None:
        sizes = self.context.get("sizes", {}).get(obj.id)
        return getattr(sizes, name) if sizes is not None else None

    def get_tags(self, obj: RepositoryManifest) -> list[str]:
        return self.context.get("tags", {}).get(obj.id, [])

    @extend_schema_field(OpenApiTypes.INT)
    def get_size_bytes(self, obj) -> int | None:
        return self._size(obj, "size_bytes")

    @extend_schema_field(OpenApiTypes.INT)
    def get_shared_bytes(self, obj) -> int | None:
        return self._size(obj, "shared_bytes")

    @extend_schema_field(OpenApiTypes.INT)
    def get_unique_bytes(self, obj) -> int | None:
        return self._size(obj, "unique_bytes")

    @extend_schema_field(OpenApiTypes.INT)
    def get_layers_size_bytes(self, obj) -> int | None:
        return self._size(obj, "layers_size_bytes")

    @extend_schema_field(OpenApiTypes.INT)
    def get_layers_shared_bytes(self, obj) -> int | None:
        return self._size(obj, "layers_shared_bytes")

    @extend_schema_field(OpenApiTypes.INT)
    def get_layers_unique_bytes(self, obj) -> int | None:
        return self._size(obj, "layers_unique_bytes")


class ImageDetailSerializer(ImageSerializer):
    layers = serializers.SerializerMethodField()

    class Meta(ImageSerializer.Meta):
        fields = [*ImageSerializer.Meta.fields, "layers"]

    @extend_schema_field(LayerSerializer(many=True))
    def get_layers(self, obj) -> list[dict]:
        return LayerSerializer(self.context.get("layers", []), many=True).data


class RankedLayerSerializer(serializers.ModelSerializer):
    """A layer blob with how many images and repositories in the scope hold it."""

    images = serializers.IntegerField(read_only=True)
    repositories = serializers.IntegerField(read_only=True)
    saved_bytes = serializers.IntegerField(read_only=True, help_text="size × (images − 1)")
    created_by = serializers.CharField(read_only=True, allow_null=True)

    class Meta:
        model = Blob
        fields = [
            "digest",
            "media_type",
            "size",
            "uncompressed_size",
            "diff_id",
            "images",
            "repositories",
            "saved_bytes",
            "created_by",
        ]


# --- scans ------------------------------------------------------------------------------------------------


class ScanErrorSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScanError
        fields = ["id", "repository", "reference", "kind", "message", "created_at"]


class ScanSerializer(serializers.ModelSerializer):
    registry_name = serializers.CharField(source="registry.name", read_only=True)
    repository_name = serializers.CharField(
        source="repository.name", read_only=True, allow_null=True, default=None
    )
    progress = serializers.SerializerMethodField(help_text="repositories_done / repositories_total, 0..1")
    duration_seconds = serializers.SerializerMethodField()
    is_finished = serializers.BooleanField(read_only=True)

    class Meta:
        model = Scan
        fields = [
            "id",
            "kind",
            "registry",
            "registry_name",
            "repository",
            "repository_name",
            "tag",
            "parent",
            "status",
            "trigger",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "is_finished",
            "repositories_total",
            "repositories_done",
            "progress",
            "tags_total",
            "tags_done",
            "lease_until",
            "takeovers",
            "tags_count",
            "images_count",
            "new_manifests_count",
            "errors_count",
            "deep_budget_bytes",
            "deep_measured_count",
            "message",
        ]
        read_only_fields = fields

    def get_progress(self, obj: Scan) -> float | None:
        if not obj.repositories_total:
            return 1.0 if obj.is_finished else None
        return round(obj.repositories_done / obj.repositories_total, 4)

    def get_duration_seconds(self, obj: Scan) -> float | None:
        if obj.started_at is None or obj.finished_at is None:
            return None
        return round((obj.finished_at - obj.started_at).total_seconds(), 3)


class ScanDetailSerializer(ScanSerializer):
    errors = serializers.SerializerMethodField()

    class Meta(ScanSerializer.Meta):
        fields = [*ScanSerializer.Meta.fields, "errors"]
        read_only_fields = fields

    @extend_schema_field(ScanErrorSerializer(many=True))
    def get_errors(self, obj) -> list[dict]:
        return ScanErrorSerializer(self.context.get("errors", []), many=True).data


class ScanCreateSerializer(serializers.Serializer):
    target = serializers.CharField(
        help_text="What to scan: `http://127.0.0.1:5000` (a registry), "
        "`127.0.0.1:5000/team/app` (a repository) or `127.0.0.1:5000/team/app:tag` (one tag)."
    )
    deep = serializers.BooleanField(
        default=False,
        help_text="Also stream each repository's layers of unknown uncompressed size through a "
        "decompressor (gzip, zstd) to measure them and verify their diff_ids.",
    )
    deep_budget = serializers.IntegerField(
        min_value=1,
        default=1024**3,
        help_text="With `deep`: compressed bytes each repository scan may stream (default 1 GiB).",
    )
