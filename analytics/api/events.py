"""The registry events receiver: `POST /api/v1/registries/{id}/events/`, one URL per registry for the
three formats (`analytics.events.formats`). Registries call it, not API users: no session, token or
CSRF; the registry's events secret (`Authorization: Bearer <secret>`, or as a Basic password for
senders that can only put credentials in the URL, like Quay) is the only credential. Answered 202 once
the events are committed to the inbox, so a registry's retry-until-2xx loses nothing."""

from __future__ import annotations

import base64
import binascii

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.events.formats import EventFormatError, events_parse
from analytics.events.inbox import events_refused, events_secret_matches, events_store
from analytics.infra import rates
from analytics.models import Registry

_DETAIL = inline_serializer("EventsRefusal", {"detail": serializers.CharField()})


def _given_secret(request: Request) -> str:
    """The secret in `Authorization`: a bearer token, or the password of Basic credentials."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


def _refuse(status: int, detail: str, *, registry: str, reason: str, wait: int | None = None) -> Response:
    events_refused(registry_name=registry, reason=reason)
    response = Response({"detail": detail}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="layerlens registry events"'
    if wait is not None:
        response["Retry-After"] = str(wait)
    return response


class RegistryEventsView(APIView):
    authentication_classes: list = []  # the events secret, checked below
    permission_classes = [AllowAny]
    throttle_classes: list = []  # refusals are limited per address below; a registry with its secret never
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
        },
        auth=[],
        tags=["registries"],
    )
    def post(self, request: Request, pk: int) -> Response:
        registry = Registry.objects.filter(pk=pk).only("id", "name", "events_secret_encrypted").first()
        name = registry.name if registry is not None else ""
        if registry is None or not events_secret_matches(registry, _given_secret(request)):
            # One answer for an unknown registry, one without a secret and a wrong secret. Only
            # refusals are counted against the address: a registry with its secret costs no counter.
            wait = rates.hit(rates.EVENTS_REFUSED, request)
            if wait is not None:
                detail = "too many refused requests from this address"
                return _refuse(429, detail, registry=name, reason="throttled", wait=wait)
            detail = "no events secret, or not this registry's"
            return _refuse(401, detail, registry=name, reason="unauthorized")
        cap = settings.EVENTS_MAX_BODY_BYTES
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > cap:
            detail = f"the body is over {cap:,} bytes (EVENTS_MAX_BODY_BYTES)"
            return _refuse(413, detail, registry=name, reason="too_large")
        try:
            parsed = events_parse(body=request.body, content_type=request.content_type or "")
        except EventFormatError as exc:
            return _refuse(400, str(exc), registry=name, reason=exc.reason)
        stored = events_store(registry=registry, events=parsed.events)
        return Response(
            {
                "received": stored.received,
                "stored": stored.stored,
                "duplicates": stored.duplicates,
                "ignored": parsed.ignored,
            },
            status=202,
        )
