"""Docker Engines in the API: register, scan, and their `docker system df` view; the fleet across engines.

Engine figures share by ChainID (`analytics.engines.selectors`); registry figures by blob digest.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.csv import CSVListMixin
from analytics.api.params import CheckedQuery
from analytics.api.serializers.common import BAD_REQUEST
from analytics.api.serializers.engines import (
    EngineDiskUsageSerializer,
    EngineScanRequestSerializer,
    EngineScanSerializer,
    EngineSerializer,
    FleetSerializer,
)
from analytics.engines import selectors as engine_reports
from analytics.engines import services as engine_services
from analytics.models import Engine, EngineScan


@extend_schema_view(list=extend_schema(responses={200: EngineSerializer(many=True), **BAD_REQUEST}))
class EngineViewSet(CheckedQuery, CSVListMixin, viewsets.ModelViewSet):
    """Docker Engines: registered by endpoint; the TLS key is write-only, encrypted at rest."""

    serializer_class = EngineSerializer
    queryset = Engine.objects.all().order_by("name")

    @extend_schema(
        summary="The engine's `docker system df -v` view, computed from its recorded layers",
        responses=EngineDiskUsageSerializer,
    )
    @action(detail=True, methods=["get"])
    def df(self, request, pk=None):
        usage = engine_reports.engine_disk_usage(engine=self.get_object())
        return Response(EngineDiskUsageSerializer(usage).data)

    @extend_schema(request=EngineScanRequestSerializer, responses=EngineScanSerializer)
    @action(detail=True, methods=["post"])
    def scan(self, request, pk=None):
        body = EngineScanRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        engine = self.get_object()
        scan = engine_services.engine_scan_start(
            endpoint=engine.endpoint, pull=body.validated_data["pull"], trigger="api", check_reachable=True
        )
        return Response(EngineScanSerializer(scan).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(list=extend_schema(responses={200: EngineScanSerializer(many=True), **BAD_REQUEST}))
class EngineScanViewSet(
    CheckedQuery, CSVListMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = EngineScanSerializer
    queryset = EngineScan.objects.all().order_by("-created_at", "-id")


class FleetView(CheckedQuery, APIView):
    """Across engines: the layers and images the fleet holds, and the disk sharing saves on each node."""

    @extend_schema(summary="Fleet: layers, images and per-node savings", responses=FleetSerializer)
    def get(self, request):
        fleet = {
            "layers": engine_reports.fleet_layers(),
            "images": engine_reports.fleet_images(),
            "nodes": engine_reports.fleet_savings(),
        }
        return Response(FleetSerializer(fleet).data)
