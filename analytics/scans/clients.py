"""Registry clients for scans: one per registry and worker process, kept open across scans (kept-alive
connections, cached tokens), built with the registry's credentials, TLS options, network policy and the
politeness gate all workers share."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import ssl
import threading
from collections import OrderedDict
from collections.abc import Iterator

from django.conf import settings

from analytics.infra.politeness import RedisGate, shared_redis
from analytics.models import Registry
from analytics.scans.runtime import metrics_sink
from workers.registry.client import RegistryClient


def registry_client(registry: Registry) -> RegistryClient:
    """The registry client for `registry`, with its credentials, TLS options and network policy.

    Internal addresses are allowed when the registry is marked `allow_internal` or the address is in
    `LAYERLENS_ALLOWED_NETWORKS`; the client enforces that on every connection.
    """
    verify: bool | ssl.SSLContext = not registry.insecure
    if registry.ca_bundle and not registry.insecure:
        verify = ssl.create_default_context(cadata=registry.ca_bundle)
    secret = registry.get_password()
    return RegistryClient(
        registry.url,
        username=(registry.username or None) if not registry.identity_token else None,
        password=secret if not registry.identity_token else None,
        identity_token=secret if registry.identity_token else None,
        verify=verify,
        timeout=settings.REGISTRY_TIMEOUT_SECONDS,
        page_size=settings.REGISTRY_PAGE_SIZE,
        allow_internal=registry.allow_internal,
        allowed_networks=settings.LAYERLENS_ALLOWED_NETWORKS,
        allow_plain_http=registry.insecure,
        total_timeout=settings.REGISTRY_TOTAL_TIMEOUT_SECONDS,
        min_transfer_bytes=settings.REGISTRY_MIN_TRANSFER_BYTES,
        min_transfer_window=settings.REGISTRY_MIN_TRANSFER_WINDOW_SECONDS,
        retries=settings.REGISTRY_RETRIES,
        retry_base_delay=settings.REGISTRY_RETRY_BASE_SECONDS,
        max_concurrency=settings.REGISTRY_SCAN_CONCURRENCY,
        # the process's connections to the registry: its reader threads share them. httpcore's pool
        # checks every connection (a poll each) on every request, so idle surplus costs CPU per request
        max_connections=settings.REGISTRY_SCAN_CONCURRENCY,
        gate=registry_gate(registry),
        observer=functools.partial(metrics_sink().request, registry=registry.name),
    )


_SHARED_CLIENTS: OrderedDict[tuple[object, ...], RegistryClient] = OrderedDict()


_SHARED_LOCK = threading.Lock()


_SHARED_MAX = 32


@contextlib.contextmanager
def registry_client_shared(registry: Registry) -> Iterator[RegistryClient]:
    """This process's client for `registry`, kept open across scans (kept-alive connections, cached
    tokens and configs); a new one when the registry's connection settings change.

    Keyed on the process id too: a client never crosses a fork (Celery's prefork pool). Evicted and
    replaced clients are closed; the rest at interpreter exit (`registry_clients_close`).
    """
    key = (
        os.getpid(),
        registry.id,
        registry.url,
        registry.username,
        registry.password_encrypted,
        registry.identity_token,
        registry.insecure,
        registry.ca_bundle,
        registry.allow_internal,
        registry.max_concurrency,  # the politeness gate is built with the client
        registry.max_requests_per_second,
        registry_client,  # a test that swaps the factory gets its own clients
    )
    with _SHARED_LOCK:
        client = _SHARED_CLIENTS.get(key)
        for k in [k for k in _SHARED_CLIENTS if k[0] != key[0]]:
            del _SHARED_CLIENTS[k]  # the parent process's: its sockets are the parent's to close
        for k in [k for k in _SHARED_CLIENTS if k[1] == registry.id and k != key]:
            _SHARED_CLIENTS.pop(k).close()
        if client is None or client.closed:
            client = _SHARED_CLIENTS[key] = registry_client(registry)
        _SHARED_CLIENTS.move_to_end(key)
        while len(_SHARED_CLIENTS) > _SHARED_MAX:
            _SHARED_CLIENTS.popitem(last=False)[1].close()
    yield client


@atexit.register
def registry_clients_close() -> None:
    """Close every shared client of this process (connection pools and scan threads)."""
    with _SHARED_LOCK:
        while _SHARED_CLIENTS:
            _SHARED_CLIENTS.popitem()[1].close()


def registry_limits(registry: Registry) -> tuple[int, float]:
    """(requests in flight, requests per second) for `registry`: its own, else the settings' (0: off)."""
    concurrency = registry.max_concurrency or settings.REGISTRY_CONCURRENCY_LIMIT
    rate = registry.max_requests_per_second or settings.REGISTRY_RATE_LIMIT
    return concurrency, rate


def registry_gate(registry: Registry) -> RedisGate | None:
    """The shared limits for `registry`, or None when they are off or there is no Redis."""
    url = settings.LAYERLENS_REDIS_URL
    concurrency, rate = registry_limits(registry)
    if not url or not (concurrency or rate):
        return None
    return RedisGate(
        shared_redis(url),
        key=str(registry.id),
        concurrency=concurrency,
        rate=rate,
        slot_ttl=2 * settings.REGISTRY_TIMEOUT_SECONDS + 5,
    )
