"""How often a caller may knock: per user, per anonymous address, and a tighter rate for what is costly.

Rates come from `settings.LAYERLENS_THROTTLE_RATES` (`anon`, `user`, `expensive`; "N/s|m|h|d", or empty
for no limit), read on every request so a changed setting takes effect at once. Counts live in the default
cache, which is the shared Redis when there is one: every web instance counts against the same limit.

Each rate is a fixed window counted with one atomic `incr` per request, rather than DRF's sliding log
(a list of timestamps read and rewritten per request, which two instances can overwrite for each other).
The `expensive` rate is for views that set `throttle_scope = "expensive"` (what-if) and for whole-list
CSV exports (`export_check`, called where a request is known to want the whole list).
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from analytics.infra.addresses import client_address

EXPENSIVE = "expensive"
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """ "120/min" -> (120, 60); empty, "0" or "off" -> None (no limit)."""
    text = (rate or "").strip().lower()
    if text in ("", "0", "off", "none"):
        return None
    count, _, period = text.partition("/")
    if not count.isdigit() or not period or period[0] not in _PERIODS:
        raise ValueError(f"a rate is N/s, N/min, N/hour or N/day, not {rate!r}")
    return int(count), _PERIODS[period[0]]


class WindowThrottle(BaseThrottle):
    """At most N requests per caller in each window of the rate's period."""

    scope = ""

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def applies(self, request, view) -> bool:
        return True

    def ident(self, request) -> str:
        user = request.user
        if user and user.is_authenticated:
            return f"user-{user.pk}"
        return f"addr-{client_address(request)}"

    def allow_request(self, request, view) -> bool:
        rate = parse_rate(settings.LAYERLENS_THROTTLE_RATES.get(self.scope))
        if rate is None or not self.applies(request, view):
            return True
        limit, period = rate
        now = time.time()
        window = int(now // period)
        key = f"throttle:{self.scope}:{self.ident(request)}:{period}:{window}"
        if cache.add(key, 1, timeout=period + 1):
            count = 1
        else:
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr: a new window
                cache.add(key, 1, timeout=period + 1)
                count = 1
        if count <= limit:
            return True
        self.retry_after = max(1, math.ceil((window + 1) * period - now))
        return False

    def wait(self) -> int | None:
        return self.retry_after


class AnonThrottle(WindowThrottle):
    """Callers with no credentials (reads are open to them only with LAYERLENS_ANONYMOUS_READ), by address."""

    scope = "anon"

    def applies(self, request, view) -> bool:
        return not (request.user and request.user.is_authenticated)


class UserThrottle(WindowThrottle):
    scope = "user"

    def applies(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated)


class ExpensiveThrottle(WindowThrottle):
    """Views marked `throttle_scope = "expensive"`: an answer that may scan a registry's every row."""

    scope = EXPENSIVE

    def applies(self, request, view) -> bool:
        return getattr(view, "throttle_scope", None) == EXPENSIVE


def export_check(request) -> None:
    """A whole-list download counts against the `expensive` rate (once per request); over it, a 429."""
    if getattr(request, "_export_counted", False):
        return
    request._export_counted = True
    throttle = WindowThrottle()
    throttle.scope = EXPENSIVE
    if not throttle.allow_request(request, None):
        raise Throttled(wait=throttle.wait())
