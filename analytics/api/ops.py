"""Operator endpoints outside the API: `/healthz` (liveness), `/readyz` (readiness), `/metrics`.

Plain Django views: probes and Prometheus call them without a login. `/healthz` touches nothing (the
process answers); `/readyz` checks the database, the broker and the age of the events inbox; `/metrics`
serves the Prometheus text.

What names a registry (its host), or may (a failed check's reason), is for operators only: a caller with
`Authorization: Bearer $LAYERLENS_METRICS_TOKEN`, or a logged-in staff user. Anyone else gets `/readyz`'s
status without reasons or registries, and, when no token is set, `/metrics` summed over registries; with a
token set, `/metrics` answers only with it (401 otherwise).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from analytics.ops.health import readiness
from analytics.ops.metrics import metrics_registry


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _operator(request: HttpRequest) -> bool:
    token = settings.LAYERLENS_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), token.encode()):
            return True
    user = getattr(request, "user", None)
    return bool(user and user.is_authenticated and user.is_staff)


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    operator = _operator(request)
    state = readiness(detail=operator)
    body = state.as_dict() if operator else state.status()
    return JsonResponse(body, status=200 if state.ready else 503)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    operator = _operator(request)
    if settings.LAYERLENS_METRICS_TOKEN and not operator:
        response = HttpResponse("metrics need a bearer token\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(metrics_registry(named=operator)), content_type=CONTENT_TYPE_LATEST)
