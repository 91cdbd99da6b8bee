"""How often a caller may knock the API: per user, per anonymous address, and a tighter rate for what is
costly, counted by `analytics.infra.rates` in the cache every web instance shares.

The `expensive` rate is for views that set `throttle_scope = "expensive"` (what-if) and for whole-list
CSV exports (`export_check`, called where a request is known to want the whole list).
"""

from __future__ import annotations

from rest_framework.exceptions import APIException, Throttled
from rest_framework.throttling import BaseThrottle

from analytics.infra import inflight, rates
from analytics.infra.rates import EXPENSIVE, parse_rate

__all__ = ["EXPENSIVE", "AnonThrottle", "ExpensiveThrottle", "UserThrottle", "export_check", "parse_rate"]


class _RateThrottle(BaseThrottle):
    scope = ""

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def applies(self, request, view) -> bool:
        return True

    def allow_request(self, request, view) -> bool:
        if not self.applies(request, view):
            return True
        self.retry_after = rates.hit(self.scope, request)
        return self.retry_after is None

    def wait(self) -> int | None:
        return self.retry_after


class AnonThrottle(_RateThrottle):
    """Callers with no credentials (reads are open to them only with LAYERLENS_ANONYMOUS_READ), by address."""

    scope = rates.ANON

    def applies(self, request, view) -> bool:
        return not (request.user and request.user.is_authenticated)


class UserThrottle(_RateThrottle):
    scope = rates.USER

    def applies(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated)


class ExpensiveThrottle(_RateThrottle):
    """Views marked `throttle_scope = "expensive"`: an answer that may read a registry's every row."""

    scope = EXPENSIVE

    def applies(self, request, view) -> bool:
        return getattr(view, "throttle_scope", None) == EXPENSIVE

    def allow_request(self, request, view) -> bool:
        allowed = super().allow_request(request, view)
        if allowed and self.applies(request, view):
            costly_take(request)
        return allowed


class ServerBusy(APIException):
    status_code = 503
    default_code = "busy"


def costly_take(request) -> None:
    """A place among the costly requests running at once (`analytics.infra.inflight`): a 429 when the
    caller has one running, a 503 when this process runs as many as it takes; both with Retry-After."""
    try:
        inflight.take(request)
    except inflight.Busy as busy:
        if busy.status == 429:
            raise Throttled(wait=busy.wait, detail=busy.detail) from None
        exc = ServerBusy(detail=busy.detail)
        exc.wait = busy.wait
        raise exc from None


def export_check(request) -> None:
    """A whole-list download counts against the `expensive` rate (once per request) and holds a costly
    request's place while it streams; over either, a 429 (or a 503 when this process is full)."""
    if getattr(request, "_export_counted", False):
        return
    request._export_counted = True
    wait = rates.hit(EXPENSIVE, request)
    if wait is not None:
        raise Throttled(wait=wait)
    costly_take(request)
