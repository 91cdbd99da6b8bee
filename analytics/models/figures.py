"""What ingest maintains so reads cost the answer, not the registry: reference counts, summary rows per
registry, repository and namespace, layer chains, build-history lines and trend points."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import MD5

from analytics.models.content import Blob, Manifest
from analytics.models.registries import Registry, Repository
from analytics.models.scans import Scan


class LayerChain(models.Model):
    """The hash of a manifest's first `depth` layer digests, in order (a chain id, by blob digest).

    Image X is a proper prefix of image Y when X's top chain (depth = its layer count) equals one of
    Y's chains at a smaller depth: an index lookup, never a layer-set comparison. Manifests are
    immutable, so rows are written once (`analytics.ingest.chains.chains_refresh`).

    `layer_count` is the manifest's, repeated on each row so that the images derived from X (Y's
    non-top chains equal to X's top chain) come out of `layer_chain_derived` in the order the API
    lists them (fewest extra layers first) without reading any other row.
    """

    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="chains")
    depth = models.PositiveIntegerField()
    chain = models.CharField(max_length=64)
    is_top = models.BooleanField()
    # A database default keeps writers that predate the column inserting (0: no real row has it).
    layer_count = models.PositiveIntegerField(db_default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["manifest", "depth"], name="layer_chain_unique_depth")]
        indexes = [
            models.Index(fields=["chain", "is_top", "manifest"], name="layer_chain_lookup"),
            models.Index(
                fields=["chain", "layer_count", "manifest"],
                name="layer_chain_derived",
                condition=models.Q(is_top=False),
            ),
        ]


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
    each repository scan as deltas in the same transaction (`analytics.ingest.figures`).
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
            # bytes saved: size * (images - 1), as analytics.selectors.layers spells it
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
            # the layer ranking's default order (most images, most bytes saved, blob), ascending so a
            # row comparison pages it (analytics.selectors.layers.layer_ranking_maintained)
            models.Index(
                "registry",
                models.F("images") * -1,
                models.F("size") * (models.F("images") - 1) * -1,
                "blob",
                name="registry_blob_ranking",
                condition=Q(images__gt=0),
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


class BlobRegistries(models.Model):
    """How many registries hold a blob now (maintained): `registries` those whose `RegistryBlob.refs`
    is above zero, `layer_registries` those whose `layer_refs` is. Moved only when a registry starts or
    stops holding the blob (`analytics.ingest.figures`), so a layer shared inside one registry never
    writes here. Rows above one registry are the cross-registry copies (`cross_registry_content`) and the
    correction from the sum of the registries' summaries to the summary of all of them."""

    blob = models.OneToOneField(Blob, primary_key=True, on_delete=models.CASCADE, related_name="+")
    registries = models.IntegerField(default=0)
    layer_registries = models.IntegerField(default=0)
    size = models.BigIntegerField(default=0)  # the blob's, fixed by its digest: the order below

    class Meta:
        verbose_name_plural = "blob registries"
        indexes = [
            models.Index(
                (models.F("size") * (models.F("registries") - 1)).desc(),
                name="blob_registries_cross",
                condition=Q(registries__gt=1),
            )
        ]


