"""Counters from every worker process, added up in Redis; the web's /metrics reads them at scrape time.

Why Redis and not prometheus_client's multiprocess mode: that mode shares counters through files in
one directory, so it covers the processes of one machine only, and the workers run on several
machines. Every worker already reaches the broker's Redis, so each process adds its increments to one
hash there (`HINCRBYFLOAT`, batched: flushed at most every `flush_seconds` and at the end of each scan)
and any web instance exposes the same totals. Counters only grow; a Redis flush resets them, which
Prometheus's `rate()` treats as a counter reset.

Fields are `json.dumps([metric, {label: value}])`, so the reader needs no schema. Latencies are a
histogram: one counter per bucket (`le`), plus `_sum` and `_count`, like a Prometheus histogram.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import defaultdict

import redis

from workers.registry.transport import RequestEvent

log = logging.getLogger(__name__)

METRICS_KEY = "layerlens:metrics:counters"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = "layerlens_registry_requests_total"
REQUEST_ERRORS = "layerlens_registry_request_errors_total"
LATENCY = "layerlens_registry_request_seconds"
IMAGES_SCANNED = "layerlens_images_scanned_total"
BYTES_SCANNED = "layerlens_image_bytes_scanned_total"
SCANS_FINISHED = "layerlens_scans_finished_total"
SCAN_ERRORS = "layerlens_scan_errors_total"
# registry events (label `registry`; refusals also `reason`)
EVENTS_RECEIVED = "layerlens_events_received_total"
EVENTS_APPLIED = "layerlens_events_applied_total"
EVENTS_REFUSED = "layerlens_events_refused_total"
EVENTS_DUPLICATE = "layerlens_events_duplicate_total"


def field_name(metric: str, labels: dict[str, str]) -> str:
    return _field_name(metric, tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=4096)
def _field_name(metric: str, labels: tuple[tuple[str, str], ...]) -> str:
    # a request adds ~16 counters (the latency buckets): encode each label set once per process
    return json.dumps([metric, dict(labels)], separators=(",", ":"))


class MetricsSink:
    """Buffers increments in this process and adds them to the Redis hash in one pipeline."""

    def __init__(self, client: redis.Redis | None, *, flush_seconds: float = 2.0) -> None:
        self.redis = client
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._pending: dict[str, float] = defaultdict(float)
        self._last_flush = time.monotonic()

    def add(self, metric: str, labels: dict[str, str], value: float = 1.0) -> None:
        with self._lock:
            self._pending[field_name(metric, labels)] += value
            due = time.monotonic() - self._last_flush >= self.flush_seconds
        if due:
            self.flush()

    def request(self, event: RequestEvent, *, registry: str) -> None:
        """The registry client's observer: one call per attempt (see `transport.RequestEvent`)."""
        code = str(event.status) if event.status is not None else "none"
        self.add(REQUESTS, {"registry": registry, "route": event.route, "code": code})
        if event.error is not None or (event.status is not None and event.status >= 400):
            kind = event.error or f"http_{event.status}"
            self.add(REQUEST_ERRORS, {"registry": registry, "kind": kind})
        base = {"registry": registry, "route": event.route}
        with self._lock:
            for bound in LATENCY_BUCKETS:
                if event.seconds <= bound:
                    self._pending[field_name(LATENCY + "_bucket", {**base, "le": str(bound)})] += 1
            self._pending[field_name(LATENCY + "_bucket", {**base, "le": "+Inf"})] += 1
            self._pending[field_name(LATENCY + "_sum", base)] += event.seconds
            self._pending[field_name(LATENCY + "_count", base)] += 1

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
            self._last_flush = time.monotonic()
        if not pending or self.redis is None:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for name, value in pending.items():
                pipe.hincrbyfloat(METRICS_KEY, name, value)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not push %d metric increments to Redis: %s", len(pending), exc)


def read_counters(client: redis.Redis) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter in Redis as {(metric, ((label, value), ...)): total}."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for raw_name, raw_value in client.hgetall(METRICS_KEY).items():
        try:
            metric, labels = json.loads(raw_name)
            out[(metric, tuple(sorted(labels.items())))] = float(raw_value)
        except (ValueError, TypeError):
            continue
    return out
