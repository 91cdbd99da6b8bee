"""The caller's address, for the limits that count per address (API throttles, login lockouts).

The peer's address (`REMOTE_ADDR`) unless `LAYERLENS_TRUSTED_PROXIES` proxies stand in front, each
appending the address it saw to `X-Forwarded-For`: then the one the outermost trusted proxy saw. Any
address further left was written by the caller and proves nothing.
"""

from __future__ import annotations

from django.conf import settings


def client_address(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.LAYERLENS_TRUSTED_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded.strip():
        return remote
    hops = [hop.strip() for hop in forwarded.split(",")]
    return hops[-min(proxies, len(hops))] or remote
