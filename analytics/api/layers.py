"""Layer lists at registry scale: keyset pages over maintained counts (`analytics.selectors.layers`)."""

from __future__ import annotations

from functools import partial
from urllib.parse import urlencode

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.csv import csv_stream, keyset_chunks, whole_list_wanted
from analytics.api.params import keyset_param
from analytics.api.views import scope_from_request
from analytics.errors import InvalidRequest
from analytics.selectors.layers import (
    LayerRepository,
    RankedLayer,
    layer_blob_id,
    layer_counts,
    layer_repositories,
    layer_top,
)

AFTER = OpenApiParameter("after", OpenApiTypes.STR, description="the `next` key of the previous page")
LIMIT = OpenApiParameter("page_size", OpenApiTypes.INT, description="rows per page (at most 1000)")


def _page(request, results: list[dict], nxt: tuple | int | None, count: int | None = None) -> Response:
    query = request.query_params.copy()
    if nxt is not None:
        query["after"] = ".".join(str(v) for v in (nxt if isinstance(nxt, tuple) else (nxt,)))
    body: dict[str, object] = {}
    if count is not None:
        body["count"] = count
    body["next"] = request.build_absolute_uri(request.path + "?" + urlencode(query)) if nxt else None
    body["results"] = results
    return Response(body)


def _limit(request) -> int:
    return max(1, min(int(request.query_params.get("page_size") or 50), 1000))


class LayerTopView(APIView):
    """A registry's layers ranked by images holding them (`order=images`) or bytes saved, with the
    `created_by` of the oldest manifest listing each; keyset pages (`next`)."""

    @extend_schema(
        summary="Layers of a registry ranked by images holding them or bytes saved (keyset pages)",
        parameters=[
            OpenApiParameter("registry", OpenApiTypes.STR, required=True),
            OpenApiParameter("order", OpenApiTypes.STR, enum=["images", "saved_bytes"]),
            AFTER,
            LIMIT,
        ],
        responses=inline_serializer(
            "LayerTopPage",
            {"next": serializers.URLField(allow_null=True), "results": serializers.ListField()},
        ),
    )
    def get(self, request):
        scope = scope_from_request(request)
        if scope.registry_id is None:
            raise InvalidRequest("name a registry (?registry=)")
        order = request.query_params.get("order", "images")
        if order not in ("images", "saved_bytes"):
            raise InvalidRequest("order is images or saved_bytes")
        registry_id = scope.registry_id
        if whole_list_wanted(request):
            chunks = keyset_chunks(partial(layer_top, registry_id=registry_id, order=order))
            return csv_stream(request, (self.rows(page) for page in chunks))
        page, nxt = layer_top(
            registry_id=registry_id,
            order=order,
            after=keyset_param(request.query_params.get("after"), parts=2),
            limit=_limit(request),
        )
        return _page(request, self.rows(page), nxt)

    @staticmethod
    def rows(page: list[RankedLayer]) -> list[dict]:
        return [
            {
                "digest": r.digest,
                "size": r.size,
                "diff_id": r.diff_id,
                "images": r.images,
                "repositories": r.repositories,
                "saved_bytes": r.saved_bytes,
                "created_by": r.created_by,
            }
            for r in page
        ]


class LayerRepositoriesView(APIView):
    """Repositories whose tagged images list a layer, with images per repository; `count` is maintained."""

    @extend_schema(
        summary="Repositories holding a layer (keyset pages, with a count)",
        parameters=[OpenApiParameter("registry", OpenApiTypes.STR), AFTER, LIMIT],
        responses=inline_serializer(
            "LayerRepositoriesPage",
            {
                "count": serializers.IntegerField(),
                "next": serializers.URLField(allow_null=True),
                "results": serializers.ListField(),
            },
        ),
    )
    def get(self, request, digest: str):
        registry_id = scope_from_request(request).registry_id
        blob_id = layer_blob_id(digest=digest)
        if whole_list_wanted(request):
            chunks = keyset_chunks(partial(layer_repositories, blob_id=blob_id, registry_id=registry_id))
            return csv_stream(request, (self.rows(page) for page in chunks))
        after = keyset_param(request.query_params.get("after"), parts=1)
        page, nxt = layer_repositories(
            blob_id=blob_id,
            registry_id=registry_id,
            after=after[0] if after else None,
            limit=_limit(request),
        )
        count = layer_counts(blob_id=blob_id, registry_id=registry_id)[1]
        return _page(request, self.rows(page), nxt, count=count)

    @staticmethod
    def rows(page: list[LayerRepository]) -> list[dict]:
        return [
            {
                "repository_id": r.repository_id,
                "registry_id": r.registry_id,
                "name": r.name,
                "images": r.images,
            }
            for r in page
        ]
