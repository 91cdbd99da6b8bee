"""Shapes of scans, their errors, and the request that starts one."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics.models import Scan, ScanError
from analytics.scans.start import MAX_DEEP_BUDGET_BYTES


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
            "drift_count",
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

    @extend_schema_field(
        serializers.ListSerializer(
            child=ScanErrorSerializer(),
            help_text="The first 1000 (`errors_count` says how many there are; `scans/{id}/errors/` pages "
            "them all).",
        )
    )
    def get_errors(self, obj) -> list[dict]:
        return ScanErrorSerializer(self.context.get("errors", []), many=True).data


class ScanCreateSerializer(serializers.Serializer):
    target = serializers.CharField(
        max_length=1000,
        help_text="What to scan: `http://127.0.0.1:5000` (a registry), "
        "`127.0.0.1:5000/team/app` (a repository) or `127.0.0.1:5000/team/app:tag` (one tag).",
    )
    deep = serializers.BooleanField(
        default=False,
        help_text="Also stream each repository's layers of unknown uncompressed size through a "
        "decompressor (gzip, zstd) to measure them and verify their diff_ids.",
    )
    deep_budget = serializers.IntegerField(
        min_value=1,
        max_value=MAX_DEEP_BUDGET_BYTES,
        default=1024**3,
        help_text="With `deep`: compressed bytes each repository scan may stream (default 1 GiB, "
        "at most 1 PiB).",
    )
