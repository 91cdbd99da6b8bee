"""Media types: the manifest, index and config types this package reads, the `Accept` list it sends,
and how a manifest's type is decided from its `Content-Type` and its body.

The media type is decided as a client should (image-spec `manifest.md` "mediaType", distribution-spec
"Pulling manifests"): the `Content-Type` when it names a manifest type, else the body's `mediaType`,
else the body's shape. A body whose `mediaType` or shape contradicts the declared type is rejected.
"""

from __future__ import annotations

from typing import Any

from .errors import ManifestError

DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

OCI_EMPTY = "application/vnd.oci.empty.v1+json"  # image-spec manifest.md "Guidance for an Empty Descriptor"

IMAGE_MANIFEST_TYPES = frozenset({DOCKER_MANIFEST_V2, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
SCHEMA1_TYPES = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED})
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES
# What an index child may be and still be read; anything else is skipped (image-spec image-index.md:
# "implementations SHOULD ignore descriptors with unknown media types" in spirit, and so do
# containerd's and go-containerregistry's walkers).
READABLE_CHILD_TYPES = MANIFEST_TYPES | SCHEMA1_TYPES
IMAGE_CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})

# What the client asks for on HEAD and GET (distribution-spec "Pulling manifests": the Accept header);
# schema 1 last, as containerd and containers/image do.
ACCEPT = ", ".join(
    [
        OCI_INDEX,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        DOCKER_MANIFEST_V2,
        f"{DOCKER_MANIFEST_V1_SIGNED};q=0.5",
        f"{DOCKER_MANIFEST_V1};q=0.4",
    ]
)


def normalize_media_type(value: str | None) -> str:
    """`Content-Type` without parameters, lowercased; "" when absent."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def _shape(doc: dict[str, Any]) -> str:
    """ "index", "image" or "" from which fields a document carries."""
    if "manifests" in doc:
        return "index"
    if "config" in doc or "layers" in doc:
        return "image"
    return ""


def resolve_media_type(doc: dict[str, Any], content_type: str | None) -> str:
    """Decide what a manifest document is, or raise `ManifestError`.

    1. Schema 1 (by `schemaVersion`, by its `fsLayers`, or declared): the signed type when the body
       carries `signatures`, else the unsigned one.
    2. The body's `mediaType` wins: the digest covers the body, not the `Content-Type` header, and the
       distribution spec only says the header SHOULD match it. A header naming another type is the
       registry's mistake, not the content's.
    3. Without a body `mediaType`, a `Content-Type` naming a manifest type decides; a missing or generic
       one (application/json, text/plain, octet-stream, ...) yields to the body's shape, taken as OCI
       since Docker's formats require `mediaType`.
    4. The body's shape must agree with the type so decided (image-spec: `manifests` for an index,
       `config` and `layers` for a manifest); a body contradicting its declared type is rejected.
    """
    declared = normalize_media_type(content_type)
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise ManifestError("malformed manifest: mediaType is not a string")
    body_type = normalize_media_type(body_type)
    if (
        declared in SCHEMA1_TYPES
        or body_type in SCHEMA1_TYPES
        or doc.get("schemaVersion") == 1
        or "fsLayers" in doc
    ):
        if doc.get("schemaVersion") != 1 or not isinstance(doc.get("fsLayers"), list):
            raise ManifestError("malformed manifest: schema 1 without schemaVersion 1 and fsLayers")
        return DOCKER_MANIFEST_V1_SIGNED if "signatures" in doc else DOCKER_MANIFEST_V1
    if doc.get("schemaVersion") != 2:
        raise ManifestError(f"malformed manifest: schemaVersion {doc.get('schemaVersion')!r}, expected 2")
    shape = _shape(doc)
    if body_type:
        media_type, source = body_type, "its mediaType"
    elif declared in MANIFEST_TYPES:
        media_type, source = declared, "its Content-Type"
    elif shape == "index":
        media_type, source = OCI_INDEX, "its shape"
    elif shape == "image":
        media_type, source = OCI_MANIFEST, "its shape"
    else:
        raise ManifestError("malformed manifest: neither layers nor manifests, and no mediaType")
    if media_type not in MANIFEST_TYPES:
        raise ManifestError(f"unsupported manifest media type {media_type!r}")
    expected_shape = "index" if media_type in INDEX_TYPES else "image"
    if shape != expected_shape or (expected_shape == "index" and ("config" in doc or "layers" in doc)):
        found = ", ".join(k for k in ("manifests", "config", "layers") if k in doc) or "none of them"
        raise ManifestError(
            f"manifest contradicts {source} ({media_type}): fields manifests/config/layers found: {found}"
        )
    return media_type
