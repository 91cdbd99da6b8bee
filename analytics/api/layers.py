"""Layers: the ranking in a scope (a viewset over `layer_ranking`), one layer and the images holding
it, and the registry-scale lists over maintained counts (`layers/top/`, `layers/{digest}/repositories/`)
answered in keyset pages."""

from __future__ import annotations

from functools import partial

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api import params
from analytics.api.caching import SnapshotCachedRead
from analytics.api.content import ImagePageMixin, sizes_scope
from analytics.api.csv import CSVListMixin
from analytics.api.filters import BACKENDS, LayerFilter
from analytics.api.paging import KeysetPage
from analytics.api.params import AFTER, KEYSET_PARAMETERS, SCOPE_PARAMETERS, CheckedQuery, scope_from_request
from analytics.api.serializers.common import SCOPE_ERRORS
from analytics.api.serializers.content import (
    ImageSerializer,
    LayerRepositoriesPageSerializer,
    LayerRepositorySerializer,
    LayerTopPageSerializer,
    RankedLayerSerializer,
    TopLayerSerializer,
)
from analytics.errors import InvalidRequest
from analytics.models import Registry
from analytics.selectors.images import images
from analytics.selectors.layers import (
    layer_blob_id,
    layer_counts,
    layer_holders,
    layer_images,
    layer_maintained,
    layer_ranking,
    layer_ranking_maintained,
    layer_repositories,
    layer_top,
)
from analytics.selectors.scope import Scope

# A layers list asking for any of these is computed from the holdings (offset pages, counted).
COMPUTED_LIST_PARAMETERS = ("page", "ordering", "search", *LayerFilter.base_filters)


