"""Pure parsing: manifest and image-config bytes to records. No I/O here.

Supported manifests (each cites its spec):

- Docker image manifest v2, schema 2 (`application/vnd.docker.distribution.manifest.v2+json`,
  distribution `docs/spec/manifest-v2-2.md`);
- Docker manifest list (`application/vnd.docker.distribution.manifest.list.v2+json`, same document);
- OCI image manifest (`application/vnd.oci.image.manifest.v1+json`, image-spec `manifest.md`);
- OCI image index (`application/vnd.oci.image.index.v1+json`, image-spec `image-index.md`).

Docker schema 1 and artifacts (a manifest whose config is not an image config) raise `ManifestError`
("unsupported: ..."); later issues handle them.

The media type is decided as a client should (image-spec `manifest.md` "mediaType", distribution-spec
"Pulling manifests"): the `Content-Type` when it names a manifest type, else the body's `mediaType`,
else the body's shape. A body whose `mediaType` or shape contradicts the declared type is rejected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .errors import ManifestError
from .records import BlobRecord, HistoryRecord, ImageRecord, IndexChild, IndexRecord, Platform
from .reference import DIGEST_ALGORITHMS, DIGEST_RE

DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

IMAGE_MANIFEST_TYPES = frozenset({DOCKER_MANIFEST_V2, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
SCHEMA1_TYPES = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED})
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES
IMAGE_CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})

# What the client asks for, best first (distribution-spec "Pulling manifests": the Accept header).
ACCEPT = ", ".join(
    [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST_V2, f"{DOCKER_MANIFEST_V1_SIGNED};q=0.1"]
)

# Go's zero time.Time: what a config carries when `created` was never set.
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


@dataclass(frozen=True, slots=True)
class ParsedImageManifest:
    """A single-platform manifest: its config descriptor and ordered layer descriptors."""

    media_type: str
    config: BlobRecord
    layers: tuple[BlobRecord, ...]


@dataclass(frozen=True, slots=True)
class ParsedIndex:
    """A manifest list or OCI index: its child descriptors with their platforms, in order."""

    media_type: str
    children: tuple[IndexChild, ...]


@dataclass(frozen=True, slots=True)
class ParsedConfig:
    """What an image config says about the image (image-spec `config.md`)."""

    platform: Platform
    created: datetime | None
    diff_ids: tuple[str, ...]
    history: tuple[dict[str, Any], ...]
    labels: dict[str, str]


ParsedManifest = ParsedImageManifest | ParsedIndex


def normalize_media_type(value: str | None) -> str:
    """`Content-Type` without parameters, lowercased; "" when absent."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def _load_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"malformed {what}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"malformed {what}: a JSON {type(doc).__name__}, not an object")
    return doc


def _shape(doc: dict[str, Any]) -> str:
    """ "index", "image" or "" from which fields a document carries."""
    if "manifests" in doc:
        return "index"
    if "config" in doc or "layers" in doc:
        return "image"
    return ""


