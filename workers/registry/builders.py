"""Records from parsed parts, the package's output contract (`records`): an image's manifest joined
with its config, an artifact, an index, and a schema 1 image with its layers' sizes.
"""

from __future__ import annotations

import dataclasses

from .image_config import ParsedConfig, history_records
from .manifests import ParsedImageManifest, ParsedIndex
from .records import KIND_ARTIFACT, BlobRecord, ImageRecord, IndexRecord, Platform
from .schema1 import ParsedSchema1


def merge_platform(preferred: Platform | None, fallback: Platform) -> Platform:
    """`preferred` (an index entry's platform) field by field, falling back to the config's."""
    if preferred is None:
        return fallback
    return Platform(
        os=preferred.os or fallback.os,
        architecture=preferred.architecture or fallback.architecture,
        variant=preferred.variant or fallback.variant,
        os_version=preferred.os_version or fallback.os_version,
    )


def build_image_record(
    *,
    digest: str,
    size: int,
    manifest: ParsedImageManifest,
    config: ParsedConfig,
    platform: Platform | None = None,
) -> ImageRecord:
    """Join a parsed manifest and its parsed config into an `ImageRecord`.

    `diff_id`s go onto the layers only when the config lists exactly one per layer; otherwise the
    pairing would be a guess. `platform` (from an index entry) wins over the config's, field by field.
    """
    layers = manifest.layers
    if config.diff_ids and len(config.diff_ids) == len(layers):
        layers = tuple(
            dataclasses.replace(b, diff_id=d) for b, d in zip(layers, config.diff_ids, strict=True)
        )
    return ImageRecord(
        digest=digest,
        media_type=manifest.media_type,
        size=size,
        config=manifest.config,
        layers=layers,
        platform=merge_platform(platform, config.platform),
        created=config.created,
        history=history_records(config.history, len(layers)),
        labels=dict(config.labels),
        subject=manifest.subject,
        annotations=dict(manifest.annotations),
    )


def build_artifact_record(
    *,
    digest: str,
    size: int,
    manifest: ParsedImageManifest,
    artifact_type: str = "",
    subject: str = "",
    platform: Platform | None = None,
) -> ImageRecord:
    """An `ImageRecord` of kind "artifact": stored bytes (manifest, config, layers), never an image.

    Its config is not read (it need not be an image config); `artifact_type` and `subject` given here
    (from an index entry's annotations, or a tag name) fill in what the manifest itself does not say.
    """
    return ImageRecord(
        digest=digest,
        media_type=manifest.media_type,
        size=size,
        config=manifest.config,
        layers=manifest.layers,
        platform=platform or Platform(),
        created=None,
        kind=KIND_ARTIFACT,
        artifact_type=manifest.artifact_type or artifact_type,
        subject=manifest.subject or subject,
        annotations=dict(manifest.annotations),
    )


def build_index_record(*, digest: str, size: int, index: ParsedIndex) -> IndexRecord:
    """An `IndexRecord` from a parsed index."""
    return IndexRecord(
        digest=digest,
        media_type=index.media_type,
        size=size,
        children=index.children,
        artifact_type=index.artifact_type,
        subject=index.subject,
    )


def build_schema1_record(
    *,
    digest: str,
    size: int,
    manifest: ParsedSchema1,
    sizes: dict[str, int],
    platform: Platform | None = None,
) -> ImageRecord:
    """An `ImageRecord` for a schema 1 manifest, given each layer blob's size (from blob HEADs).

    Layer media types are the gzip layer type schema 1 implies; there is no config blob.
    """
    layers = tuple(
        BlobRecord(digest=d, media_type="application/vnd.docker.image.rootfs.diff.tar.gzip", size=sizes[d])
        for d in manifest.layers
    )
    return ImageRecord(
        digest=digest,
        media_type=manifest.media_type,
        size=size,
        config=None,
        layers=layers,
        platform=merge_platform(platform, manifest.platform),
        created=manifest.created,
        history=manifest.history,
    )
