"""One error vocabulary: domain exceptions become `{"detail": message}` with their own status; a
statement the web statement timeout cancelled becomes a 503 saying how to narrow the question."""

from __future__ import annotations

from django.conf import settings
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from analytics.errors import LayerlensError
from analytics.infra.statements import is_statement_timeout, timeout_detail


def exception_handler(exc, context):
    if isinstance(exc, LayerlensError):
        return Response({"detail": str(exc)}, status=exc.status)
    if is_statement_timeout(exc):
        set_rollback()  # with ATOMIC_REQUESTS, the request's transaction is aborted
        return Response({"detail": timeout_detail(settings.WEB_STATEMENT_TIMEOUT_SECONDS)}, status=503)
    return drf_exception_handler(exc, context)
