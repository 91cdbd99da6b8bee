"""Scans: one run over a registry, a repository or a tag, with its progress, lease and errors."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from analytics.models.registries import Registry, Repository


class Scan(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial", "succeeded with errors"
        FAILED = "failed"

    class Kind(models.TextChoices):
        REGISTRY = "registry"
        REPOSITORY = "repository"
        TAG = "tag"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="scans")
    repository = models.ForeignKey(
        Repository, null=True, blank=True, on_delete=models.CASCADE, related_name="scans"
    )
    tag = models.CharField(max_length=128, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    trigger = models.CharField(max_length=16, default="manual")  # manual, schedule, api, admin, cli
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    repositories_total = models.PositiveIntegerField(default=0)
    repositories_done = models.PositiveIntegerField(default=0)
    tags_count = models.PositiveIntegerField(default=0)
    images_count = models.PositiveIntegerField(default=0)
    new_manifests_count = models.PositiveIntegerField(default=0)
    errors_count = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, help_text="Why the scan failed, when it did.")
    # Progress while running: tags listed so far (for a registry scan, over the children that have
    # listed theirs) and tags read. Written at most about once a second by the worker.
    tags_total = models.PositiveIntegerField(default=0)
    tags_done = models.PositiveIntegerField(default=0)
    # The running worker renews this (a heartbeat); a running scan whose lease has expired was left
    # by a dead worker and is queued again by the stuck-scan sweeper.
    lease_until = models.DateTimeField(null=True, blank=True)
    # When the scan was last sent to the broker; a queued scan not picked up long after was lost.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    takeovers = models.PositiveSmallIntegerField(
        default=0, help_text="Times the scan was taken over from a worker that stopped."
    )
    # A deep scan (analytics.scans.deep) after each repository is read: compressed bytes it may stream
    # per repository scan; null for none.
    deep_budget_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    # For a registry followed by events: what this scan found changed that no event had applied (tags
    # added, moved or removed); 0 when no event was lost.
    drift_count = models.PositiveIntegerField(
        default=0, help_text="Tag changes this scan found that registry events had not already applied."
    )
    deep_measured_count = models.PositiveIntegerField(
        default=0, help_text="Layers whose uncompressed size and diff_id the deep scan measured."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A crawl's unfinished children in the order they are sent: the window's look-up reads its
            # first few, not the crawl's hundred thousand (analytics/scans/crawl.py).
            models.Index(
                fields=["parent", "id"],
                name="scan_children_unfinished",
                condition=Q(parent__isnull=False, status__in=["queued", "running"]),
            )
        ]

    def __str__(self) -> str:
        target = self.repository or self.registry
        return f"scan {self.pk} of {target} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.PARTIAL, self.Status.FAILED)


class ScanError(models.Model):
    """One thing a scan could not read: an image, a repository, or the registry itself."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="errors")
    repository = models.CharField(max_length=255, blank=True)
    reference = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=64)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
