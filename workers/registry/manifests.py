"""Pure parsing: manifest and image-config bytes to records. No I/O here.

Supported manifests (each cites its spec):

- Docker image manifest v2, schema 2 (`application/vnd.docker.distribution.manifest.v2+json`,
  distribution `docs/spec/manifest-v2-2.md`);
- Docker manifest list (`application/vnd.docker.distribution.manifest.list.v2+json`, same document);
- OCI image manifest (`application/vnd.oci.image.manifest.v1+json`, image-spec `manifest.md`);
- OCI image index (`application/vnd.oci.image.index.v1+json`, image-spec `image-index.md`).

- Docker schema 1, signed and unsigned (distribution `docs/spec/manifest-v2-1.md`): `parse_schema1`;
  its digest is over the payload without the JWS signatures (`schema1_payload`, libtrust).
- Artifacts (image-spec `manifest.md` "Guidelines for Artifact Usage": an `artifactType`, or a config
  that is not an image config such as `application/vnd.oci.empty.v1+json`), with their `subject`:
  parsed as `ParsedImageManifest(kind="artifact")`.

Every JSON document is read strictly (`load_json`): no NaN or Infinity, no duplicate keys, nesting at
most `MAX_JSON_DEPTH`; every string that will be stored goes through `clean_text` (PostgreSQL text
holds neither NUL nor lone surrogates).

The media type is decided as a client should (image-spec `manifest.md` "mediaType", distribution-spec
"Pulling manifests"): the `Content-Type` when it names a manifest type, else the body's `mediaType`,
else the body's shape. A body whose `mediaType` or shape contradicts the declared type is rejected.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .errors import ManifestError
from .records import (
    KIND_ARTIFACT,
    KIND_IMAGE,
    BlobRecord,
    HistoryRecord,
    ImageRecord,
    IndexChild,
    IndexRecord,
    Platform,
)
from .reference import DIGEST_ALGORITHMS, DIGEST_RE

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

# BuildKit's attestation manifests sit in an index as `unknown/unknown` with these annotations
# (buildkit docs/attestations/attestation-storage.md).
ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"
ANNOTATION_REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"

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

MAX_JSON_DEPTH = 64  # far above any real manifest or config (about 6 levels)

# Go's zero time.Time: what a config carries when `created` was never set.
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


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


@dataclass(frozen=True, slots=True)
class ParsedSchema1:
    """A Docker schema 1 manifest, oldest layer first (the document lists newest first).

    `layers` are the blob digests of the non-throwaway entries, in order; sizes are not in the
    document and must come from the registry (a blob HEAD). `history` pairs with `layers` by
    `empty_layer`, like a schema 2 config's.
    """

    media_type: str
    payload_digest: str
    platform: Platform
    layers: tuple[str, ...]
    history: tuple[HistoryRecord, ...]
    created: datetime | None


@dataclass(frozen=True, slots=True)
class ParsedConfig:
    """What an image config says about the image (image-spec `config.md`)."""

    platform: Platform
    created: datetime | None
    diff_ids: tuple[str, ...]
    history: tuple[dict[str, Any], ...]
    labels: dict[str, str]


ParsedManifest = ParsedImageManifest | ParsedIndex | ParsedSchema1


def normalize_media_type(value: str | None) -> str:
    """`Content-Type` without parameters, lowercased; "" when absent."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """`value` safe for PostgreSQL text: NUL removed, lone surrogates replaced by U+FFFD.

    JSON allows both (`\\u0000`, `\\ud800`); PostgreSQL rejects NUL in text and UTF-8 cannot encode
    a lone surrogate. Dropping NUL changes nothing a person reads.
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    return _SURROGATE.sub("\ufffd", value)


