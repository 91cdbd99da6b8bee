"""Saved cleanup policies: list and read them with their latest evaluation and their series; staff save,
change and delete them (through `analytics.policies.saved`, which parses the text: a policy that does not
parse is a 400 naming its line or JSON path, and nothing is saved)."""

from __future__ import annotations

import django_filters as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action

from analytics.api.csv import CSVListMixin, csv_stream, queryset_chunks, serializer_header, whole_list_wanted
from analytics.api.filters import BACKENDS_NO_SEARCH
from analytics.api.params import CheckedQuery
from analytics.api.serializers.common import BAD_REQUEST, ErrorSerializer
from analytics.api.serializers.policies import CleanupPolicySerializer, PolicyEvaluationSerializer
from analytics.models import CleanupPolicy
from analytics.policies.saved import cleanup_policy_delete
from analytics.selectors.policies import policy_list, policy_series

WRITE_ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 409: ErrorSerializer}


class CleanupPolicyFilter(filters.FilterSet):
    registry = filters.NumberFilter(field_name="registry_id", help_text="Registry id.")
    # not `format`: DRF reads that parameter as the renderer (`?format=csv`)
    policy_format = filters.ChoiceFilter(field_name="format", choices=CleanupPolicy.Format.choices)
    enabled = filters.BooleanFilter(field_name="enabled")

    class Meta:
        model = CleanupPolicy
        fields = ["registry", "policy_format", "enabled"]


@extend_schema_view(
    list=extend_schema(
        summary="List saved cleanup policies, each with its latest evaluation",
        responses={200: CleanupPolicySerializer(many=True), **BAD_REQUEST},
    ),
    retrieve=extend_schema(summary="A saved cleanup policy, with its latest evaluation"),
    create=extend_schema(
        summary="Save a cleanup policy for a registry (staff); a policy that does not parse is a 400",
        responses={201: CleanupPolicySerializer, **WRITE_ERRORS},
    ),
    update=extend_schema(
        summary="Replace a saved policy (staff)", responses={200: CleanupPolicySerializer, **WRITE_ERRORS}
    ),
    partial_update=extend_schema(
        summary="Change a saved policy (staff)", responses={200: CleanupPolicySerializer, **WRITE_ERRORS}
    ),
    destroy=extend_schema(summary="Delete a saved policy and its series (staff)"),
)
class CleanupPolicyViewSet(CheckedQuery, CSVListMixin, viewsets.ModelViewSet):
    """Cleanup policies saved per registry, in ECR's, GitLab's or Harbor's format or as Layerlens's
    what-if rule. After each scan or batch of events that changed the registry, a worker evaluates the
    enabled ones: each point is what deleting the policy's selection, then collecting garbage, would free."""

    serializer_class = CleanupPolicySerializer
    filter_backends = BACKENDS_NO_SEARCH
    filterset_class = CleanupPolicyFilter
    ordering_fields = ["id", "name", "registry", "created_at", "updated_at"]
    ordering = ["registry", "name", "id"]
    lookup_value_regex = r"\d+"  # `policies/preview/` and other words are not ids

    def get_queryset(self):
        return policy_list()

    def perform_destroy(self, instance: CleanupPolicy) -> None:
        cleanup_policy_delete(policy=instance)

    @extend_schema(
        summary="The policy's evaluations, newest first, in pages; a CSV without `page` is all",
        responses={200: PolicyEvaluationSerializer(many=True), **BAD_REQUEST},
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def series(self, request, pk=None):
        policy = self.get_object()
        points = policy_series(policy_id=policy.id)
        if whole_list_wanted(request):
            rows = (PolicyEvaluationSerializer(c, many=True).data for c in queryset_chunks(points))
            return csv_stream(request, rows, header=serializer_header(PolicyEvaluationSerializer()))
        page = self.paginate_queryset(points)
        return self.get_paginated_response(PolicyEvaluationSerializer(page, many=True).data)
