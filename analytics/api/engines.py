"""Docker Engines in the API: register, scan, and their `docker system df` view; the fleet across engines.

Engine figures share by ChainID (`analytics.engines.selectors`); registry figures by blob digest.
"""

from __future__ import annotations

from dataclasses import asdict

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.csv import CSVListMixin
from analytics.engines import selectors as engine_reports
from analytics.engines import services as engine_services
from analytics.models import Engine, EngineScan


class EngineSerializer(serializers.ModelSerializer):
    tls_key = serializers.CharField(write_only=True, required=False, allow_blank=True)
    has_tls_key = serializers.SerializerMethodField()

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
        extra_kwargs = {"name": {"required": False}}

    def get_has_tls_key(self, obj: Engine) -> bool:
        return bool(obj.tls_key_encrypted)

    def _save(self, data: dict, engine: Engine | None = None) -> Engine:
        with transaction.atomic():
            saved = engine_services.engine_upsert(
                endpoint=data.get("endpoint") or (engine.endpoint if engine else ""),
                name=data.get("name"),
                tls_ca=data.get("tls_ca"),
                tls_cert=data.get("tls_cert"),
                tls_key=data.get("tls_key"),
                pull_tracked=data.get("pull_tracked"),
            )
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
    pull = serializers.ListField(child=serializers.CharField(max_length=500), required=False, default=list)


class EngineViewSet(CSVListMixin, viewsets.ModelViewSet):
    """Docker Engines: registered by endpoint; the TLS key is write-only, encrypted at rest."""

    serializer_class = EngineSerializer
    queryset = Engine.objects.all().order_by("name")

    @extend_schema(summary="The engine's `docker system df -v` view, computed from its recorded layers")
    @action(detail=True, methods=["get"])
    def df(self, request, pk=None):
        return Response(engine_reports.engine_disk_usage(engine=self.get_object()).as_dict())

    @extend_schema(request=EngineScanRequestSerializer, responses=EngineScanSerializer)
    @action(detail=True, methods=["post"])
    def scan(self, request, pk=None):
        body = EngineScanRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        engine = self.get_object()
        scan = engine_services.engine_scan_start(
            endpoint=engine.endpoint, pull=body.validated_data["pull"], trigger="api"
        )
        return Response(EngineScanSerializer(scan).data, status=status.HTTP_202_ACCEPTED)


class EngineScanViewSet(
    CSVListMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = EngineScanSerializer
    queryset = EngineScan.objects.all().order_by("-created_at", "-id")


class FleetView(APIView):
    """Across engines: the layers and images the fleet holds, and the disk sharing saves on each node."""

    @extend_schema(summary="Fleet: layers, images and per-node savings", responses=dict)
    def get(self, request):
        return Response(
            {
                "layers": [asdict(x) for x in engine_reports.fleet_layers()],
                "images": [asdict(x) for x in engine_reports.fleet_images()],
                "nodes": engine_reports.fleet_savings(),
            }
        )
