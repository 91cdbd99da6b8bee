"""Registries and repositories: list, read, and the staff writes (through `analytics.registries`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.response import Response

from analytics.api.csv import CSVListMixin
from analytics.api.filters import BACKENDS, RepositoryFilter
from analytics.api.params import CheckedQuery
from analytics.api.serializers.common import BAD_REQUEST
from analytics.api.serializers.registries import (
    RegistryDetailSerializer,
    RegistrySerializer,
    RepositorySerializer,
)
from analytics.selectors.lists import registry_list, repository_list
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary


@extend_schema_view(
    list=extend_schema(
        summary="List registries", responses={200: RegistrySerializer(many=True), **BAD_REQUEST}
    ),
    retrieve=extend_schema(summary="A registry, with the dedup summary of everything scanned in it"),
    create=extend_schema(summary="Add a registry (staff)"),
    update=extend_schema(summary="Replace a registry's settings (staff)"),
    partial_update=extend_schema(summary="Change a registry's settings (staff)"),
    destroy=extend_schema(summary="Delete a registry and everything scanned from it (staff)"),
)
class RegistryViewSet(CheckedQuery, CSVListMixin, viewsets.ModelViewSet):
    """Registries. `password` and `events_secret` are write-only and never returned; `has_password` and
    `followed` say whether one is set."""

    serializer_class = RegistrySerializer
    filter_backends = BACKENDS
    filterset_fields = ["tracked", "insecure"]
    search_fields = ["name", "url"]
    ordering_fields = ["id", "name", "url", "created_at", "last_scanned_at", "last_event_at", "next_scan_at"]
    ordering = ["name"]

    def get_queryset(self):
        return registry_list()

    @extend_schema(responses=RegistryDetailSerializer)
    def retrieve(self, request, *args, **kwargs):
        registry = self.get_object()
        summary = dedup_summary(scope=Scope(registry_id=registry.id))
        context = {**self.get_serializer_context(), "summary": summary}
        return Response(RegistryDetailSerializer(registry, context=context).data)


@extend_schema_view(
    list=extend_schema(
        summary="List repositories", responses={200: RepositorySerializer(many=True), **BAD_REQUEST}
    ),
    retrieve=extend_schema(summary="A repository"),
    partial_update=extend_schema(summary="Track a repository or change its scan interval (staff)"),
)
class RepositoryViewSet(
    CheckedQuery,
    CSVListMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = RepositorySerializer
    http_method_names = ["get", "patch", "head", "options"]
    filter_backends = BACKENDS
    filterset_class = RepositoryFilter
    search_fields = ["name"]
    ordering_fields = ["id", "name", "registry", "first_seen", "last_scanned_at", "next_scan_at"]
    ordering = ["registry", "name"]

    def get_queryset(self):
        return repository_list()
