"""What scans found: tags and their movements, images (with their sizes, layers, history and pull
counts) and the dedup summary of a scope. Each view calls one selector; image sizes, tags and pulls are
computed for the current page only (or each chunk of a whole-list CSV) and handed to the serializer in
its context."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api import params
from analytics.api.caching import SnapshotCachedRead
from analytics.api.csv import CSVListMixin, csv_stream, queryset_chunks, serializer_header, whole_list_wanted
from analytics.api.filters import BACKENDS, BACKENDS_NO_SEARCH, ImageFilter, TagEventFilter, TagFilter
from analytics.api.paging import UncountedOffsetPage
from analytics.api.params import SCOPE_PARAMETERS, CheckedQuery, scope_from_request
from analytics.api.serializers.common import BAD_REQUEST, SCOPE_ERRORS
from analytics.api.serializers.content import (
    DedupSummarySerializer,
    HistorySerializer,
    ImageDetailSerializer,
    ImageSerializer,
    LayerSerializer,
    TagEventSerializer,
    TagSerializer,
)
from analytics.selectors.images import (
    image_get_queryset,
    image_history,
    image_layers,
    image_sizes,
    image_tags,
    images,
)
from analytics.selectors.lists import tag_event_list, tag_list
from analytics.selectors.pulls import image_pulls
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary, images_count_maintained

# An image's detail embeds its bottom layers up to a page's worth; `layers/` pages them all.
DETAIL_LAYERS = params.MAX_PAGE_SIZE


def sizes_scope(scope: Scope) -> Scope | None:
    """Shared/unique are measured within the asked scope; with none, within each image's own registry."""
    if scope.registry_id is None and scope.repository_id is None and not scope.namespace:
        return None
    return scope


# --- tags and tag events ----------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List tags (current ones unless include_removed)",
        responses={200: TagSerializer(many=True), **BAD_REQUEST},
    ),
    retrieve=extend_schema(summary="A tag"),
)
class TagViewSet(SnapshotCachedRead, CheckedQuery, CSVListMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = TagSerializer
    pagination_class = UncountedOffsetPage  # a count(*) over every tag on each page is most of its cost
    filter_backends = BACKENDS
    filterset_class = TagFilter
    search_fields = ["name", "repository__name"]
    ordering_fields = ["id", "name", "repository", "first_seen", "last_seen", "removed_at"]
    ordering = ["repository", "name"]

    def get_queryset(self):
        include_removed = self.action != "list" or params.boolean(self.request, "include_removed")
        return tag_list(include_removed=include_removed)

    @extend_schema(
        summary="A tag's movements: created, moved, removed (newest first)",
        responses={200: TagEventSerializer(many=True), **BAD_REQUEST},
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def events(self, request, pk=None):
        tag = self.get_object()
        events = tag_event_list(tag_id=tag.id)
        if whole_list_wanted(request):
            chunks = queryset_chunks(events)
            rows = (TagEventSerializer(c, many=True).data for c in chunks)
            return csv_stream(request, rows, header=serializer_header(TagEventSerializer()))
        page = self.paginate_queryset(events)
        return self.get_paginated_response(TagEventSerializer(page, many=True).data)


@extend_schema_view(
    list=extend_schema(
        summary="Tag movements across repositories (newest first)",
        responses={200: TagEventSerializer(many=True), **BAD_REQUEST},
    ),
    retrieve=extend_schema(summary="A tag event"),
)
class TagEventViewSet(SnapshotCachedRead, CheckedQuery, CSVListMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = TagEventSerializer
    pagination_class = UncountedOffsetPage
    filter_backends = BACKENDS_NO_SEARCH
    filterset_class = TagEventFilter
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
            "pulls": image_pulls(holdings=page),
        }
        return ImageSerializer(page, many=True, context=context).data

    def image_page(self, queryset, *, scope: Scope | None):
        if whole_list_wanted(self.request):
            chunks = queryset_chunks(queryset)
            rows = (self.image_rows(c, scope=scope) for c in chunks)
            return csv_stream(self.request, rows, header=serializer_header(ImageSerializer()))
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
        responses={200: ImageSerializer(many=True), **SCOPE_ERRORS},
    ),
    retrieve=extend_schema(summary="An image with its layers", responses=ImageDetailSerializer),
)
class ImageViewSet(SnapshotCachedRead, CheckedQuery, ImagePageMixin, viewsets.ReadOnlyModelViewSet):
    """Images: single-platform manifests per repository; `id` is the repository-manifest id.

    Shared and unique bytes are measured within the scope asked for (`registry`, `namespace`,
    `repository`); with no scope, within each image's own registry.
    """

    serializer_class = ImageSerializer
    filter_backends = BACKENDS
    filterset_class = ImageFilter
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
        if not any(request.query_params.get(name) for name in ("search", *ImageFilter.base_filters)):
            count = images_count_maintained(scope=scope)
            if count is not None:  # a plain scope: its maintained image count, not count(*)
                self.paginator.use_count(count)
        return self.image_page(queryset, scope=sizes_scope(scope))

    def retrieve(self, request, *args, **kwargs):
        image = self.get_object()
        context = {
            **self.get_serializer_context(),
            "sizes": image_sizes(holding_ids=[image.id]),
            "tags": image_tags(holdings=[image]),
            "pulls": image_pulls(holdings=[image]),
            "layers": list(image_layers(manifest_id=image.manifest_id)[:DETAIL_LAYERS]),
        }
        return Response(ImageDetailSerializer(image, context=context).data)

    @extend_schema(
        summary="The image's layers, bottom (position 0) to top, in pages; a CSV without `page` is all",
        responses={200: LayerSerializer(many=True), **BAD_REQUEST},
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def layers(self, request, pk=None):
        image = self.get_object()
        return self.whole_or_page(image_layers(manifest_id=image.manifest_id), LayerSerializer)

    @extend_schema(
        summary="All history entries, oldest first, empty layers included (`docker image history`), in "
        "pages; a CSV without `page` is all",
        responses={200: HistorySerializer(many=True), **BAD_REQUEST},
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def history(self, request, pk=None):
        image = self.get_object()
        return self.whole_or_page(image_history(manifest_id=image.manifest_id), HistorySerializer)

    def whole_or_page(self, queryset, serializer_class):
        """An offset page of `queryset` (an image may have tens of thousands of layers), or the whole
        list as a CSV download."""
        if whole_list_wanted(self.request):
            rows = (serializer_class(c, many=True).data for c in queryset_chunks(queryset))
            return csv_stream(self.request, rows, header=serializer_header(serializer_class()))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)


# --- summary ----------------------------------------------------------------------------------------------


class SummaryView(SnapshotCachedRead, CheckedQuery, APIView):
    """The dedup summary of a scope: images, distinct layers, logical, stored and saved bytes, ratio."""

    @extend_schema(
        summary="Deduplication summary for a scope",
        parameters=SCOPE_PARAMETERS,
        responses={200: DedupSummarySerializer, **SCOPE_ERRORS},
    )
    def get(self, request):
        return Response(dedup_summary(scope=scope_from_request(request)).as_dict())
