"""REST API views. Each calls one selector or service; per-page extras (image sizes and tags, a
registry's summary, a scan's errors) are computed here for the current page only and handed to the
serializer through its context."""

from __future__ import annotations

from datetime import UTC, datetime, time
from functools import partial

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api import filters, serializers
from analytics.api.csv import (
    CSVListMixin,
    csv_stream,
    keyset_chunks,
    queryset_chunks,
    serializer_header,
    whole_list_wanted,
)
from analytics.api.params import keyset_param
from analytics.errors import InvalidRequest
from analytics.scans.start import scan_start
from analytics.selectors.images import (
    image_get_queryset,
    image_history,
    image_layers,
    image_sizes,
    image_tags,
    images,
)
from analytics.selectors.layers import layer_blob_id, layer_counts, layer_holders, layer_images, layer_ranking
from analytics.selectors.lists import (
    registry_list,
    repository_list,
    scan_errors,
    scan_list,
    tag_event_list,
    tag_list,
)
from analytics.selectors.scope import Scope, scope_resolve
from analytics.selectors.summary import dedup_summary

_TRUE = {"1", "true", "yes", "on"}


def _bool_param(request, name: str) -> bool:
    return str(request.query_params.get(name, "")).strip().lower() in _TRUE


SCOPE_PARAMETERS = [
    OpenApiParameter(
        "registry",
        OpenApiTypes.STR,
        description="Registry by id, name, base URL or host:port.",
        required=False,
    ),
    OpenApiParameter(
        "namespace",
        OpenApiTypes.STR,
        description="Repository path prefix, e.g. `team` (matches team/*).",
        required=False,
    ),
    OpenApiParameter(
        "repository", OpenApiTypes.STR, description="Repository name, e.g. `team/app`.", required=False
    ),
    OpenApiParameter(
        "include_untagged",
        OpenApiTypes.BOOL,
        required=False,
        description="Count manifests no current tag reaches (default false: tagged images only).",
    ),
    OpenApiParameter(
        "tag_glob", OpenApiTypes.STR, required=False, description="Tag glob (`v1.*`, `release-?`, `[0-9]*`)."
    ),
    OpenApiParameter(
        "label",
        OpenApiTypes.STR,
        required=False,
        many=True,
        description="Config label `key=value`; repeat for several (all must match).",
    ),
    OpenApiParameter(
        "platform", OpenApiTypes.STR, required=False, description="`os/architecture[/variant]`."
    ),
    OpenApiParameter(
        "last_seen_before", OpenApiTypes.DATETIME, required=False, description="Held, last seen before."
    ),
    OpenApiParameter(
        "last_seen_after", OpenApiTypes.DATETIME, required=False, description="Held, last seen at or after."
    ),
]


def datetime_param(request, name: str):
    raw = request.query_params.get(name)
    if not raw:
        return None
    value = parse_datetime(raw) or (datetime.combine(parse_date(raw), time.min) if parse_date(raw) else None)
    if value is None:
        raise InvalidRequest(f"{name}: not an ISO 8601 date or time: {raw!r}")
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def scope_from_request(request) -> Scope:
    params = request.query_params
    labels = {}
    for item in params.getlist("label"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"label must be key=value, not {item!r}")
        labels[key] = value
    return scope_resolve(
        registry=params.get("registry") or None,
        namespace=params.get("namespace") or None,
        repository=params.get("repository") or None,
        include_untagged=_bool_param(request, "include_untagged"),
        tag_glob=params.get("tag_glob") or None,
        labels=labels,
        platform=params.get("platform") or None,
        last_seen_before=datetime_param(request, "last_seen_before"),
        last_seen_after=datetime_param(request, "last_seen_after"),
    )


def _sizes_scope(scope: Scope) -> Scope | None:
    """Shared/unique are measured within the asked scope; with none, within each image's own registry."""
    if scope.registry_id is None and scope.repository_id is None and not scope.namespace:
        return None
    return scope


class AliasOrderingFilter(OrderingFilter):
    """`?ordering=` with public names: a view's `ordering_aliases` maps them to model paths."""

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        aliases = getattr(view, "ordering_aliases", {})
        if not ordering or not aliases:
            return ordering
        return [
            ("-" if term.startswith("-") else "") + aliases.get(term.lstrip("-"), term.lstrip("-"))
            for term in ordering
        ]


