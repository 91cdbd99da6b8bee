"""Pure parsing of manifests and indexes to `ParsedImageManifest`, `ParsedIndex` or (schema 1)
`ParsedSchema1`. No I/O here.

Supported manifests (each cites its spec):

- Docker image manifest v2, schema 2 (`application/vnd.docker.distribution.manifest.v2+json`,
  distribution `docs/spec/manifest-v2-2.md`);
- Docker manifest list (`application/vnd.docker.distribution.manifest.list.v2+json`, same document);
- OCI image manifest (`application/vnd.oci.image.manifest.v1+json`, image-spec `manifest.md`);
- OCI image index (`application/vnd.oci.image.index.v1+json`, image-spec `image-index.md`).

- Docker schema 1, signed and unsigned: handed to `schema1.parse_schema1`.
- Artifacts (image-spec `manifest.md` "Guidelines for Artifact Usage": an `artifactType`, or a config
  that is not an image config such as `application/vnd.oci.empty.v1+json`), with their `subject`:
  parsed as `ParsedImageManifest(kind="artifact")`.

Which type a body is comes from `media_types.resolve_media_type`; the JSON is read strictly and its
strings cleaned by `documents`. Image configs are `image_config`'s; records are built by `builders`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .documents import _digest, _load_object, _platform, clean_map, clean_text
from .errors import ManifestError
from .media_types import IMAGE_CONFIG_TYPES, INDEX_TYPES, SCHEMA1_TYPES, resolve_media_type
from .records import KIND_ARTIFACT, KIND_IMAGE, BlobRecord, IndexChild
from .schema1 import ParsedSchema1, parse_schema1

# BuildKit's attestation manifests sit in an index as `unknown/unknown` with these annotations
# (buildkit docs/attestations/attestation-storage.md).
ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"
ANNOTATION_REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"


@dataclass(frozen=True, slots=True)
class ParsedImageManifest:
    """A single-platform manifest: its config descriptor and ordered layer descriptors.

    `kind` is "artifact" for an OCI artifact (its config is not read as an image config).
    """

    media_type: str
    config: BlobRecord
    layers: tuple[BlobRecord, ...]
    kind: str = KIND_IMAGE
    artifact_type: str = ""
    subject: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ParsedIndex:
    """A manifest list or OCI index: its child descriptors with their platforms, in order."""

    media_type: str
    children: tuple[IndexChild, ...]
    artifact_type: str = ""
    subject: str = ""


ParsedManifest = ParsedImageManifest | ParsedIndex | ParsedSchema1


def _descriptor(raw: Any, where: str) -> tuple[str, str, int]:
    """(digest, mediaType, size) of a descriptor (image-spec `descriptor.md`); all three are REQUIRED."""
    if not isinstance(raw, dict):
        raise ManifestError(f"malformed manifest: {where} is not an object")
    digest = _digest(raw.get("digest"), where)
    media_type = raw.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"malformed manifest: {where} has no mediaType")
    size = raw.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ManifestError(f"malformed manifest: {where} size {size!r}")
    return digest, media_type, size


def _layer(raw: Any, where: str) -> BlobRecord:
    """A layer descriptor with its annotations and (foreign layers) `urls`, which are never fetched."""
    digest, media_type, size = _descriptor(raw, where)
    urls = raw.get("urls")
    kept_urls = tuple(clean_text(u) for u in urls if isinstance(u, str)) if isinstance(urls, list) else ()
    return BlobRecord(
        digest=digest,
        media_type=clean_text(media_type),
        size=size,
        annotations=clean_map(raw.get("annotations")),
        urls=kept_urls,
    )


def _subject(doc: dict[str, Any]) -> str:
    """The `subject` descriptor's digest (image-spec 1.1 manifest.md "subject"), or ""."""
    raw = doc.get("subject")
    if raw is None:
        return ""
    digest, _, _ = _descriptor(raw, "subject")
    return digest


def _artifact_type(doc: dict[str, Any]) -> str:
    value = doc.get("artifactType")
    if value is not None and (not isinstance(value, str) or not value):
        raise ManifestError("malformed manifest: artifactType is not a media type")
    return clean_text(value or "")


def is_attestation_entry(child: IndexChild) -> bool:
    """A BuildKit attestation manifest in an index: by its annotation, or its `unknown/unknown` platform."""
    if child.annotations.get(ANNOTATION_REFERENCE_TYPE) == ATTESTATION_MANIFEST:
        return True
    return child.platform.os == "unknown" and child.platform.architecture == "unknown"


def parse_manifest(body: bytes, content_type: str | None = None) -> ParsedManifest:
    """Parse manifest bytes into a `ParsedImageManifest`, `ParsedIndex` or `ParsedSchema1`.

    An artifact (image-spec `manifest.md` "Guidelines for Artifact Usage": an `artifactType`, or a
    config media type other than an image config, e.g. the empty config) comes back as a
    `ParsedImageManifest` with kind "artifact", its artifact type and its `subject`. Raises
    `ManifestError` for anything malformed.
    """
    doc = _load_object(body, "manifest")
    media_type = resolve_media_type(doc, content_type)
    if media_type in SCHEMA1_TYPES:
        return parse_schema1(body, doc=doc)
    artifact_type = _artifact_type(doc)
    subject = _subject(doc)
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError("malformed manifest: manifests is not a list")
        children = []
        for i, entry in enumerate(entries):
            digest, child_type, size = _descriptor(entry, f"manifests[{i}]")
            child_artifact = entry.get("artifactType")
            children.append(
                IndexChild(
                    digest=digest,
                    media_type=clean_text(child_type),
                    size=size,
                    platform=_platform(entry.get("platform")),
                    annotations=clean_map(entry.get("annotations")),
                    artifact_type=clean_text(child_artifact) if isinstance(child_artifact, str) else "",
                )
            )
        return ParsedIndex(
            media_type=media_type, children=tuple(children), artifact_type=artifact_type, subject=subject
        )

    config_digest, config_type, config_size = _descriptor(doc.get("config"), "config")
    layers_raw = doc.get("layers")
    if layers_raw is None and (artifact_type or config_type not in IMAGE_CONFIG_TYPES):
        layers_raw = []  # an artifact may have no layers (image-spec: layers SHOULD have one)
    if not isinstance(layers_raw, list):
        raise ManifestError("malformed manifest: layers is not a list")
    layers = tuple(_layer(raw, f"layers[{i}]") for i, raw in enumerate(layers_raw))
    config = BlobRecord(digest=config_digest, media_type=clean_text(config_type), size=config_size)
    annotations = clean_map(doc.get("annotations"))
    if artifact_type or config_type not in IMAGE_CONFIG_TYPES:
        # image-spec: with no artifactType, the config's media type is the artifact's type.
        return ParsedImageManifest(
            media_type=media_type,
            config=config,
            layers=layers,
            kind=KIND_ARTIFACT,
            artifact_type=artifact_type or config.media_type,
            subject=subject,
            annotations=annotations,
        )
    return ParsedImageManifest(
        media_type=media_type, config=config, layers=layers, subject=subject, annotations=annotations
    )
