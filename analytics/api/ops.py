"""Operator endpoints outside the API: `/healthz` (liveness), `/readyz` (readiness), `/metrics`.

Plain Django views with no session or login: probes and Prometheus call them without credentials.
`/healthz` touches nothing (the process answers); `/readyz` checks the database and the broker and
reports the tracked registries' last successful scans; `/metrics` may require a bearer token.
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


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    state = readiness()
    return JsonResponse(state.as_dict(), status=200 if state.ready else 503)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.LAYERLENS_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse("metrics need a bearer token\n", status=401, content_type="text/plain")
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)