def clean_map(raw: Any) -> dict[str, str]:
    """A JSON object of strings (labels, annotations) with clean keys and values; others dropped."""
    if not isinstance(raw, dict):
        return {}
    return {clean_text(str(k)): clean_text(v) for k, v in raw.items() if isinstance(v, str)}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            # RFC 8259 section 4: names SHOULD be unique; parsers disagree on which value wins, so a
            # document with duplicates can mean two things to two readers (a known smuggling trick).
            raise ValueError(f"duplicate key {key!r}")
        doc[key] = value
    return doc


def _depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON value, iteratively (no recursion limit to hit)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in value.values())
        elif isinstance(value, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in value)
    return deepest


def load_json(body: bytes | str, what: str) -> Any:
    """Parse `body` strictly: UTF-8, no NaN/Infinity, no duplicate keys, depth at most `MAX_JSON_DEPTH`."""
    try:
        doc = json.loads(body, parse_constant=_reject_constant, object_pairs_hook=_unique_pairs)
    except RecursionError:
        raise ManifestError(f"malformed {what}: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"malformed {what}: not JSON ({exc})") from None
    if _depth(doc) > MAX_JSON_DEPTH:
        raise ManifestError(f"malformed {what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return doc


def _load_object(body: bytes | str, what: str) -> dict[str, Any]:
    doc = load_json(body, what)
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
    return clean_text(value) if isinstance(value, str) else ""


def _platform(raw: Any) -> Platform:
    if not isinstance(raw, dict):
        return Platform()
    return Platform(
        os=_str(raw, "os"),
        architecture=_str(raw, "architecture"),
        variant=_str(raw, "variant"),
        os_version=_str(raw, "os.version"),
    )


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


# -- Docker schema 1 ---------------------------------------------------------------------------------


def _b64url(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise ManifestError(f"malformed schema 1 manifest: {where} is not a string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError):
        raise ManifestError(f"malformed schema 1 manifest: {where} is not base64url") from None


def schema1_payload(body: bytes, doc: dict[str, Any] | None = None) -> bytes:
    """The bytes a signed schema 1 manifest's digest covers: the document without its signatures.

    libtrust's JSON web signature (`jsonsign.go`, used by distribution `manifest/schema1`): each
    signature's base64url `protected` header holds `formatLength` (the payload's length: the body up to
    where `"signatures"` was spliced in) and `formatTail` (base64url of the bytes that closed the
    document). payload = body[:formatLength] + formatTail. Every signature must agree. An unsigned
    manifest is its own payload.
    """
    doc = _load_object(body, "manifest") if doc is None else doc
    signatures = doc.get("signatures")
    if signatures is None:
        return body
    if not isinstance(signatures, list) or not signatures:
        raise ManifestError("malformed schema 1 manifest: signatures is not a non-empty list")
    payloads = set()
    for i, sig in enumerate(signatures):
        if not isinstance(sig, dict):
            raise ManifestError(f"malformed schema 1 manifest: signatures[{i}] is not an object")
        try:
            protected = json.loads(_b64url(sig.get("protected"), f"signatures[{i}].protected"))
        except ValueError:
            raise ManifestError(
                f"malformed schema 1 manifest: signatures[{i}].protected is not JSON"
            ) from None
        if not isinstance(protected, dict):
            raise ManifestError(f"malformed schema 1 manifest: signatures[{i}].protected is not an object")
        length = protected.get("formatLength")
        if isinstance(length, bool) or not isinstance(length, int) or not 0 < length <= len(body):
            raise ManifestError(f"malformed schema 1 manifest: formatLength {length!r}")
        tail = _b64url(protected.get("formatTail"), f"signatures[{i}].formatTail")
        payloads.add(body[:length] + tail)
    if len(payloads) != 1:
        raise ManifestError("malformed schema 1 manifest: signatures disagree on the payload")
    payload = payloads.pop()
    _load_object(payload, "schema 1 payload")  # what the digest covers must itself be a document
    return payload


def manifest_digest(body: bytes, algorithm: str = "sha256") -> str:
    """The digest a registry gives `body`: of the raw bytes, except a signed schema 1's payload.

    Raises `ManifestError` only for a signed schema 1 whose signatures cannot be undone.
    """
    content = body
    if b'"signatures"' in body and b'"fsLayers"' in body:
        try:
            doc = load_json(body, "manifest")
        except ManifestError:
            doc = None
        if isinstance(doc, dict) and doc.get("schemaVersion") == 1 and "signatures" in doc:
            content = schema1_payload(body, doc)
    return f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"


def _created_by_v1(v1: dict[str, Any]) -> str:
    """What `docker history` shows for a schema 1 entry: the container config's Cmd, joined."""
    container = v1.get("container_config")
    cmd = container.get("Cmd") if isinstance(container, dict) else None
    if isinstance(cmd, list):
        return clean_text(" ".join(c for c in cmd if isinstance(c, str)))
    return ""


def parse_schema1(body: bytes, doc: dict[str, Any] | None = None) -> ParsedSchema1:
    """Parse a Docker schema 1 manifest (distribution `docs/spec/manifest-v2-1.md`).

    1. `fsLayers[i]` pairs with `history[i]`, both newest first; both are reversed to oldest first.
    2. Each `history[i].v1Compatibility` is a JSON string (read strictly); `throwaway: true` marks an
       entry that made no layer (its blob, the empty tar, is in `fsLayers` but is no layer of the image:
       docker's schema 1 to schema 2 conversion drops it).
    3. The platform is the top-level `architecture` and the newest entry's `os` (linux if absent).
    """
    doc = _load_object(body, "manifest") if doc is None else doc
    payload = schema1_payload(body, doc)
    media_type = DOCKER_MANIFEST_V1_SIGNED if "signatures" in doc else DOCKER_MANIFEST_V1
    fs_layers, history = doc.get("fsLayers"), doc.get("history")
    if not isinstance(fs_layers, list) or not fs_layers:
        raise ManifestError("malformed schema 1 manifest: fsLayers is not a non-empty list")
    if not isinstance(history, list) or len(history) != len(fs_layers):
        raise ManifestError("malformed schema 1 manifest: history and fsLayers differ in length")
    layers: list[str] = []
    entries: list[HistoryRecord] = []
    newest: dict[str, Any] = {}
    for i in reversed(range(len(fs_layers))):
        fs, h = fs_layers[i], history[i]
        if not isinstance(fs, dict) or not isinstance(h, dict):
            raise ManifestError(f"malformed schema 1 manifest: fsLayers[{i}] or history[{i}] not an object")
        blob = _digest(fs.get("blobSum"), f"fsLayers[{i}].blobSum")
        raw_v1 = h.get("v1Compatibility")
        if not isinstance(raw_v1, str):
            raise ManifestError(f"malformed schema 1 manifest: history[{i}].v1Compatibility is not a string")
        v1 = _load_object(raw_v1, f"history[{i}].v1Compatibility")
        empty = v1.get("throwaway") is True
        if not empty:
            layers.append(blob)
        entries.append(
            HistoryRecord(
                created=parse_rfc3339(v1.get("created")),
                created_by=_created_by_v1(v1),
                comment=_str(v1, "comment"),
                author=_str(v1, "author"),
                empty_layer=empty,
                layer_position=None if empty else len(layers) - 1,
            )
        )
        if i == 0:
            newest = v1
    platform = Platform(os=_str(newest, "os") or "linux", architecture=_str(doc, "architecture"))
    return ParsedSchema1(
        media_type=media_type,
        payload_digest=f"sha256:{hashlib.sha256(payload).hexdigest()}",
        platform=platform,
        layers=tuple(layers),
        history=tuple(entries),
        created=parse_rfc3339(newest.get("created")),
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
        diff_ids = tuple(clean_text(d) for d in raw_ids)
    history = doc.get("history")
    history = [] if history is None else history
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ManifestError("malformed image config: history is not a list of objects")
    inner = doc.get("config")
    labels = clean_map(inner.get("Labels")) if isinstance(inner, dict) else {}
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