BACKENDS = [DjangoFilterBackend, AliasOrderingFilter, SearchFilter]
BACKENDS_NO_SEARCH = [DjangoFilterBackend, AliasOrderingFilter]
# The scope parameters name registries and repositories; one that does not exist is a 404.
SCOPE_ERRORS = {400: serializers.ErrorSerializer, 404: serializers.ErrorSerializer}


# --- registries -------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List registries"),
    retrieve=extend_schema(summary="A registry, with the dedup summary of everything scanned in it"),
    create=extend_schema(summary="Add a registry (staff)"),
    update=extend_schema(summary="Replace a registry's settings (staff)"),
    partial_update=extend_schema(summary="Change a registry's settings (staff)"),
    destroy=extend_schema(summary="Delete a registry and everything scanned from it (staff)"),
)
class RegistryViewSet(CSVListMixin, viewsets.ModelViewSet):
    """Registries. `password` is write-only and never returned; `has_password` says whether one is set."""

    serializer_class = serializers.RegistrySerializer
    filter_backends = BACKENDS
    filterset_fields = ["tracked", "insecure"]
    search_fields = ["name", "url"]
    ordering_fields = ["id", "name", "url", "created_at", "last_scanned_at", "next_scan_at"]
    ordering = ["name"]

    def get_queryset(self):
        return registry_list()

    @extend_schema(responses=serializers.RegistryDetailSerializer)
    def retrieve(self, request, *args, **kwargs):
        registry = self.get_object()
        summary = dedup_summary(scope=Scope(registry_id=registry.id))
        context = {**self.get_serializer_context(), "summary": summary}
        return Response(serializers.RegistryDetailSerializer(registry, context=context).data)