@extend_schema_view(
    list=extend_schema(
        summary="Layers ranked by how many images share them (keyset pages with `after` and no count on a "
        "registry or no scope, default order and no filter; otherwise offset pages with a count)",
        parameters=[*SCOPE_PARAMETERS, AFTER],
        responses={200: RankedLayerSerializer(many=True), **SCOPE_ERRORS},
    ),
    retrieve=extend_schema(
        summary="One layer with its sharing figures",
        parameters=SCOPE_PARAMETERS,
        responses={200: RankedLayerSerializer, **SCOPE_ERRORS},
    ),
)
class LayerViewSet(
    SnapshotCachedRead, CheckedQuery, CSVListMixin, ImagePageMixin, viewsets.ReadOnlyModelViewSet
):
    """Layer blobs in a scope; default order: most shared first, then most bytes saved."""

    serializer_class = RankedLayerSerializer
    filter_backends = BACKENDS
    filterset_class = LayerFilter
    search_fields = ["digest", "diff_id"]
    ordering_fields = ["images", "repositories", "saved_bytes", "size", "digest"]
    ordering = ["-images", "-saved_bytes", "digest"]
    lookup_field = "digest"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return layer_ranking(scope=scope_from_request(self.request))

    def retrieve(self, request, *args, **kwargs):
        """A plain registry (or every registry) reads the layer's maintained counts; any other scope is
        computed over its holdings."""
        scope = scope_from_request(request)
        if scope not in (Scope(), Scope(registry_id=scope.registry_id)):
            return super().retrieve(request, *args, **kwargs)
        layer = layer_maintained(digest=kwargs[self.lookup_field], registry_id=scope.registry_id)
        return Response(self.get_serializer(layer).data)

    def list(self, request, *args, **kwargs):
        """A plain registry (or every registry) in the default order reads the maintained counts in
        keyset pages; a filter, another order, `page` or another scope is computed (offset pages)."""
        keyset = KeysetPage(request, parts=4)
        scope = scope_from_request(request)
        plain = scope in (Scope(), Scope(registry_id=scope.registry_id))
        if not plain or any(request.query_params.get(name) for name in COMPUTED_LIST_PARAMETERS):
            if keyset.after is not None:
                raise InvalidRequest("after pages only a registry's (or every registry's) default ranking")
            return super().list(request, *args, **kwargs)
        if scope.registry_id is not None:
            registries = [scope.registry_id]
        else:
            registries = list(Registry.objects.order_by("id").values_list("id", flat=True))
        fetch = partial(layer_ranking_maintained, registry_ids=registries)
        if keyset.whole_list:
            return keyset.stream(fetch, self.csv_chunk)
        found, nxt = fetch(after=keyset.after, limit=keyset.size)
        return keyset.response(self.get_serializer(found, many=True).data, nxt, offset_shaped=True)

    @extend_schema(
        summary="Images holding this layer (keyset pages with `after` on a registry or no scope, "
        "offset pages with `page` on any other)",
        parameters=[*SCOPE_PARAMETERS, AFTER],
        responses={200: ImageSerializer(many=True), **SCOPE_ERRORS},
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def images(self, request, digest=None):
        scope = scope_from_request(request)
        # Both pages are documented here, so a bad `page` or `after` is a 400 whichever one serves.
        keyset = KeysetPage(request, parts=2)
        params.page_number(request)
        if scope in (Scope(), Scope(registry_id=scope.registry_id)):
            return self.holders_page(keyset, digest=digest, scope=scope)
        queryset = layer_images(digest=digest, scope=scope).order_by("id")
        return self.image_page(queryset, scope=sizes_scope(scope))

    def holders_page(self, page: KeysetPage, *, digest: str, scope: Scope):
        """Tagged images of a plain scope: a keyset page, whatever the layer's fan-out; `count` is the
        maintained holder count."""
        blob_id = layer_blob_id(digest=digest)
        fetch = partial(layer_holders, blob_id=blob_id, registry_id=scope.registry_id)

        def rows(ids: list[int]) -> list[dict]:
            by_id = {h.id: h for h in images(scope=Scope(include_untagged=True)).filter(id__in=ids)}
            holders = [by_id[i] for i in ids if i in by_id]  # gone since the keyset query: skipped
            return self.image_rows(holders, scope=sizes_scope(scope))

        if page.whole_list:
            return page.stream(fetch, rows)
        ids, nxt = fetch(after=page.after, limit=page.size)
        count = layer_counts(blob_id=blob_id, registry_id=scope.registry_id)[0]
        return page.response(rows(ids), nxt, count=count, offset_shaped=True)


class LayerTopView(SnapshotCachedRead, CheckedQuery, APIView):
    """A registry's layers ranked by images holding them (`order=images`) or bytes saved, with the
    `created_by` of the oldest manifest listing each; keyset pages (`next`)."""

    @extend_schema(
        summary="Layers of a registry ranked by images holding them or bytes saved (keyset pages)",
        parameters=[
            OpenApiParameter("registry", OpenApiTypes.STR, required=True),
            OpenApiParameter("order", OpenApiTypes.STR, enum=["images", "saved_bytes"]),
            *KEYSET_PARAMETERS,
        ],
        responses={200: LayerTopPageSerializer, **SCOPE_ERRORS},
    )
    def get(self, request):
        page = KeysetPage(request, parts=2)
        scope = scope_from_request(request)
        if scope.registry_id is None:
            raise InvalidRequest("name a registry (?registry=)")
        order = params.choice(request, "order", ("images", "saved_bytes"))
        fetch = partial(layer_top, registry_id=scope.registry_id, order=order)
        if page.whole_list:
            return page.stream(fetch, self.rows)
        found, nxt = fetch(after=page.after, limit=page.size)
        return page.response(self.rows(found), nxt)

    @staticmethod
    def rows(found: list) -> list[dict]:
        return TopLayerSerializer(found, many=True).data


class LayerRepositoriesView(SnapshotCachedRead, CheckedQuery, APIView):
    """Repositories whose tagged images list a layer, with images per repository; `count` is maintained."""

    @extend_schema(
        summary="Repositories holding a layer (keyset pages, with a count)",
        parameters=[OpenApiParameter("registry", OpenApiTypes.STR), *KEYSET_PARAMETERS],
        responses={200: LayerRepositoriesPageSerializer, **SCOPE_ERRORS},
    )
    def get(self, request, digest: str):
        page = KeysetPage(request, parts=1)
        registry_id = scope_from_request(request).registry_id
        blob_id = layer_blob_id(digest=digest)
        fetch = partial(layer_repositories, blob_id=blob_id, registry_id=registry_id)
        if page.whole_list:
            return page.stream(fetch, self.rows)
        found, nxt = fetch(after=page.after[0] if page.after else None, limit=page.size)
        count = layer_counts(blob_id=blob_id, registry_id=registry_id)[1]
        return page.response(self.rows(found), nxt, count=count)

    @staticmethod
    def rows(found: list) -> list[dict]:
        return LayerRepositorySerializer(found, many=True).data
