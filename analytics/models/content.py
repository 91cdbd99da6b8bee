"""What scans found, content-addressed like a registry: blobs and manifests unique by digest, which
repository holds which manifest, tags and their movements, and build history."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from analytics.models.registries import Repository


class Blob(models.Model):
    digest = models.CharField(max_length=200, unique=True)
    media_type = models.CharField(max_length=255, blank=True)
    size = models.BigIntegerField(help_text="Bytes as stored in the registry (compressed for layers).")
    uncompressed_size = models.BigIntegerField(null=True, blank=True)
    diff_id = models.CharField(max_length=200, blank=True, db_index=True)

    def __str__(self) -> str:
        return self.digest


class Manifest(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image"
        INDEX = "index"
        ARTIFACT = "artifact"

    digest = models.CharField(max_length=200, unique=True)
    media_type = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    size = models.BigIntegerField(help_text="Bytes of the manifest itself.")
    config = models.ForeignKey(Blob, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    os = models.CharField(max_length=64, blank=True)
    architecture = models.CharField(max_length=64, blank=True)
    variant = models.CharField(max_length=64, blank=True)
    os_version = models.CharField(max_length=128, blank=True)
    created = models.DateTimeField(null=True, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    layer_count = models.PositiveIntegerField(default=0)
    layers_size = models.BigIntegerField(default=0, help_text="Sum of the layer blobs' sizes.")
    artifact_type = models.CharField(
        max_length=255, blank=True, help_text="Artifacts: `artifactType`, the config type, or the tag's kind."
    )
    subject = models.CharField(
        max_length=200, blank=True, db_index=True, help_text="Artifacts: the digest they are about."
    )
    first_seen = models.DateTimeField(auto_now_add=True)

    layers = models.ManyToManyField(Blob, through="ManifestLayer", related_name="manifests")

    def __str__(self) -> str:
        return self.digest

    @property
    def platform(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


class ManifestLayer(models.Model):
    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="manifest_layers")
    position = models.PositiveIntegerField()
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="manifest_layers")
    # the descriptor's own: a blob's media type and annotations can differ between manifests
    media_type = models.CharField(max_length=255, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    urls = models.JSONField(
        default=list, blank=True, help_text="Foreign layers: where to fetch (never fetched)."
    )

    class Meta:
        ordering = ["manifest_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["manifest", "position"], name="manifest_layer_unique_position")
        ]


class ManifestBlob(models.Model):
    """Each distinct blob a manifest references, as a layer or as its config, once: the narrow list the
    what-if, the 2.8 trap and the computed content in several registries walk (a manifest's layers repeat
    a blob at times, and its config is on the manifest's row). No index by blob: probes by blob read
    `ManifestLayer` and `Manifest.config`. Written by database triggers on the inserts of `ManifestLayer`
    and `Manifest` (migration 0035_manifest_blob), so no writer can leave it behind; manifests are
    immutable, rows never change."""

    pk = models.CompositePrimaryKey("manifest", "blob")
    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="+", db_index=False)
    blob = models.ForeignKey(Blob, on_delete=models.CASCADE, related_name="+", db_index=False)


class IndexEntry(models.Model):
    index = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="entries")
    position = models.PositiveIntegerField()
    child = models.ForeignKey(Manifest, on_delete=models.PROTECT, related_name="parent_entries")
    os = models.CharField(max_length=64, blank=True)
    architecture = models.CharField(max_length=64, blank=True)
    variant = models.CharField(max_length=64, blank=True)
    media_type = models.CharField(max_length=255, blank=True)
    annotations = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "index entries"
        ordering = ["index_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["index", "position"], name="index_entry_unique_position")
        ]


class RepositoryManifest(models.Model):
    """A manifest held by a repository: directly tagged, or a child of a tagged index.

    `present` is true while the manifest is reachable from the repository's current tags; manifests
    that were seen once and are no longer tagged keep their row with `present=False`.
    """

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="held_manifests")
    manifest = models.ForeignKey(Manifest, on_delete=models.PROTECT, related_name="holdings")
    present = models.BooleanField(default=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "manifest"], name="repository_manifest_unique"),
        ]
        indexes = [models.Index(fields=["manifest"], name="repo_manifest_present", condition=Q(present=True))]


class Tag(models.Model):
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=128)
    manifest = models.ForeignKey(
        Manifest, null=True, blank=True, on_delete=models.PROTECT, related_name="tags"
    )
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    current_since = models.DateTimeField(
        help_text="When a scan first saw the tag at its current manifest: its creation, its last move or "
        "its return after removal (the time of its latest TagEvent with a new digest)."
    )
    removed_at = models.DateTimeField(null=True, blank=True, help_text="Set when the tag vanished.")

    class Meta:
        ordering = ["repository_id", "name"]
        constraints = [models.UniqueConstraint(fields=["repository", "name"], name="tag_unique_name")]

    def __str__(self) -> str:
        return f"{self.repository}:{self.name}"


class TagEvent(models.Model):
    """A tag created, moved to another digest, or removed; the history trends are computed from."""

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="events")
    old_digest = models.CharField(max_length=200, blank=True)
    new_digest = models.CharField(max_length=200, blank=True)
    seen_at = models.DateTimeField()
    scan = models.ForeignKey("Scan", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-seen_at", "-id"]
        indexes = [
            # the lists' default order, newest first: a first page reads its rows, not every event
            models.Index(F("seen_at").desc(), F("id").desc(), name="tag_event_recent"),
            # the moves only (a tag from one digest to another): stale bases start from them
            models.Index(
                fields=["old_digest"],
                name="tag_event_moves",
                condition=~models.Q(old_digest="") & ~models.Q(new_digest=""),
            ),
        ]


class HistoryEntry(models.Model):
    """One `history` entry of an image, as `docker image history` lists it (oldest first).

    It hangs off the config blob (shared by every manifest naming that config), or, for a Docker
    schema 1 image, which has no config, off the manifest itself: exactly one of the two is set.
    """

    config = models.ForeignKey(
        Blob, null=True, blank=True, on_delete=models.CASCADE, related_name="history_entries"
    )
    manifest = models.ForeignKey(
        "Manifest", null=True, blank=True, on_delete=models.CASCADE, related_name="history_entries"
    )
    position = models.PositiveIntegerField()
    created = models.DateTimeField(null=True, blank=True)
    created_by = models.TextField(blank=True)
    comment = models.TextField(blank=True)
    author = models.CharField(max_length=255, blank=True)
    empty_layer = models.BooleanField(default=False)
    layer_position = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "history entries"
        ordering = ["config_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["config", "position"], name="history_unique_position"),
            models.UniqueConstraint(
                fields=["manifest", "position"],
                condition=models.Q(manifest__isnull=False),
                name="history_unique_manifest_position",
            ),
            models.CheckConstraint(
                condition=models.Q(config__isnull=True) ^ models.Q(manifest__isnull=True),
                name="history_config_xor_manifest",
            ),
        ]