def resolve_media_type(doc: dict[str, Any], content_type: str | None) -> str:
    """Decide what a manifest document is, or raise `ManifestError`.

    1. Schema 1 (by `schemaVersion`, by its `fsLayers`, or declared) is unsupported.
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
        raise ManifestError("unsupported: Docker schema 1 manifest")
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


def _digest(value: Any, where: str) -> str:
    if not isinstance(value, str) or not DIGEST_RE.match(value):
        raise ManifestError(f"malformed manifest: {where} digest {value!r}")
    algorithm, encoded = value.split(":", 1)
    pattern = DIGEST_ALGORITHMS.get(algorithm)
    if pattern is None or not pattern.match(encoded):
        raise ManifestError(f"malformed manifest: {where} digest {value!r} (sha256/sha512 lowercase hex)")
    return value


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


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def _platform(raw: Any) -> Platform:
    if not isinstance(raw, dict):
        return Platform()
    return Platform(
        os=_str(raw, "os"),
        architecture=_str(raw, "architecture"),
        variant=_str(raw, "variant"),
        os_version=_str(raw, "os.version"),
    )


def parse_manifest(body: bytes, content_type: str | None = None) -> ParsedManifest:
    """Parse manifest bytes into a `ParsedImageManifest` or `ParsedIndex`; raise `ManifestError`.

    Artifacts (image-spec `manifest.md` "Guidelines for Artifact Usage": a config media type other than
    an image config, or an `artifactType`) are rejected as "unsupported artifact" for now.
    """
    doc = _load_object(body, "manifest")
    media_type = resolve_media_type(doc, content_type)
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError("malformed manifest: manifests is not a list")
        children = []
        for i, entry in enumerate(entries):
            digest, child_type, size = _descriptor(entry, f"manifests[{i}]")
            children.append(
                IndexChild(
                    digest=digest, media_type=child_type, size=size, platform=_platform(entry.get("platform"))
                )
            )
        return ParsedIndex(media_type=media_type, children=tuple(children))

    config_digest, config_type, config_size = _descriptor(doc.get("config"), "config")
    if config_type not in IMAGE_CONFIG_TYPES or doc.get("artifactType"):
        kind = doc.get("artifactType") or config_type
        raise ManifestError(f"unsupported artifact (type {kind})")
    layers_raw = doc.get("layers")
    if not isinstance(layers_raw, list):
        raise ManifestError("malformed manifest: layers is not a list")
    layers = []
    for i, raw in enumerate(layers_raw):
        digest, layer_type, size = _descriptor(raw, f"layers[{i}]")
        layers.append(BlobRecord(digest=digest, media_type=layer_type, size=size))
    config = BlobRecord(digest=config_digest, media_type=config_type, size=config_size)
    return ParsedImageManifest(media_type=media_type, config=config, layers=tuple(layers))


def parse_rfc3339(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (nanoseconds allowed, truncated to microseconds) as an aware datetime.

    None for anything else, and for Go's zero time (`0001-01-01T00:00:00Z`, "never set").
    """
    if not isinstance(value, str):
        return None
    m = _RFC3339.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = m.groups()
    try:
        if zulu:
            tz = UTC
        else:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            tz = timezone(-offset if sign == "-" else offset)
        micro = int((frac or "0")[:6].ljust(6, "0"))
        # A leap second (":60") is valid RFC 3339 but not a Python time: clamp to :59.
        sec = min(int(second), 59)
        parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), sec, micro, tzinfo=tz)
    except ValueError:
        return None
    return None if parsed == _GO_ZERO_TIME else parsed


def parse_config(body: bytes) -> ParsedConfig:
    """Parse an image config (image-spec `config.md`; Docker's is the same shape); raise `ManifestError`."""
    doc = _load_object(body, "image config")
    rootfs = doc.get("rootfs")
    diff_ids: tuple[str, ...] = ()
    if rootfs is not None:
        if not isinstance(rootfs, dict):
            raise ManifestError("malformed image config: rootfs is not an object")
        raw_ids = rootfs.get("diff_ids")
        raw_ids = [] if raw_ids is None else raw_ids
        if not isinstance(raw_ids, list) or not all(isinstance(d, str) for d in raw_ids):
            raise ManifestError("malformed image config: rootfs.diff_ids is not a list of digests")
        diff_ids = tuple(raw_ids)
    history = doc.get("history")
    history = [] if history is None else history
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ManifestError("malformed image config: history is not a list of objects")
    inner = doc.get("config")
    labels: dict[str, str] = {}
    if isinstance(inner, dict) and isinstance(inner.get("Labels"), dict):
        labels = {str(k): v for k, v in inner["Labels"].items() if isinstance(v, str)}
    return ParsedConfig(
        platform=_platform(doc),
        created=parse_rfc3339(doc.get("created")),
        diff_ids=diff_ids,
        history=tuple(history),
        labels=labels,
    )


def history_records(history: tuple[dict[str, Any], ...], layer_count: int) -> tuple[HistoryRecord, ...]:
    """History entries with the layer each produced, as `docker image history` pairs them.

    Each entry without `empty_layer: true` consumes the next layer in order; an empty-layer entry
    (ENV, CMD, LABEL, ...) produced none. A non-empty entry beyond the last layer gets None too.
    """
    out = []
    position = 0
    for entry in history:
        empty = entry.get("empty_layer") is True
        layer_position = None
        if not empty:
            layer_position = position if position < layer_count else None
            position += 1
        out.append(
            HistoryRecord(
                created=parse_rfc3339(entry.get("created")),
                created_by=_str(entry, "created_by"),
                comment=_str(entry, "comment"),
                author=_str(entry, "author"),
                empty_layer=empty,
                layer_position=layer_position,
            )
        )
    return tuple(out)


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
            BlobRecord(digest=b.digest, media_type=b.media_type, size=b.size, diff_id=d)
            for b, d in zip(layers, config.diff_ids, strict=True)
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
    )


def build_index_record(*, digest: str, size: int, index: ParsedIndex) -> IndexRecord:
    """An `IndexRecord` from a parsed index."""
    return IndexRecord(digest=digest, media_type=index.media_type, size=size, children=index.children)