# --- repositories, tags, tag events -----------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List repositories"),
    retrieve=extend_schema(summary="A repository"),
    partial_update=extend_schema(summary="Track a repository or change its scan interval (staff)"),
)
class RepositoryViewSet(
    CSVListMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = serializers.RepositorySerializer
    http_method_names = ["get", "patch", "head", "options"]
    filter_backends = BACKENDS
    filterset_class = filters.RepositoryFilter
    search_fields = ["name"]
    ordering_fields = ["id", "name", "registry", "first_seen", "last_scanned_at", "next_scan_at"]
    ordering = ["registry", "name"]

    def get_queryset(self):
        return repository_list()


@extend_schema_view(
    list=extend_schema(summary="List tags (current ones unless include_removed)"),
    retrieve=extend_schema(summary="A tag"),
)
class TagViewSet(CSVListMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.TagSerializer
    filter_backends = BACKENDS
    filterset_class = filters.TagFilter
    search_fields = ["name", "repository__name"]
    ordering_fields = ["id", "name", "repository", "first_seen", "last_seen", "removed_at"]
    ordering = ["repository", "name"]

    def get_queryset(self):
        include_removed = self.action != "list" or _bool_param(self.request, "include_removed")
        return tag_list(include_removed=include_removed)

    @extend_schema(
        summary="A tag's movements: created, moved, removed (newest first)",
        responses=serializers.TagEventSerializer(many=True),
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def events(self, request, pk=None):
        tag = self.get_object()
        events = tag_event_list(tag_id=tag.id)
        if whole_list_wanted(request):
            chunks = queryset_chunks(events)
            rows = (serializers.TagEventSerializer(c, many=True).data for c in chunks)
            return csv_stream(request, rows, header=serializer_header(serializers.TagEventSerializer()))
        page = self.paginate_queryset(events)
        return self.get_paginated_response(serializers.TagEventSerializer(page, many=True).data)


@extend_schema_view(
    list=extend_schema(summary="Tag movements across repositories (newest first)"),
    retrieve=extend_schema(summary="A tag event"),
)
class TagEventViewSet(CSVListMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.TagEventSerializer
    filter_backends = BACKENDS_NO_SEARCH
    filterset_class = filters.TagEventFilter
    ordering_fields = ["id", "seen_at"]
    ordering = ["-seen_at", "-id"]

    def get_queryset(self):
        return tag_event_list()


# --- images -----------------------------------------------------------------------------------------------


class ImagePageMixin:
    """Paginate images and add, for the current page only, their sizes and tags (a whole-list CSV: for
    each chunk)."""

    def image_rows(self, page: list, *, scope: Scope | None) -> list[dict]:
        context = {
            **self.get_serializer_context(),
            "sizes": image_sizes(holding_ids=[h.id for h in page], scope=scope),
            "tags": image_tags(holdings=page),
        }
        return serializers.ImageSerializer(page, many=True, context=context).data

    def image_page(self, queryset, *, scope: Scope | None):
        if whole_list_wanted(self.request):
            chunks = queryset_chunks(queryset)
            rows = (self.image_rows(c, scope=scope) for c in chunks)
            return csv_stream(self.request, rows, header=serializer_header(serializers.ImageSerializer()))
        return self.get_paginated_response(self.image_rows(self.paginate_queryset(queryset), scope=scope))


IMAGE_ORDERING_ALIASES = {
    "created": "manifest__created",
    "digest": "manifest__digest",
    "repository": "repository__name",
    "layer_count": "manifest__layer_count",
    "layers_size": "manifest__layers_size",
}


@extend_schema_view(
    list=extend_schema(
        summary="Images in a scope, with sizes, shared and unique bytes",
        parameters=SCOPE_PARAMETERS,
        responses={200: serializers.ImageSerializer(many=True), **SCOPE_ERRORS},
    ),
    retrieve=extend_schema(summary="An image with its layers", responses=serializers.ImageDetailSerializer),
)
class ImageViewSet(ImagePageMixin, viewsets.ReadOnlyModelViewSet):
    """Images: single-platform manifests per repository; `id` is the repository-manifest id.

    Shared and unique bytes are measured within the scope asked for (`registry`, `namespace`,
    `repository`); with no scope, within each image's own registry.
    """

    serializer_class = serializers.ImageSerializer
    filter_backends = BACKENDS
    filterset_class = filters.ImageFilter
    search_fields = ["repository__name", "manifest__digest"]
    ordering_fields = ["id", "first_seen", "last_seen", *IMAGE_ORDERING_ALIASES]
    ordering_aliases = IMAGE_ORDERING_ALIASES
    ordering = ["id"]

    def get_queryset(self):
        if self.action == "list":
            return images(scope=scope_from_request(self.request))
        return image_get_queryset()

    def list(self, request, *args, **kwargs):
        scope = scope_from_request(request)
        queryset = self.filter_queryset(images(scope=scope))
        return self.image_page(queryset, scope=_sizes_scope(scope))

    def retrieve(self, request, *args, **kwargs):
        image = self.get_object()
        context = {
            **self.get_serializer_context(),
            "sizes": image_sizes(holding_ids=[image.id]),
            "tags": image_tags(holdings=[image]),
            "layers": list(image_layers(manifest_id=image.manifest_id)),
        }
        return Response(serializers.ImageDetailSerializer(image, context=context).data)

    @extend_schema(
        summary="The image's layers, bottom (position 0) to top; not paginated",
        responses=serializers.LayerSerializer(many=True),
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def layers(self, request, pk=None):
        image = self.get_object()
        return Response(
            serializers.LayerSerializer(image_layers(manifest_id=image.manifest_id), many=True).data
        )

    @extend_schema(
        summary="All history entries, oldest first, empty layers included (`docker image history`); "
        "not paginated",
        responses=serializers.HistorySerializer(many=True),
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def history(self, request, pk=None):
        image = self.get_object()
        return Response(
            serializers.HistorySerializer(image_history(manifest_id=image.manifest_id), many=True).data
        )


# --- layers -----------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Layers ranked by how many images share them",
        parameters=SCOPE_PARAMETERS,
        responses={200: serializers.RankedLayerSerializer(many=True), **SCOPE_ERRORS},
    ),
    retrieve=extend_schema(
        summary="One layer with its sharing figures",
        parameters=SCOPE_PARAMETERS,
        responses={200: serializers.RankedLayerSerializer, **SCOPE_ERRORS},
    ),
)
class LayerViewSet(CSVListMixin, ImagePageMixin, viewsets.ReadOnlyModelViewSet):
    """Layer blobs in a scope; default order: most shared first, then most bytes saved."""

    serializer_class = serializers.RankedLayerSerializer
    filter_backends = BACKENDS
    filterset_class = filters.LayerFilter
    search_fields = ["digest", "diff_id"]
    ordering_fields = ["images", "repositories", "saved_bytes", "size", "digest"]
    ordering = ["-images", "-saved_bytes", "digest"]
    lookup_field = "digest"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return layer_ranking(scope=scope_from_request(self.request))

    @extend_schema(
        summary="Images holding this layer",
        parameters=SCOPE_PARAMETERS,
        responses={200: serializers.ImageSerializer(many=True), **SCOPE_ERRORS},
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def images(self, request, digest=None):
        scope = scope_from_request(request)
        if scope in (Scope(), Scope(registry_id=scope.registry_id)):
            return self._images_keyset(request, digest=digest, scope=scope)
        queryset = layer_images(digest=digest, scope=scope).order_by("id")
        return self.image_page(queryset, scope=_sizes_scope(scope))

    def _images_keyset(self, request, *, digest: str, scope: Scope):
        """Tagged images of a plain scope: a keyset page (`?after=`), whatever the layer's fan-out;
        `count` is the maintained holder count."""
        from urllib.parse import urlencode

        blob_id = layer_blob_id(digest=digest)

        def holders(ids: list[int]) -> list:
            by_id = {h.id: h for h in images(scope=Scope(include_untagged=True)).filter(id__in=ids)}
            return [by_id[i] for i in ids if i in by_id]  # gone since the keyset query: skipped

        if whole_list_wanted(request):
            chunks = keyset_chunks(partial(layer_holders, blob_id=blob_id, registry_id=scope.registry_id))
            rows = (self.image_rows(holders(ids), scope=_sizes_scope(scope)) for ids in chunks)
            return csv_stream(request, rows)
        after = keyset_param(request.query_params.get("after"), parts=2)
        limit = min(int(request.query_params.get("page_size") or 50), 1000)
        ids, nxt = layer_holders(blob_id=blob_id, registry_id=scope.registry_id, after=after, limit=limit)
        query = request.query_params.copy()
        if nxt:
            query["after"] = f"{nxt[0]}.{nxt[1]}"
        return Response(
            {
                "count": layer_counts(blob_id=blob_id, registry_id=scope.registry_id)[0],
                "next": request.build_absolute_uri(request.path + "?" + urlencode(query)) if nxt else None,
                "previous": None,
                "results": self.image_rows(holders(ids), scope=_sizes_scope(scope)),
            }
        )


# --- summary ----------------------------------------------------------------------------------------------


class SummaryView(APIView):
    """The dedup summary of a scope: images, distinct layers, logical, stored and saved bytes, ratio."""

    @extend_schema(
        summary="Deduplication summary for a scope",
        parameters=SCOPE_PARAMETERS,
        responses={200: serializers.DedupSummarySerializer, **SCOPE_ERRORS},
    )
    def get(self, request):
        return Response(dedup_summary(scope=scope_from_request(request)).as_dict())


# --- scans ------------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List scans, newest first"),
    retrieve=extend_schema(summary="A scan with its errors", responses=serializers.ScanDetailSerializer),
)
class ScanViewSet(
    CSVListMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = serializers.ScanSerializer
    filter_backends = BACKENDS_NO_SEARCH
    filterset_class = filters.ScanFilter
    ordering_fields = ["id", "created_at", "started_at", "finished_at", "errors_count"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return scan_list()

    def get_serializer_class(self):
        # The browsable API's POST form asks for the create action's serializer.
        return serializers.ScanCreateSerializer if self.action == "create" else serializers.ScanSerializer

    def retrieve(self, request, *args, **kwargs):
        scan = self.get_object()
        context = {
            **self.get_serializer_context(),
            "errors": list(scan_errors(scan_id=scan.id)),
        }
        return Response(serializers.ScanDetailSerializer(scan, context=context).data)

    @extend_schema(
        summary="Start a scan of a registry, repository or tag (staff)",
        request=serializers.ScanCreateSerializer,
        responses={202: serializers.ScanSerializer, 400: serializers.ErrorSerializer},
    )
    def create(self, request, *args, **kwargs):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        scan = scan_start(
            target=data["target"],
            trigger="api",
            deep_budget_bytes=data["deep_budget"] if data["deep"] else None,
        )
        return Response(serializers.ScanSerializer(scan).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="What the scan could not read",
        responses=serializers.ScanErrorSerializer(many=True),
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def errors(self, request, pk=None):
        scan = self.get_object()
        errors = scan_errors(scan_id=scan.id)
        if whole_list_wanted(request):
            chunks = queryset_chunks(errors)
            rows = (serializers.ScanErrorSerializer(c, many=True).data for c in chunks)
            return csv_stream(request, rows, header=serializer_header(serializers.ScanErrorSerializer()))
        page = self.paginate_queryset(errors)
        return self.get_paginated_response(serializers.ScanErrorSerializer(page, many=True).data)
