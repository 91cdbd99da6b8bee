"""Docker schema 1 manifests, signed and unsigned (distribution `docs/spec/manifest-v2-1.md`): parsed
to `ParsedSchema1`, and the payload a signed one's digest covers (`schema1_payload`, libtrust), which
`manifest_digest` uses for any manifest's digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .documents import _digest, _load_object, _str, clean_text, load_json, parse_rfc3339
from .errors import ManifestError
from .media_types import DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED
from .records import HistoryRecord, Platform


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
