"""What registries announce: their change and pull notifications, kept as a durable inbox, and the pulls
counted from them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from analytics.models.registries import Registry, Repository


class RegistryEvent(models.Model):
    """One event a registry sent (a distribution notification, a Harbor or Quay webhook).

    Stored before the sender is answered 2xx, so an event a worker has not applied survives any restart;
    `key` is the sender's event id (or, for formats without one, a digest of the event), so a redelivery
    is the same row and is applied once. Pending events (`applied_at` null) are applied in `id` order per
    repository; applied ones are kept a while as the record of what was done.
    """

    class Source(models.TextChoices):
        DISTRIBUTION = "distribution"
        HARBOR = "harbor"
        QUAY = "quay"

    class Action(models.TextChoices):
        PUSH = "push"
        PULL = "pull"
        DELETE = "delete"
        MOUNT = "mount"

    class Target(models.TextChoices):
        MANIFEST = "manifest"
        BLOB = "blob"

    class Outcome(models.TextChoices):
        APPLIED = "applied"  # changed what Layerlens records (or counted a pull)
        UNCHANGED = "unchanged"  # nothing to do: a blob, an untagged push, the scanner's own pull
        FAILED = "failed"  # could not be applied; `message` says why

    # no index of its own: the unique (registry, key) leads with it, and every event written would
    # write one more index entry (and each applied one another)
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="events", db_index=False)
    source = models.CharField(max_length=16, choices=Source.choices)
    key = models.CharField(max_length=128)
    action = models.CharField(max_length=16, choices=Action.choices)
    target = models.CharField(max_length=16, choices=Target.choices, default=Target.MANIFEST)
    repository = models.CharField(max_length=255)
    tag = models.CharField(max_length=128, blank=True)
    digest = models.CharField(max_length=100, blank=True)
    media_type = models.CharField(max_length=255, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True, help_text="When the registry says it happened.")
    received_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["registry", "key"], name="registry_event_unique_key")]
        indexes = [
            # the inbox: a registry's pending events per repository, in the order they arrived
            models.Index(
                fields=["registry", "repository", "id"],
                name="registry_event_pending",
                condition=Q(applied_at__isnull=True),
            ),
            # the inbox's age (metrics, readiness) and the sweeper's look for events nobody is applying
            models.Index(
                fields=["received_at"],
                name="registry_event_pending_age",
                condition=Q(applied_at__isnull=True),
            ),
            models.Index(
                fields=["applied_at"], name="registry_event_applied", condition=Q(applied_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        what = self.tag or self.digest
        return f"{self.action} {self.repository}:{what} ({self.source})"


class ManifestPulls(models.Model):
    """Pulls of one manifest from one repository, counted from pull events (never the scanner's own
    reads). Keyed by digest, not by a manifest row: a pull may arrive before any scan recorded it."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="pulls")
    digest = models.CharField(max_length=100)
    pulls = models.BigIntegerField(default=0)
    first_pulled_at = models.DateTimeField()
    last_pulled_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "digest"], name="manifest_pulls_unique"),
        ]
        indexes = [models.Index(fields=["repository", "last_pulled_at"], name="manifest_pulls_last")]


class ManifestPullDay(models.Model):
    """The daily series of `ManifestPulls` (UTC days)."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="pull_days")
    digest = models.CharField(max_length=100)
    day = models.DateField()
    pulls = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "digest", "day"], name="manifest_pull_day_unique"),
        ]
