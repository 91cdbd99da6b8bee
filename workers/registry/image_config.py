"""Image configs (image-spec `config.md`; Docker's is the same shape) parsed to `ParsedConfig`, and
their history paired with the layers as `docker image history` pairs them. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .documents import _load_object, _platform, _str, clean_map, clean_text, parse_rfc3339
from .errors import ManifestError
from .records import HistoryRecord, Platform


@dataclass(frozen=True, slots=True)
class ParsedConfig:
    """What an image config says about the image (image-spec `config.md`)."""

    platform: Platform
    created: datetime | None
    diff_ids: tuple[str, ...]
    history: tuple[dict[str, Any], ...]
    labels: dict[str, str]


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
