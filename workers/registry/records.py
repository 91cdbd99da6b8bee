"""Plain, immutable records a registry source produces.

Nothing here knows of Django: ingest turns these into rows. One `ImageRecord` per single-platform
manifest, one `IndexRecord` per manifest list / OCI index, as DESIGN section 1 describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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
    """A single-platform image manifest, its config and its layers, verified against their digests."""

    digest: str
    media_type: str
    size: int  # bytes of the manifest as served
    config: BlobRecord
    layers: tuple[BlobRecord, ...]
    platform: Platform
    created: datetime | None
    history: tuple[HistoryRecord, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IndexChild:
    digest: str
    media_type: str
    size: int
    platform: Platform


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """A manifest list / OCI index; each child is also produced as its own `ImageRecord`."""

    digest: str
    media_type: str
    size: int
    children: tuple[IndexChild, ...]


ManifestRecord = ImageRecord | IndexRecord


@dataclass(frozen=True, slots=True)
class ManifestFailure:
    """A manifest (by tag or digest) that could not be read; recorded on the scan."""

    reference: str  # the tag or digest that was asked for
    kind: str  # a short error class name, e.g. "DigestMismatch"
    message: str


@dataclass(frozen=True, slots=True)
class RepositorySnapshot:
    """Everything one scan of one repository found.

    `tags` maps each tag to the digest it points at now; `manifests` holds every manifest reachable from
    those tags (indexes and their children), each once; `failures` the references that could not be read.
    """

    registry_url: str
    repository: str
    tags: dict[str, str]
    manifests: tuple[ManifestRecord, ...]
    failures: tuple[ManifestFailure, ...] = ()
