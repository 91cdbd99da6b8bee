"""Prometheus metrics for `/metrics`, gathered at scrape time from Postgres and Redis.

Where each figure comes from (and why it is cheap to scrape):

* Scans by status (`layerlens_scans`): a GROUP BY over the indexed `status`, queued and running only,
  since finished scans only grow; finished scans are the counter `layerlens_scans_finished_total`.
* Counters the workers push to Redis (analytics/infra/telemetry.py explains why not multiprocess mode):
  registry requests by route and status, request errors by kind, request latency histograms, images
  and image bytes read, scans finished by status, scan errors by kind.
* Dedup figures per registry (`layerlens_registry_*`): the latest registry-wide trend snapshot
  (`SummarySnapshot`, written when a registry scan finishes), one index lookup per registry.
* The events inbox per registry (`layerlens_events_pending`, `layerlens_events_oldest_pending_age_seconds`):
  one grouped read of the pending events, which a partial index holds alone (a running worker keeps
  them few), and of the followed registries; the events counters (received, applied, refused,
  duplicates) come from the workers' and web's Redis hash like the others.
* Saved cleanup policies (`layerlens_policy_reclaimable_bytes`, `layerlens_policy_evaluation_refused`):
  each policy's latest point, one DISTINCT ON read of the (policy, -at) index; labelled by registry and
  policy name for operators, by policy id otherwise (prometheus_client escapes the label values).

A registry's name is its host, which is not for anyone who can reach `/metrics`: unless the caller is an
operator (`named`), every series is summed over registries and carries no `registry` label.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from analytics.infra import telemetry
from analytics.infra.politeness import shared_redis
from analytics.models import Scan, SummarySnapshot
from analytics.selectors.inbox import inbox_by_registry
from analytics.selectors.policies import latest_figures

log = logging.getLogger(__name__)

_COUNTERS = {
    telemetry.REQUESTS: "Registry HTTP requests sent, by route and status code ('none': no reply).",
    telemetry.REQUEST_ERRORS: "Failed registry requests: httpx error class, or http_<status> for 4xx/5xx.",
    telemetry.IMAGES_SCANNED: "Images (single-platform manifests) read and ingested by repository scans.",
    telemetry.BYTES_SCANNED: "Declared bytes (manifest, config, layers) of the images read by scans.",
    telemetry.SCANS_FINISHED: "Scans finished, by kind and final status.",
    telemetry.SCAN_ERRORS: "Errors recorded on finished scans, by kind.",
    telemetry.EVENTS_RECEIVED: "Registry events received and stored in the inbox.",
    telemetry.EVENTS_APPLIED: "Registry events applied from the inbox.",
    telemetry.EVENTS_REFUSED: "Registry event deliveries refused, by reason.",
    telemetry.EVENTS_DUPLICATE: "Registry events delivered again and stored once.",
}
_DEDUP = {
    "images": "Images held (tagged) in the registry at its last registry scan.",
    "logical_bytes": "Bytes the registry's content would take with no sharing.",
    "stored_bytes": "Bytes the registry stores: distinct digests.",
    "saved_bytes": "logical_bytes - stored_bytes: what deduplication saves.",
    "distinct_layers": "Distinct layer digests in the registry.",
}


class LayerlensCollector(Collector):
    def __init__(self, *, named: bool = True) -> None:
        self.named = named

    def collect(self) -> Iterator[Metric]:
        yield from self._scans()
        yield from self._dedup()
        yield from self._inbox()
        yield from self._policies()
        yield from self._worker_counters()

    def _scans(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "layerlens_scans", "Scans queued or running now, by kind.", labels=["status", "kind"]
        )
        counts = (
            Scan.objects.filter(status__in=[Scan.Status.QUEUED, Scan.Status.RUNNING])
            .values_list("status", "kind")
            .annotate(n=Count("id"))
            .order_by()
        )
        seen = {(status, kind): n for status, kind, n in counts}
        for status in (Scan.Status.QUEUED, Scan.Status.RUNNING):
            for kind in Scan.Kind.values:
                gauge.add_metric([status, kind], seen.get((status, kind), 0))
        yield gauge

    def _dedup(self) -> Iterator[Metric]:
        latest = (
            SummarySnapshot.objects.filter(repository__isnull=True)
            .select_related("registry")
            .order_by("registry_id", "-taken_at", "-id")
            .distinct("registry_id")
        )
        labels = ["registry"] if self.named else []
        families = {
            name: GaugeMetricFamily(f"layerlens_registry_{name}", help_text, labels=labels)
            for name, help_text in _DEDUP.items()
        }
        ratio = GaugeMetricFamily(
            "layerlens_registry_dedup_ratio",
            "logical_bytes / stored_bytes at the last registry scan.",
            labels=labels,
        )
        figures: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(_DEDUP, 0))
        for snap in latest:
            key = (snap.registry.name,) if self.named else ()
            for name in _DEDUP:
                figures[key][name] += getattr(snap, name)
        for key, values in figures.items():
            for name, family in families.items():
                family.add_metric(list(key), values[name])
            stored = values["stored_bytes"]
            ratio.add_metric(list(key), values["logical_bytes"] / stored if stored else 0.0)
        yield from families.values()
        yield ratio

    def _inbox(self) -> Iterator[Metric]:
        labels = ["registry"] if self.named else []
        pending = GaugeMetricFamily(
            "layerlens_events_pending", "Registry events received and not applied yet.", labels=labels
        )
        age = GaugeMetricFamily(
            "layerlens_events_oldest_pending_age_seconds",
            "Seconds the oldest registry event not applied yet has waited (0: none waits).",
            labels=labels,
        )
        now = timezone.now()
        rows = [
            (
                r.registry,
                r.pending,
                (now - r.oldest_received_at).total_seconds() if r.oldest_received_at else 0.0,
            )
            for r in inbox_by_registry()
        ]
        if self.named:
            for name, waiting, seconds in rows:
                pending.add_metric([name], waiting)
                age.add_metric([name], seconds)
        else:  # summed over registries; the age is the oldest of all
            pending.add_metric([], sum(waiting for _, waiting, _ in rows))
            age.add_metric([], max((seconds for _, _, seconds in rows), default=0.0))
        yield pending
        yield age

    def _policies(self) -> Iterator[Metric]:
        # Per saved policy: no sum over registries makes sense (two policies may select the same tags),
        # so without names each is labelled by its id alone.
        labels = ["registry", "policy"] if self.named else ["policy_id"]
        reclaimable = GaugeMetricFamily(
            "layerlens_policy_reclaimable_bytes",
            "Bytes deleting a saved cleanup policy's selection, then collecting garbage, would free, at its "
            "latest evaluation that succeeded.",
            labels=labels,
        )
        refused = GaugeMetricFamily(
            "layerlens_policy_evaluation_refused",
            "1 when a saved cleanup policy's latest evaluation was refused (pulls not counted, too long).",
            labels=labels,
        )
        for policy, latest, figured in latest_figures():
            key = [policy.registry.name, policy.name] if self.named else [str(policy.id)]
            if figured is not None:
                reclaimable.add_metric(key, figured.freed_bytes)
            if latest is not None:
                refused.add_metric(key, 1 if latest.error else 0)
        yield reclaimable
        yield refused

    def _worker_counters(self) -> Iterator[Metric]:
        if not settings.LAYERLENS_REDIS_URL:
            return
        try:
            counters = telemetry.read_counters(shared_redis(settings.LAYERLENS_REDIS_URL))
        except Exception as exc:  # the database figures are still worth serving
            log.warning("worker counters unavailable: %s", exc)
            return
        summed: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        for (metric, labels), value in counters.items():
            kept = tuple(kv for kv in labels if self.named or kv[0] != "registry")
            summed[(metric, kept)] += value
        by_metric: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for (metric, labels), value in summed.items():
            by_metric[metric].append((dict(labels), value))
        for metric, help_text in _COUNTERS.items():
            rows = by_metric.get(metric, [])
            names = sorted({k for labels, _ in rows for k in labels})
            family = CounterMetricFamily(metric.removesuffix("_total"), help_text, labels=names)
            for labels, value in rows:
                family.add_metric([labels.get(k, "") for k in names], value)
            yield family
        yield from self._latency(by_metric)

    def _latency(self, by_metric: dict[str, list[tuple[dict[str, str], float]]]) -> Iterator[Metric]:
        name = telemetry.LATENCY
        names = ["registry", "route"] if self.named else ["route"]
        family = HistogramMetricFamily(
            name, "Seconds from sending a registry request to its reply's headers.", labels=names
        )
        series: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
        sums: dict[tuple[str, ...], float] = {}
        for labels, value in by_metric.get(name + "_bucket", []):
            series[tuple(labels[k] for k in names)][labels["le"]] = value
        for labels, value in by_metric.get(name + "_sum", []):
            sums[tuple(labels[k] for k in names)] = value
        for key, buckets in sorted(series.items()):
            ordered = sorted(buckets.items(), key=lambda kv: float(kv[0]))
            family.add_metric(list(key), buckets=ordered, sum_value=sums.get(key, 0.0))
        yield family


def metrics_registry(*, named: bool = True) -> CollectorRegistry:
    """The metrics; with `named` off, summed over registries so that no registry's name is shown."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LayerlensCollector(named=named))
    return registry
