"""Plain, immutable records a registry source produces.

Nothing here knows of Django: ingest turns these into rows. One `ImageRecord` per single-platform
manifest, one `IndexRecord` per manifest list / OCI index, as DESIGN section 1 describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Layers a registry does not store: the image names URLs to fetch them from (distribution
# manifest-v2-2.md "foreign layers"; image-spec layer.md "Non-Distributable Layers", deprecated).
FOREIGN_LAYER_TYPES = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

KIND_IMAGE = "image"
KIND_ARTIFACT = "artifact"


@dataclass(frozen=True, slots=True)
class Platform:
    os: str = ""
    architecture: str = ""
    variant: str = ""
    os_version: str = ""

    def __str__(self) -> str:
        parts = [p for p in (self.os, self.architecture, self.variant) if p]
        return "/".join(parts)


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """A content-addressed blob: a layer or an image config, as a manifest describes it."""

    digest: str
    media_type: str
    size: int
    diff_id: str | None = None  # layers only: the uncompressed digest, from the config's rootfs
    uncompressed_size: int | None = None
    # image-spec descriptor.md: annotations (e.g. eStargz's TOC digest) and `urls` (foreign layers);
    # the urls are kept for the record and never fetched.
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()

    @property
    def foreign(self) -> bool:
        """A foreign / non-distributable layer: the registry does not store it (image-spec layer.md)."""
        return self.media_type in FOREIGN_LAYER_TYPES


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One entry of an image config's `history`, as `docker image history` shows it."""

    created: datetime | None
    created_by: str
    comment: str
    author: str
    empty_layer: bool
    layer_position: int | None  # index into the manifest's layers; None for an empty layer


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """A single-platform manifest, its config and its layers, verified against their digests.

    `kind` is "image", or "artifact" for what is stored but is no image: an OCI artifact (an
    `artifactType` or a non-image config), a BuildKit attestation, a signature / SBOM / referrers tag.
    `subject` is the digest the artifact is about, when known. Docker schema 1 has no config blob
    (`config` None).
    """

    digest: str
    media_type: str
    size: int  # bytes of the manifest as served
    config: BlobRecord | None
    layers: tuple[BlobRecord, ...]
    platform: Platform
    created: datetime | None
    history: tuple[HistoryRecord, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    kind: str = KIND_IMAGE
    artifact_type: str = ""
    subject: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    # True when the caller already knew the config (by digest) and it was not fetched: `created`,
    # `labels`, `history`, the layers' `diff_id`s and the config's platform are then left to the caller.
    config_known: bool = False


@dataclass(frozen=True, slots=True)
class IndexChild:
    digest: str
    media_type: str
    size: int
    platform: Platform
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str = ""


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """A manifest list / OCI index; each child is also produced as its own `ImageRecord`."""

    digest: str
    media_type: str
    size: int
    children: tuple[IndexChild, ...]
    artifact_type: str = ""  # image-spec 1.1 image-index.md: an index may be an artifact too
    subject: str = ""


ManifestRecord = ImageRecord | IndexRecord


@dataclass(frozen=True, slots=True)
class ManifestFailure:
    """A manifest (by tag or digest) that could not be read; recorded on the scan."""

    reference: str  # the tag or digest that was asked for
    kind: str  # a short error class name, e.g. "DigestMismatch"
    message: str
    transient: bool = False  # the error may pass (RegistryError.transient): a 5xx, a timeout


@dataclass(frozen=True, slots=True)
class RepositorySnapshot:
    """Everything one scan of one repository found.

    `tags` maps each tag to the digest it points at now; `manifests` holds every manifest reachable from
    those tags (indexes and their children), each once; `failures` the references that could not be read.
    With a `known_manifests` callback or `previous` tags (an incremental rescan), manifests the caller
    already has are left out of `manifests`: a tag may then name a digest with no record here.
    `unchanged` counts the tags whose HEAD gave the digest the caller already had for them.
    """

    registry_url: str
    repository: str
    tags: dict[str, str]
    manifests: tuple[ManifestRecord, ...]
    failures: tuple[ManifestFailure, ...] = ()
    # index children of a media type we do not read (not failures): `kind` "Skipped"
    skipped: tuple[ManifestFailure, ...] = ()
    # signature, attestation, SBOM and referrers-fallback tags: tag -> what it is ("signature", ...)
    artifact_tags: dict[str, str] = field(default_factory=dict)
    unchanged: int = 0
