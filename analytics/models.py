"""The data model of DESIGN section 2: content-addressed, like a registry.

Blobs and manifests are global and unique by digest; which repository holds which manifest is
`RepositoryManifest`. Every uniqueness constraint below is what makes a re-run of ingest rewrite the
same rows instead of adding new ones.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import MD5

from analytics.infra.crypto import decrypt_secret, encrypt_secret

# Upper bounds of a registry's own limits: past these a limit is no limit, and likely a typo.
REGISTRY_MAX_CONCURRENCY = 256
REGISTRY_MAX_RATE = 10_000.0


class Registry(models.Model):
    name = models.CharField(max_length=200, unique=True, help_text="Display name; defaults to host:port.")
    url = models.URLField(max_length=500, unique=True, help_text="Base URL, e.g. http://127.0.0.1:5000")
    username = models.CharField(max_length=200, blank=True)
    password_encrypted = models.TextField(blank=True, editable=False)
    insecure = models.BooleanField(default=False, help_text="Skip TLS certificate verification.")
    ca_bundle = models.TextField(blank=True, help_text="PEM CA certificates to trust for this registry.")
    identity_token = models.BooleanField(
        default=False, help_text="The stored secret is an OAuth2 identity (refresh) token, not a password."
    )
    allow_internal = models.BooleanField(
        default=False,
        help_text="Allow loopback, private and link-local addresses (an operator's decision; staff only).",
    )
    tracked = models.BooleanField(default=False, help_text="Scanned on schedule by the beat task.")
    scan_interval = models.DurationField(null=True, blank=True)
    next_scan_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_scanned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Politeness for this registry, shared by every worker (workers/politeness.py); null keeps the
    # deployment's REGISTRY_CONCURRENCY_LIMIT / REGISTRY_RATE_LIMIT. Bounded so a typo cannot flood it.
    max_concurrency = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(REGISTRY_MAX_CONCURRENCY)],
        help_text="Requests in flight at once to this registry, all workers together (empty: the default).",
    )
    max_requests_per_second = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(REGISTRY_MAX_RATE)],
        help_text="Requests per second to this registry, all workers together (empty: the default).",
    )

    class Meta:
        verbose_name_plural = "registries"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_concurrency__isnull=True)
                | Q(max_concurrency__gte=1, max_concurrency__lte=REGISTRY_MAX_CONCURRENCY),
                name="registry_max_concurrency_range",
            ),
            models.CheckConstraint(
                condition=Q(max_requests_per_second__isnull=True)
                | Q(max_requests_per_second__gte=0.1, max_requests_per_second__lte=REGISTRY_MAX_RATE),
                name="registry_max_requests_per_second_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[-1].rstrip("/")

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def set_password(self, raw: str | None) -> None:
        self.password_encrypted = encrypt_secret(raw) if raw else ""

    def get_password(self) -> str | None:
        return decrypt_secret(self.password_encrypted) if self.password_encrypted else None


class Repository(models.Model):
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="repositories")
    name = models.CharField(max_length=255)
    tracked = models.BooleanField(default=False)
    scan_interval = models.DurationField(null=True, blank=True)
    next_scan_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_scanned_at = models.DateTimeField(null=True, blank=True)
    # A lease, not a flag: a worker that dies mid-scan leaves a lease that simply expires.
    scan_lease_until = models.DateTimeField(null=True, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "repositories"
        ordering = ["registry_id", "name"]
        constraints = [models.UniqueConstraint(fields=["registry", "name"], name="repository_unique_name")]

    def __str__(self) -> str:
        return f"{self.registry.host}/{self.name}"


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
    # A deep scan (analytics.deep_scan) after each repository is read: compressed bytes it may stream
    # per repository scan; null for none.
    deep_budget_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    deep_measured_count = models.PositiveIntegerField(
        default=0, help_text="Layers whose uncompressed size and diff_id the deep scan measured."
    )

    class Meta:
        ordering = ["-created_at", "-id"]

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


class LayerChain(models.Model):
    """The hash of a manifest's first `depth` layer digests, in order (a chain id, by blob digest).

    Image X is a proper prefix of image Y when X's top chain (depth = its layer count) equals one of
    Y's chains at a smaller depth: an index lookup, never a layer-set comparison. Manifests are
    immutable, so rows are written once (`analytics.queries.lineage.chains_refresh`).
    """

    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="chains")
    depth = models.PositiveIntegerField()
    chain = models.CharField(max_length=64)
    is_top = models.BooleanField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["manifest", "depth"], name="layer_chain_unique_depth")]
        indexes = [models.Index(fields=["chain", "is_top", "manifest"], name="layer_chain_lookup")]


class SummarySnapshot(models.Model):
    """A registry's (repository null) or one repository's figures after a scan: the trend series."""

    taken_at = models.DateTimeField()
    scan = models.ForeignKey(Scan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="snapshots")
    repository = models.ForeignKey(
        Repository, null=True, blank=True, on_delete=models.CASCADE, related_name="snapshots"
    )
    images = models.PositiveIntegerField()
    manifests = models.PositiveIntegerField()
    distinct_layers = models.PositiveIntegerField()
    logical_bytes = models.BigIntegerField()
    stored_bytes = models.BigIntegerField()
    saved_bytes = models.BigIntegerField()

    class Meta:
        ordering = ["taken_at", "id"]
        indexes = [
            models.Index(fields=["registry", "repository", "taken_at"], name="snapshot_series"),
        ]


class RegistryBlob(models.Model):
    """Maintained reference counts of one blob in one registry, over present holdings.

    `refs`: holdings of any kind (image, index, artifact) referencing the blob as a layer or config;
    the registry stores the blob while it is above zero. `images`: image holdings listing it as a
    layer. `repositories`: repositories whose images list it as a layer. Ingest applies the change of
    each repository scan as deltas in the same transaction (`analytics.figures`).
    """

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+")
    blob = models.ForeignKey(Blob, on_delete=models.CASCADE, related_name="+")
    refs = models.IntegerField(default=0)
    layer_refs = models.IntegerField(default=0)
    images = models.IntegerField(default=0)
    repositories = models.IntegerField(default=0)
    # the blob's size (fixed by its digest), copied here so the rankings by size and by bytes saved
    # are index range scans within the registry
    size = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["registry", "blob"], name="registry_blob_unique")]
        indexes = [
            models.Index("registry", models.F("images").desc(), "blob", name="registry_blob_rank"),
            # bytes saved: size * (images - 1), as analytics.queries.layers spells it
            models.Index(
                "registry",
                (models.F("size") * (models.F("images") - 1)).desc(),
                "blob",
                name="registry_blob_saved",
                condition=Q(images__gt=0),
            ),
            models.Index(
                "registry",
                models.F("size").desc(),
                "blob",
                name="registry_blob_size",
                condition=Q(layer_refs__gt=0),
            ),
        ]


class RepositoryBlob(models.Model):
    """How many present image holdings of one repository list a blob as a layer (maintained)."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="+")
    blob = models.ForeignKey(Blob, on_delete=models.CASCADE, related_name="+")
    images = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repository", "blob"], name="repository_blob_unique")]
        indexes = [models.Index(fields=["blob", "repository"], name="repository_blob_by_blob")]


