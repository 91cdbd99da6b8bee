"""One error vocabulary: domain exceptions become `{"detail": message}` with their own status."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from analytics.errors import LayerlensError


def exception_handler(exc, context):
    if isinstance(exc, LayerlensError):
        return Response({"detail": str(exc)}, status=exc.status)
    return drf_exception_handler(exc, context)