class ManifestRegistries(models.Model):
    """How many registries hold a manifest now (`RegistryManifestRef.refs` above zero), like
    `BlobRegistries`."""

    manifest = models.OneToOneField(Manifest, primary_key=True, on_delete=models.CASCADE, related_name="+")
    registries = models.IntegerField(default=0)
    size = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "manifest registries"
        indexes = [
            models.Index(
                (models.F("size") * (models.F("registries") - 1)).desc(),
                name="manifest_registries_cross",
                condition=Q(registries__gt=1),
            )
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


# The maintained figures' columns, in declaration order (the `uncompressed_*` four last).
SUMMARY_FIGURE_FIELDS: tuple[str, ...] = tuple(f.name for f in SummaryFigures._meta.fields)


class ScopeFigures(SummaryFigures):
    """The current tagged-only summary of a registry (repository null) or a repository (maintained)."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+")
    repository = models.OneToOneField(
        Repository, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # The registry row only: changed (to the next value of the sequence `analytics_content_version`, its
    # database default) in the transaction of every write the registry's materialized answers read
    # (`analytics.ingest.answers`); never repeats, so a row rebuilt from scratch is a new version too.
    content_version = models.BigIntegerField(null=True, blank=True)

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
    ids); ingest fills it for the layers of the manifests a scan changes (`analytics.ingest.figures`)."""

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


class RegistryHeld(models.Model):
    """What a registry holds now, counted once per digest, and its current tags (maintained).

    The distinct manifests (`RegistryManifestRef.refs > 0`) and blobs (`RegistryBlob.refs > 0`: layers
    and configs, foreign layers included) and their bytes, and the tags naming a manifest: together
    with `ScopeFigures` they are the exact what-if of deleting every tag of the registry, read in one
    row (`analytics.selectors.whatif`). Moved by `figures_apply` from the same 0 <-> positive
    transitions as the summary, and by ingest's tag changes; `figures_rebuild` recomputes it.
    """

    registry = models.OneToOneField(Registry, primary_key=True, on_delete=models.CASCADE, related_name="+")
    manifests = models.BigIntegerField(default=0)
    manifest_bytes = models.BigIntegerField(default=0)
    blobs = models.BigIntegerField(default=0)
    blob_bytes = models.BigIntegerField(default=0)
    tags = models.BigIntegerField(default=0)


class DiffIdEpoch(models.Model):
    """One row: changed (in the writer's transaction, at its commit) whenever `DiffIdCopies` changes, by
    a deferred trigger (migration 0025). Missed savings follow blobs' `diff_id`s, which any registry's
    deep scan, ingest or an engine sets on shared blobs; their materialized rows hold the epoch they
    were computed at."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    value = models.BigIntegerField(default=0)


class RegistryAnswer(models.Model):
    """What a registry's materialized answer (`RegistryStaleBase`, `RegistryMissedSaving`) was computed
    from: the registry's `ScopeFigures.content_version` and, for missed savings, the `DiffIdEpoch`. The
    rows are current while both still hold (`analytics.selectors.answers`)."""

    class Kind(models.TextChoices):
        STALE_BASES = "stale_bases"
        MISSED_SAVINGS = "missed_savings"

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+", db_index=False)
    answer = models.CharField(max_length=32, choices=Kind.choices)
    content_version = models.BigIntegerField(null=True)
    diff_epoch = models.BigIntegerField(null=True)
    computed_at = models.DateTimeField()
    rows = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["registry", "answer"], name="registry_answer_unique")]


class RegistryStaleBase(models.Model):
    """One row of `stale_bases` for a registry, materialized: `rank` is its place in the answer's order
    (most images, then repository, tag, old digest), so a page is a range of the primary index."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+", db_index=False)
    rank = models.IntegerField()
    repository = models.TextField()
    tag = models.TextField()
    old_digest = models.TextField()
    new_digest = models.TextField()
    moved_at = models.DateTimeField()
    images = models.IntegerField()
    image_bytes = models.BigIntegerField()
    # "holding-id repository digest" per affected image, by holding id (as the query aggregates them)
    affected = ArrayField(models.TextField())
    still_tagged = ArrayField(models.TextField(), default=list)  # "repository:tag" still naming old_digest

    class Meta:
        constraints = [models.UniqueConstraint(fields=["registry", "rank"], name="registry_stale_base_rank")]


class RegistryMissedSaving(models.Model):
    """One row of `missed_savings` for a registry, materialized: `rank` is its place in the registry's
    order (most bytes saved, then diff_id)."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="+", db_index=False)
    rank = models.IntegerField()
    diff_id = models.TextField()
    copies = models.IntegerField()
    stored_bytes = models.BigIntegerField()
    smallest_bytes = models.BigIntegerField()
    saved_bytes = models.BigIntegerField()
    blobs = ArrayField(models.TextField())  # "digest media-type size", smallest first

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["registry", "rank"], name="registry_missed_saving_rank")
        ]