class RegistryManifestRef(models.Model):
    """How many repositories of a registry hold a manifest now (maintained): stored while above zero."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+")
    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="+")
    refs = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["registry", "manifest"], name="registry_manifest_ref_unique")
        ]


class SummaryFigures(models.Model):
    """The figures of a maintained, tagged-only summary row: DedupSummary's fields, kept current by ingest."""

    images = models.BigIntegerField(default=0)
    manifests = models.BigIntegerField(default=0)
    indexes = models.BigIntegerField(default=0)
    repositories = models.BigIntegerField(default=0)
    distinct_layers = models.BigIntegerField(default=0)
    logical_bytes = models.BigIntegerField(default=0)
    stored_bytes = models.BigIntegerField(default=0)
    layers_logical_bytes = models.BigIntegerField(default=0)
    layers_stored_bytes = models.BigIntegerField(default=0)
    foreign_bytes = models.BigIntegerField(default=0)
    # DedupSummary's `uncompressed_*` sums over the distinct layers of known uncompressed size, moved by
    # ingest's deltas and by a trigger (migration 0013) when a blob's size becomes known; db_default
    # for the raw INSERTs of figures_rebuild
    uncompressed_known_layers = models.BigIntegerField(default=0, db_default=0)
    uncompressed_logical_bytes = models.BigIntegerField(default=0, db_default=0)
    uncompressed_stored_bytes = models.BigIntegerField(default=0, db_default=0)
    uncompressed_known_compressed_bytes = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        abstract = True


