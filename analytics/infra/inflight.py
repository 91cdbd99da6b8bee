"""Costly requests at once (a what-if, a whole-list export): one per caller across every web instance,
counted in the shared cache, and a few per web process, so one caller's costly answers never hold the
threads another reader's requests need. A rate (`analytics.infra.rates`) bounds how many a caller
starts per minute; this bounds how many run together, which is what the other readers feel.

`take(request)` holds a place until `Held.release()`: the web's middleware releases it when the answer
is complete, or, for a streamed download, when the download ends (each chunk refreshes it, so a long
export keeps its place). A place a killed process leaves expires after `TTL_SECONDS`.
"""

from __future__ import annotations

import threading

from django.conf import settings
from django.core.cache import cache

from analytics.infra.rates import caller

TTL_SECONDS = 120
RETRY_SECONDS = 5
_ATTRIBUTE = "_layerlens_costly"
_process_places: threading.BoundedSemaphore | None = None
_lock = threading.Lock()


class Busy(Exception):
    """No place: `status` 429 (this caller has one running) or 503 (this process is full)."""

    def __init__(self, detail: str, *, status: int) -> None:
        super().__init__(detail)
        self.detail, self.status, self.wait = detail, status, RETRY_SECONDS


def _places() -> threading.BoundedSemaphore:
    global _process_places
    with _lock:
        if _process_places is None:
            _process_places = threading.BoundedSemaphore(max(1, settings.LAYERLENS_COSTLY_PER_PROCESS))
        return _process_places


class Held:
    def __init__(self, key: str, places: threading.BoundedSemaphore) -> None:
        self.key, self.places = key, places
        self.released = False

    def refresh(self) -> None:
        cache.touch(self.key, TTL_SECONDS)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.places.release()
        try:
            cache.decr(self.key)
        except ValueError:  # expired meanwhile: nothing left to give back
            pass


def _django_request(request):
    return getattr(request, "_request", request)  # a DRF Request wraps Django's


def held(request) -> Held | None:
    """The place `request` holds, if it took one."""
    return getattr(_django_request(request), _ATTRIBUTE, None)


def take(request) -> Held:
    """A place for one costly answer to `request` (idempotent per request), or `Busy`."""
    already = held(request)
    if already is not None:
        return already
    places = _places()
    if not places.acquire(blocking=False):
        raise Busy(
            "this server is answering as many costly requests (what-if, whole-list exports) as it "
            "takes at once; try again in a few seconds",
            status=503,
        )
    key = f"costly:{caller(request)}"
    cache.add(key, 0, timeout=TTL_SECONDS)
    try:
        running = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=TTL_SECONDS)
        running = 1
    cache.touch(key, TTL_SECONDS)
    if running > settings.LAYERLENS_COSTLY_PER_CALLER:
        places.release()
        try:
            cache.decr(key)
        except ValueError:
            pass
        raise Busy(
            f"you have {settings.LAYERLENS_COSTLY_PER_CALLER} costly request(s) (what-if, whole-list "
            "export) running; wait for it to finish",
            status=429,
        )
    place = Held(key, places)
    setattr(_django_request(request), _ATTRIBUTE, place)
    return place


def release_after(request, response) -> None:
    """Give back `request`'s place once `response` is complete: now, or when a stream is closed."""
    place = held(request)
    if place is None:
        return
    if getattr(response, "streaming", False):
        response._resource_closers.append(place.release)  # Django calls these from response.close()
    else:
        place.release()
