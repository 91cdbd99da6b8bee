"""The registry events receiver: `POST /api/v1/registries/{id}/events/`, one URL per registry for the
three formats (`analytics.events.formats`). Registries call it, not API users: no session, token or
CSRF; the registry's events secret (`Authorization: Bearer <secret>`, or as a Basic password for
senders that can only put credentials in the URL, like Quay) is the only credential. Answered 202 once
the events are committed to the inbox, so a registry's retry-until-2xx loses nothing.

Two entry points answer it by the same rules (`analytics.events.receive`): the DRF view here, which the
OpenAPI schema documents and Django's test client and live server reach, and `events_wsgi`
(`analytics.api.events_wsgi`), which the web serves in front of Django so that an event costs no
middleware chain and no DRF dispatch."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.events.receive import events_receive

_DETAIL = inline_serializer("EventsRefusal", {"detail": serializers.CharField()})


class RegistryEventsView(APIView):
    authentication_classes: list = []  # the events secret, checked by events_receive
    permission_classes = [AllowAny]
    throttle_classes: list = []  # refusals are limited per address there; a registry with its secret never
    parser_classes: list = []  # the body is read raw, its format told by content type and shape

    @extend_schema(
        summary="Receive a registry's events (for the registry, not API users)",
        description=(
            "Distribution notifications (`application/vnd.docker.distribution.events.v1+json`), Harbor "
            "webhooks and Quay repository-push notifications (`application/json`), authenticated by the "
            "registry's events secret as `Authorization: Bearer <secret>` (or a Basic password). 202 once "
            "stored; a repeated event id is stored once."
        ),
        request={
            "application/vnd.docker.distribution.events.v1+json": OpenApiTypes.OBJECT,
            "application/json": OpenApiTypes.OBJECT,
        },
        responses={
            202: inline_serializer(
                "EventsAccepted",
                {
                    "received": serializers.IntegerField(),
                    "stored": serializers.IntegerField(),
                    "duplicates": serializers.IntegerField(),
                    "ignored": serializers.IntegerField(),
                },
            ),
            400: OpenApiResponse(_DETAIL, description="malformed JSON, unknown media type or shape"),
            401: OpenApiResponse(_DETAIL, description="no or a wrong secret, or a registry without one"),
            413: OpenApiResponse(_DETAIL, description="a body over EVENTS_MAX_BODY_BYTES"),
            429: OpenApiResponse(_DETAIL, description="too many refused requests from this address"),
            503: OpenApiResponse(_DETAIL, description="the database did not answer; nothing stored"),
        },
        auth=[],
        tags=["registries"],
    )
    def post(self, request: Request, pk: int) -> Response:
        answer = events_receive(registry_id=pk, meta=request.META, read_body=lambda: request.body)
        response = Response(answer.body, status=answer.status)
        for name, value in answer.headers:
            response[name] = value
        return response
