"""Deep scan without an engine: measure a repository's layers by streaming them (workers.registry.deep).

Only layers whose uncompressed size is unknown are read, smallest first, within one byte budget per scan.
A blob gains `uncompressed_size` (the engine's rule: the sum of its tar entries' sizes) only when the
diff_id computed from its bytes equals the config's (or the blob had none, and then it gains that too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F

from analytics.models import Blob, Repository, Scan, ScanError
from analytics.scans.clients import registry_client
from analytics.scans.state import answers_refresh_after_commit
from workers.registry.deep import BudgetExceeded, ByteBudget, measure_layer
from workers.registry.errors import RegistryError
from workers.registry.records import FOREIGN_LAYER_TYPES


@dataclass
class DeepScanResult:
    measured: int = 0
    skipped_budget: int = 0
    budget_left: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)


def repository_deep_scan(*, repository: Repository, budget_bytes: int) -> DeepScanResult:
    """Stream the repository's unmeasured layer blobs through a decompressor; record what they tell."""
    blobs = list(
        Blob.objects.filter(
            manifest_layers__manifest__holdings__repository=repository,
            manifest_layers__manifest__holdings__present=True,
            uncompressed_size__isnull=True,
        )
        .exclude(media_type__in=FOREIGN_LAYER_TYPES)
        .distinct()
        .order_by("size", "digest")
    )
    budget = ByteBudget(budget_bytes)
    result = DeepScanResult()
    with registry_client(repository.registry) as client:
        for blob in blobs:
            try:
                m = measure_layer(
                    client,
                    repository.name,
                    blob.digest,
                    media_type=blob.media_type,
                    size=blob.size,
                    budget=budget,
                    expected_diff_id=blob.diff_id or None,
                )
            except BudgetExceeded:
                result.skipped_budget += 1
                continue
            except RegistryError as exc:
                result.errors.append(
                    {"reference": blob.digest, "kind": type(exc).__name__, "message": str(exc)}
                )
                continue
            if m.diff_id_verified is False:
                result.errors.append(
                    {
                        "reference": blob.digest,
                        "kind": "DiffIdMismatch",
                        "message": f"the stream hashes to {m.diff_id}, the config says {blob.diff_id}",
                    }
                )
                continue
            Blob.objects.filter(id=blob.id).update(uncompressed_size=m.uncompressed_size, diff_id=m.diff_id)
            result.measured += 1
    result.budget_left = budget.remaining
    return result


def scan_deep_record(*, scan_id: int) -> DeepScanResult | None:
    """Run the deep scan a finished repository scan asked for (`Scan.deep_budget_bytes`); record it.

    Measured layers count in `deep_measured_count`; a layer that could not be read or whose diff_id
    disagrees with its config is a `ScanError` (and a succeeded scan becomes partial). Layers left for
    lack of budget are not errors. A failed scan, or one without a budget, is left alone.
    """
    scan = Scan.objects.select_related("repository__registry").get(id=scan_id)
    if scan.deep_budget_bytes is None or scan.repository is None or scan.status == Scan.Status.FAILED:
        return None
    result = repository_deep_scan(repository=scan.repository, budget_bytes=scan.deep_budget_bytes)
    with transaction.atomic():
        ScanError.objects.bulk_create(
            ScanError(
                scan=scan,
                repository=scan.repository.name,
                reference=e["reference"],
                kind=e["kind"],
                message=e["message"][:4000],
            )
            for e in result.errors
        )
        fields: dict[str, object] = {
            "deep_measured_count": result.measured,
            "errors_count": F("errors_count") + len(result.errors),
        }
        if result.errors and scan.status == Scan.Status.SUCCEEDED:
            fields["status"] = Scan.Status.PARTIAL
        Scan.objects.filter(id=scan.id).update(**fields)
        # layers measured may have new diff_ids: missed savings, refreshed here unless the registry
        # scan this one belongs to is still running (its end refreshes them)
        parent_done = (
            scan.parent_id is None
            or Scan.objects.filter(id=scan.parent_id, finished_at__isnull=False).exists()
        )
        if result.measured and parent_done:
            answers_refresh_after_commit(registry_id=scan.registry_id)
    return result
