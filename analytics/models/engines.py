"""Docker Engines and what their scans recorded: layers by ChainID, images, history, engine scans."""

from __future__ import annotations

from django.db import models

from analytics.infra.crypto import decrypt_secret, encrypt_secret
from analytics.models.scans import Scan


class Engine(models.Model):
    name = models.CharField(max_length=200, unique=True, help_text="Display name; defaults to the endpoint.")
    endpoint = models.CharField(
        max_length=500, unique=True, help_text="unix:///var/run/docker.sock or tcp://host:2376"
    )
    tls_ca = models.TextField(blank=True, help_text="PEM CA certificate to verify a tcp:// engine.")
    tls_cert = models.TextField(blank=True, help_text="PEM client certificate.")
    tls_key_encrypted = models.TextField(blank=True, editable=False)
    tracked = models.BooleanField(default=False, help_text="Scanned on schedule by the beat task.")
    scan_interval = models.DurationField(null=True, blank=True)
    next_scan_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_scanned_at = models.DateTimeField(null=True, blank=True)
    pull_tracked = models.BooleanField(
        default=False, help_text="Each scan first pulls the current tags of tracked repositories."
    )
    allow_internal = models.BooleanField(
        default=False,
        help_text="Allow a tcp:// or ssh:// engine on a loopback, private or link-local address (SSRF).",
    )
    engine_id = models.CharField(max_length=200, blank=True)
    server_version = models.CharField(max_length=64, blank=True)
    os = models.CharField(max_length=64, blank=True)
    architecture = models.CharField(max_length=64, blank=True)
    storage_driver = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_tls_key(self, raw: str | None) -> None:
        self.tls_key_encrypted = encrypt_secret(raw) if raw else ""

    def get_tls_key(self) -> str | None:
        return decrypt_secret(self.tls_key_encrypted) if self.tls_key_encrypted else None


class EngineLayer(models.Model):
    """A layer as an engine stores it: by ChainID (the layer with everything under it).

    `size` is the engine's DiffSize: the sum of the tar entries' sizes of this layer alone, the same on
    every engine for the same diff_id.
    """

    chain_id = models.CharField(max_length=200, unique=True)
    diff_id = models.CharField(max_length=200, db_index=True)
    size = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return self.chain_id


class EngineImage(models.Model):
    engine = models.ForeignKey(Engine, on_delete=models.CASCADE, related_name="images")
    image_id = models.CharField(max_length=200)
    parent_id = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(null=True, blank=True)
    repo_tags = models.JSONField(default=list, blank=True)
    repo_digests = models.JSONField(default=list, blank=True)
    os = models.CharField(max_length=64, blank=True)
    architecture = models.CharField(max_length=64, blank=True)
    variant = models.CharField(max_length=64, blank=True)
    containers = models.PositiveIntegerField(default=0)
    layer_count = models.PositiveIntegerField(default=0)
    present = models.BooleanField(default=True, help_text="Still in the engine at its last scan.")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    layers = models.ManyToManyField(EngineLayer, through="EngineImageLayer", related_name="images")

    class Meta:
        ordering = ["engine_id", "image_id"]
        constraints = [models.UniqueConstraint(fields=["engine", "image_id"], name="engine_image_unique")]

    def __str__(self) -> str:
        return f"{self.engine}: {(self.repo_tags or [self.image_id])[0]}"


class EngineImageLayer(models.Model):
    image = models.ForeignKey(EngineImage, on_delete=models.CASCADE, related_name="image_layers")
    position = models.PositiveIntegerField()
    layer = models.ForeignKey(EngineLayer, on_delete=models.PROTECT, related_name="image_layers")

    class Meta:
        ordering = ["image_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["image", "position"], name="engine_image_layer_unique_position")
        ]


class EngineHistoryEntry(models.Model):
    """One row of `docker image history` on that engine, oldest first; `row_id` is `<missing>` or an ID."""

    image = models.ForeignKey(EngineImage, on_delete=models.CASCADE, related_name="history")
    position = models.PositiveIntegerField()
    row_id = models.CharField(max_length=200)
    created = models.DateTimeField(null=True, blank=True)
    created_by = models.TextField(blank=True)
    comment = models.TextField(blank=True)
    size = models.BigIntegerField()
    tags = models.JSONField(default=list, blank=True)
    empty_layer = models.BooleanField(null=True, blank=True)
    layer_position = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "engine history entries"
        ordering = ["image_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["image", "position"], name="engine_history_unique_position")
        ]


class EngineScan(models.Model):
    engine = models.ForeignKey(Engine, on_delete=models.CASCADE, related_name="scans")
    status = models.CharField(
        max_length=16, choices=Scan.Status.choices, default=Scan.Status.QUEUED, db_index=True
    )
    trigger = models.CharField(max_length=16, default="manual")
    pull = models.JSONField(default=list, blank=True, help_text="References pulled through the engine first.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    images_count = models.PositiveIntegerField(default=0)
    layers_count = models.PositiveIntegerField(default=0)
    pulled_count = models.PositiveIntegerField(default=0)
    linked_blobs_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{reference, kind, message}]")
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"engine scan {self.pk} of {self.engine} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (Scan.Status.SUCCEEDED, Scan.Status.PARTIAL, Scan.Status.FAILED)
