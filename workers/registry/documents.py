"""Untrusted JSON documents read safely: strictly parsed (`load_json`: no NaN or Infinity, no duplicate
keys, nesting at most `MAX_JSON_DEPTH`), and the fields every parser takes from them (strings,
digests, platforms, RFC 3339 times) made safe to store. Every string that will be stored goes through
`clean_text` (PostgreSQL text holds neither NUL nor lone surrogates).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .errors import ManifestError
from .records import Platform
from .reference import DIGEST_ALGORITHMS, DIGEST_RE

MAX_JSON_DEPTH = 64  # far above any real manifest or config (about 6 levels)

# Go's zero time.Time: what a config carries when `created` was never set.
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
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


def _digest(value: Any, where: str) -> str:
    if not isinstance(value, str) or not DIGEST_RE.match(value):
        raise ManifestError(f"malformed manifest: {where} digest {value!r}")
    algorithm, encoded = value.split(":", 1)
    pattern = DIGEST_ALGORITHMS.get(algorithm)
    if pattern is None or not pattern.match(encoded):
        raise ManifestError(f"malformed manifest: {where} digest {value!r} (sha256/sha512 lowercase hex)")
    return value


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
