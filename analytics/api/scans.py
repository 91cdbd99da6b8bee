"""Scans: list and read them with their errors; staff start one (`analytics.scans.start`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from analytics.api.csv import CSVListMixin, csv_stream, queryset_chunks, serializer_header, whole_list_wanted
from analytics.api.filters import BACKENDS_NO_SEARCH, ScanFilter
from analytics.api.params import MAX_PAGE_SIZE, CheckedQuery
from analytics.api.serializers.common import BAD_REQUEST
from analytics.api.serializers.scans import (
    ScanCreateSerializer,
    ScanDetailSerializer,
    ScanErrorSerializer,
    ScanSerializer,
)
from analytics.scans.start import scan_start
from analytics.selectors.lists import scan_errors, scan_list

# A scan's detail embeds its first errors up to a page's worth; `errors/` pages them all.
DETAIL_ERRORS = MAX_PAGE_SIZE


@extend_schema_view(
    list=extend_schema(
        summary="List scans, newest first", responses={200: ScanSerializer(many=True), **BAD_REQUEST}
    ),
    retrieve=extend_schema(summary="A scan with its errors", responses=ScanDetailSerializer),
)
class ScanViewSet(
    CheckedQuery,
    CSVListMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ScanSerializer
    filter_backends = BACKENDS_NO_SEARCH
    filterset_class = ScanFilter
    ordering_fields = ["id", "created_at", "started_at", "finished_at", "errors_count"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return scan_list()

    def get_serializer_class(self):
        # The browsable API's POST form asks for the create action's serializer.
        return ScanCreateSerializer if self.action == "create" else ScanSerializer

    def retrieve(self, request, *args, **kwargs):
        scan = self.get_object()
        context = {
            **self.get_serializer_context(),
            "errors": list(scan_errors(scan_id=scan.id)[:DETAIL_ERRORS]),
        }
        return Response(ScanDetailSerializer(scan, context=context).data)

    @extend_schema(
        summary="Start a scan of a registry, repository or tag (staff)",
        request=ScanCreateSerializer,
        responses={202: ScanSerializer, **BAD_REQUEST},
    )
    def create(self, request, *args, **kwargs):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        scan = scan_start(
            target=data["target"],
            trigger="api",
            deep_budget_bytes=data["deep_budget"] if data["deep"] else None,
            check_reachable=True,
        )
        return Response(ScanSerializer(scan).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="What the scan could not read",
        responses={200: ScanErrorSerializer(many=True), **BAD_REQUEST},
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def errors(self, request, pk=None):
        scan = self.get_object()
        errors = scan_errors(scan_id=scan.id)
        if whole_list_wanted(request):
            chunks = queryset_chunks(errors)
            rows = (ScanErrorSerializer(c, many=True).data for c in chunks)
            return csv_stream(request, rows, header=serializer_header(ScanErrorSerializer()))
        page = self.paginate_queryset(errors)
        return self.get_paginated_response(ScanErrorSerializer(page, many=True).data)
