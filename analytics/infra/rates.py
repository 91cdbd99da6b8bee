"""Request rates, counted in the shared cache: the API's throttles and the pages use the same counts.

Each rate is a fixed window counted with one atomic `incr` per request, rather than DRF's sliding log
(a list of timestamps read and rewritten per request, which two instances can overwrite for each other).
Rates are read from `settings.LAYERLENS_THROTTLE_RATES` on every request, so a changed setting holds at once.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache

from analytics.infra.addresses import client_address

ANON, USER, EXPENSIVE, LOGIN, EVENTS_REFUSED = "anon", "user", "expensive", "login", "events_refused"
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


def caller(request) -> str:
    """Who is counted: the user, or for an anonymous caller the address."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user-{user.pk}"
    return f"addr-{client_address(request)}"


def hit(scope: str, request) -> int | None:
    """Count one request of `request`'s caller against the `scope` rate: None while within it, else the
    seconds until its window ends."""
    rate = parse_rate(settings.LAYERLENS_THROTTLE_RATES.get(scope))
    if rate is None:
        return None
    limit, period = rate
    now = time.time()
    window = int(now // period)
    key = f"throttle:{scope}:{caller(request)}:{period}:{window}"
    counter = getattr(cache, "count", None)  # the shared Redis cache's one-round-trip counter
    if counter is not None:
        count = counter(key, timeout=period + 1)
    elif cache.add(key, 1, timeout=period + 1):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: a new window
            cache.add(key, 1, timeout=period + 1)
            count = 1
    if count <= limit:
        return None
    return max(1, math.ceil((window + 1) * period - now))