class ScopeFigures(SummaryFigures):
    """The current tagged-only summary of a registry (repository null) or a repository (maintained)."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+")
    repository = models.OneToOneField(
        Repository, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )

    class Meta:
        verbose_name_plural = "scope figures"
        constraints = [
            models.UniqueConstraint(
                fields=["registry"], condition=Q(repository=None), name="scope_figures_one_per_registry"
            )
        ]


class BlobLine(models.Model):
    """The history line (`created_by`) that produced a layer: the first manifest listing it (lowest id)
    whose config has a history entry at that position. Fixed once found (later manifests have higher
    ids); ingest fills it for the layers of the manifests a scan changes (`analytics.figures`)."""

    blob = models.OneToOneField(Blob, primary_key=True, on_delete=models.CASCADE, related_name="+")
    created_by = models.TextField()


class RegistryInstruction(models.Model):
    """Build history of a registry, maintained: per `created_by` line, over the layers the registry
    holds (`RegistryBlob.layer_refs > 0`), their count, stored bytes (each once), unique bytes (held by
    one holding) and logical bytes (once per holding). Layers without a line count under ''."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+", db_index=False)
    created_by = models.TextField()
    layers = models.BigIntegerField(default=0)
    stored_bytes = models.BigIntegerField(default=0)
    unique_bytes = models.BigIntegerField(default=0)
    logical_bytes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # lines can be longer than a btree entry allows: keyed on their md5
            models.UniqueConstraint(
                models.F("registry"), MD5("created_by"), name="registry_instruction_unique"
            )
        ]


class DiffIdCopies(models.Model):
    """An uncompressed content (`diff_id`) stored under more than one blob digest, with how many.

    Kept by statement-level triggers on `analytics_blob` (migration 0012): every writer (ingest, deep
    scan, the bench generator's COPY) changes it in its own transaction, set-based, by recounting the
    diff_ids it touched through the `diff_id` index. Missed savings start from these few rows instead
    of grouping every blob. Two transactions adding the first two copies of one diff_id at the same
    moment can each count one; `figures_rebuild` recounts.
    """

    diff_id = models.CharField(max_length=200, primary_key=True)
    blobs = models.IntegerField()

    class Meta:
        verbose_name_plural = "diff id copies"


class NamespaceBlob(models.Model):
    """Maintained reference counts of one blob in one namespace (a strict path prefix of repositories).

    Like `RegistryBlob` over the repositories named `<namespace>/...` of the registry: `refs` counts
    their present holdings referencing the blob as a layer or config, `layer_refs` those listing it
    as a layer. A repository `a/b/c` counts in the namespaces `a` and `a/b`.
    """

    # the unique constraints lead with registry and namespace; no separate indexes on 3M-row tables
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+", db_index=False)
    namespace = models.CharField(max_length=255)
    blob = models.ForeignKey(Blob, on_delete=models.CASCADE, related_name="+", db_index=False)
    refs = models.IntegerField(default=0)
    layer_refs = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["registry", "namespace", "blob"], name="namespace_blob_unique")
        ]


class NamespaceManifestRef(models.Model):
    """How many repositories of a namespace hold a manifest now (maintained), like `RegistryManifestRef`."""

    # the unique constraints lead with registry and namespace; no separate indexes on 3M-row tables
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+", db_index=False)
    namespace = models.CharField(max_length=255)
    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="+", db_index=False)
    refs = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["registry", "namespace", "manifest"], name="namespace_manifest_ref_unique"
            )
        ]


class NamespaceFigures(SummaryFigures):
    """The current tagged-only summary of a namespace (strict path prefix), maintained like `ScopeFigures`."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+")
    namespace = models.CharField(max_length=255)

    class Meta:
        verbose_name_plural = "namespace figures"
        constraints = [
            models.UniqueConstraint(fields=["registry", "namespace"], name="namespace_figures_unique")
        ]


# --- Docker Engines (issue 5) ------------------------------------------------------------------------
# An engine is a source beside registries. Its scans are `EngineScan`, not `Scan`: a `Scan` always names
# a registry and counts repositories, and its state machine is the registry scan flow.


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
