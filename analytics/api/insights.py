"""Insights: partners, lineage, stale bases, what-if deletion, missed savings, build history,
largest layers, content in several registries, trends and growth. Each view calls one selector."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api import insight_serializers as s
from analytics.api.csv import CSVListMixin, csv_stream, offset_chunks, serializer_header, whole_list_wanted
from analytics.api.views import (
    SCOPE_ERRORS,
    SCOPE_PARAMETERS,
    _bool_param,
    datetime_param,
    scope_from_request,
)
from analytics.errors import InvalidRequest, NotFound
from analytics.models import Repository, RepositoryManifest
from analytics.selectors import content, whatif
from analytics.selectors.images import image_get_queryset
from analytics.selectors.lineage import image_derived, image_lineage, stale_bases
from analytics.selectors.lists import registry_lookup
from analytics.selectors.scope import Scope, scope_resolve
from analytics.selectors.trends import repository_growth, snapshot_series

PAGE_PARAMETERS = [
    OpenApiParameter("page", OpenApiTypes.INT, required=False, description="1-based page number."),
    OpenApiParameter("page_size", OpenApiTypes.INT, required=False, description="Rows per page (≤ 1000)."),
]
UNTAGGED = OpenApiParameter(
    "include_untagged", OpenApiTypes.BOOL, required=False, description="Also manifests no tag reaches."
)


def page_of(request, fetch, serializer_class):
    """Offset pages over an ORDER BY ... LIMIT query: fetch one row more to know if a next page exists,
    so no count(*) over the whole answer is ever run. A whole-list CSV walks the pages to the end."""
    if whole_list_wanted(request):
        rows = (serializer_class(rows, many=True).data for rows in offset_chunks(fetch))
        return csv_stream(request, rows, header=serializer_header(serializer_class()))
    try:
        page = max(int(request.query_params.get("page", 1)), 1)
        size = min(max(int(request.query_params.get("page_size", 50)), 1), 1000)
    except ValueError as exc:
        raise InvalidRequest("page and page_size are whole numbers") from exc
    rows = fetch(limit=size + 1, offset=(page - 1) * size)

    def link(number):
        return request.build_absolute_uri() if number is None else _replace(request, page=number)

    return Response(
        {
            "next": link(page + 1) if len(rows) > size else None,
            "previous": link(page - 1) if page > 1 else None,
            "results": serializer_class(rows[:size], many=True).data,
        }
    )


def _replace(request, **params):
    query = request.query_params.copy()
    for key, value in params.items():
        query[key] = str(value)
    return request.build_absolute_uri(request.path + "?" + query.urlencode())


def paged_schema(serializer_class, *, parameters=(), **kwargs):
    """An offset page of a list selector, documented as such."""
    name = f"Paged{serializer_class.__name__.removesuffix('Serializer')}List"
    page = type(
        name,
        (serializers.Serializer,),
        {
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )
    return extend_schema(
        parameters=[*parameters, *PAGE_PARAMETERS], responses={200: page, **SCOPE_ERRORS}, **kwargs
    )


class ComputeForReaders(BasePermission):
    """Read-only computations may be POSTed by anyone allowed to read."""

    def has_permission(self, request, view) -> bool:
        from django.conf import settings

        user = request.user
        return bool(settings.LAYERLENS_ANONYMOUS_READ or (user and user.is_authenticated))


def _image(pk: int) -> RepositoryManifest:
    try:
        return image_get_queryset().get(id=pk)
    except RepositoryManifest.DoesNotExist as exc:
        raise NotFound(f"no image {pk}") from exc


# --- partners and lineage ---------------------------------------------------------------------------------


class ImagePartnersView(APIView):
    @extend_schema(
        summary="The images sharing the most bytes with this one (within its registry unless scoped)",
        parameters=[
            *SCOPE_PARAMETERS,
            OpenApiParameter("limit", OpenApiTypes.INT, required=False, description="Top N (default 10)."),
        ],
        responses={200: s.PartnerSerializer(many=True), **SCOPE_ERRORS},
    )
    def get(self, request, pk: int):
        image = _image(pk)
        scope = scope_from_request(request)
        if scope.registry_id is None and scope.repository_id is None and not scope.namespace:
            scope = Scope(**{**asdict(scope), "registry_id": image.repository.registry_id})
        limit = min(int(request.query_params.get("limit", 10)), 1000)
        rows = content.image_partners(
            holding_id=image.id, manifest_id=image.manifest_id, scope=scope, limit=limit
        )
        return Response(s.PartnerSerializer(rows, many=True).data)


class ImageLineageView(APIView):
    @extend_schema(
        summary="The image's base (longest ordered layer prefix that is another image) and its chain",
        parameters=[UNTAGGED],
        responses={200: s.LineageSerializer, **SCOPE_ERRORS},
    )
    def get(self, request, pk: int):
        untagged = _bool_param(request, "include_untagged")
        chain = image_lineage(holding=_image(pk), include_untagged=untagged)
        data = {"base": chain[0] if chain else None, "chain": chain, "tagged_only": not untagged}
        return Response(s.LineageSerializer(data).data)


class ImageDerivedView(CSVListMixin, generics.ListAPIView):
    serializer_class = s.DerivedImageSerializer
    filter_backends: list = []

    @extend_schema(
        summary="Images built on this one: their layers start with all of its layers", parameters=[UNTAGGED]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        untagged = _bool_param(self.request, "include_untagged")
        return image_derived(holding=_image(self.kwargs["pk"]), include_untagged=untagged)


class StaleBasesView(APIView):
    @extend_schema(
        summary="Tags that moved while images built on their old digest are still tagged",
        parameters=[OpenApiParameter("registry", OpenApiTypes.STR, required=True)],
        responses={200: s.StaleBaseSerializer(many=True), **SCOPE_ERRORS},
    )
    def get(self, request):
        registry = registry_lookup(request.query_params.get("registry") or "")
        rows = [
            {**asdict(r), "affected": [list(map(str, a)) for a in r.affected]}
            for r in stale_bases(registry_id=registry.id)
        ]
        return Response(s.StaleBaseSerializer(rows, many=True).data)


# --- what-if deletion -------------------------------------------------------------------------------------


def _rule(data) -> whatif.TagRule:
    scope = scope_resolve(
        registry=data.get("registry") or None,
        namespace=data.get("namespace") or None,
        repository=data.get("repository") or None,
    )
    tags = []
    for name in data.get("tags") or []:
        repository, sep, tag = name.rpartition(":")
        if not sep or not repository:
            raise InvalidRequest(f"tags are repository:tag, not {name!r}")
        tags.append((repository, tag))
    if not any(
        [
            scope.registry_id,
            scope.namespace,
            scope.repository_id,
            data.get("tag_glob"),
            tags,
            data.get("images"),
        ]
    ):
        raise InvalidRequest("name a registry, namespace, repository, tag_glob, tags or images")
    return whatif.TagRule(
        registry_id=scope.registry_id,
        namespace=scope.namespace,
        repository_id=scope.repository_id,
        tag_glob=data.get("tag_glob") or None,
        not_seen_days=data.get("not_seen_days"),
        keep_newest=data.get("keep_newest"),
        newest_by=data.get("newest_by") or "first_seen",
        tags=tuple(tags),
        holding_ids=tuple(data.get("images") or ()),
    )


def _impact_data(impact: whatif.DeletionImpact) -> dict:
    data = asdict(impact)
    data["deleted_tags"] = [list(map(str, t)) for t in impact.deleted_tags]
    return data


class WhatIfView(APIView):
    """Read-only: computes what deleting the selected tags and collecting garbage frees."""

    permission_classes = [ComputeForReaders]

    @extend_schema(
        summary="What-if deletion (rule as query parameters)",
        parameters=[s.WhatIfRequestSerializer],
        responses={200: s.DeletionImpactSerializer, **SCOPE_ERRORS},
    )
    def get(self, request):
        form = s.WhatIfRequestSerializer(
            data={
                **request.query_params.dict(),
                "tags": request.query_params.getlist("tags"),
                "images": request.query_params.getlist("images"),
            }
        )
        form.is_valid(raise_exception=True)
        return self._answer(form.validated_data)

    @extend_schema(
        summary="What-if deletion (rule as a JSON body; computes only, deletes nothing)",
        request=s.WhatIfRequestSerializer,
        responses={200: s.DeletionImpactSerializer, **SCOPE_ERRORS},
    )
    def post(self, request):
        form = s.WhatIfRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return self._answer(form.validated_data)

    def _answer(self, data):
        impact = whatif.whatif(rule=_rule(data), details=data.get("details", True))
        return Response(s.DeletionImpactSerializer(_impact_data(impact)).data)


# --- content lists ----------------------------------------------------------------------------------------


class MissedSavingsView(APIView):
    @paged_schema(
        s.MissedSavingSerializer,
        summary="One diff_id stored under several blob digests, per registry",
        parameters=SCOPE_PARAMETERS,
    )
    def get(self, request):
        scope = scope_from_request(request)
        return page_of(
            request, lambda **p: content.missed_savings(scope=scope, **p), s.MissedSavingSerializer
        )


class BuildHistoryView(APIView):
    @paged_schema(
        s.InstructionBytesSerializer,
        summary="created_by lines ranked by the stored, unique or logical bytes of their layers",
        parameters=[
            *SCOPE_PARAMETERS,
            OpenApiParameter("order", OpenApiTypes.STR, enum=["stored", "unique", "logical"], required=False),
        ],
    )
    def get(self, request):
        scope = scope_from_request(request)
        order = request.query_params.get("order", "stored")
        if order not in {"stored", "unique", "logical"}:
            raise InvalidRequest("order is stored, unique or logical")
        return page_of(
            request,
            lambda **p: content.bytes_by_instruction(scope=scope, order=order, **p),
            s.InstructionBytesSerializer,
        )


class LargestLayersView(APIView):
    @paged_schema(
        s.LargeLayerSerializer,
        summary="The largest layers in a scope, with the images holding them",
        parameters=SCOPE_PARAMETERS,
    )
    def get(self, request):
        scope = scope_from_request(request)
        return page_of(request, lambda **p: content.largest_layers(scope=scope, **p), s.LargeLayerSerializer)


class CrossRegistryView(APIView):
    @paged_schema(
        s.CrossRegistrySerializer,
        summary="Digests held in more than one registry, and what each copy costs",
        parameters=[UNTAGGED],
    )
    def get(self, request):
        untagged = _bool_param(request, "include_untagged")
        return page_of(
            request,
            lambda **p: content.cross_registry_content(include_untagged=untagged, **p),
            s.CrossRegistrySerializer,
        )


# --- trends -----------------------------------------------------------------------------------------------


class TrendsView(CSVListMixin, generics.ListAPIView):
    serializer_class = s.SnapshotSerializer
    filter_backends: list = []

    @extend_schema(
        summary="Summary figures after each scan, oldest first (a registry's, or one repository's)",
        parameters=[
            OpenApiParameter("registry", OpenApiTypes.STR, required=False),
            OpenApiParameter("repository", OpenApiTypes.INT, required=False, description="Repository id."),
            OpenApiParameter("since", OpenApiTypes.DATETIME, required=False),
            OpenApiParameter("until", OpenApiTypes.DATETIME, required=False),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        registry = params.get("registry")
        repository = params.get("repository")
        return snapshot_series(
            registry_id=registry_lookup(registry).id if registry else None,
            repository_id=int(repository) if repository and repository.isdigit() else None,
            since=datetime_param(self.request, "since"),
            until=datetime_param(self.request, "until"),
        )


class RepositoryGrowthView(APIView):
    @extend_schema(
        summary="How a repository's figures changed between two dates (from the stored snapshots)",
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATETIME, required=True),
            OpenApiParameter("end", OpenApiTypes.DATETIME, required=True),
        ],
        responses={200: s.GrowthSerializer, **SCOPE_ERRORS},
    )
    def get(self, request, pk: int):
        repository = Repository.objects.select_related("registry").filter(id=pk).first()
        if repository is None:
            raise NotFound(f"no repository {pk}")
        start, end = datetime_param(request, "start"), datetime_param(request, "end")
        if start is None or end is None:
            raise InvalidRequest("start and end are required")
        growth = repository_growth(repository=repository, start=start, end=end)
        return Response(s.GrowthSerializer(growth).data)
