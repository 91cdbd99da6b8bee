"""The bounds every request meets, whichever view answers it (API, pages, admin): a body no larger than
DATA_UPLOAD_MAX_MEMORY_SIZE is refused with a 413 before anything reads it (DRF's parsers read the
stream without Django's check). The API answers `{"detail": ...}`, everything else plain text."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


def _reply(request: HttpRequest, status: int, detail: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": detail}, status=status)
    return HttpResponse(detail + "\n", status=status, content_type="text/plain; charset=utf-8")


def _body_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:  # Django reads such a body as empty
        return 0


def refusal(request: HttpRequest) -> tuple[int, str] | None:
    """Why the request is refused before a view runs, as (status, detail); None when it is not."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and _body_length(request) > limit:
        return 413, (
            f"the request body is {_body_length(request):,} bytes; at most {limit:,} are accepted "
            "(DATA_UPLOAD_MAX_MEMORY_SIZE)"
        )
    return None


class RequestBounds:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = refusal(request)
        if refused is not None:
            return _reply(request, *refused)
        return self.get_response(request)
