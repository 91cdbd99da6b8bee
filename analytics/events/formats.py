"""What registries send, read into plain records: distribution notifications, Harbor webhooks and Quay
repository-push notifications, told apart by content type and shape. Bounded: the body's size is
checked before this, nesting and the number of events here, every field's length against its column.

- distribution (`notifications/event.go`; `application/vnd.docker.distribution.events.v1+json`, v2 in
  distribution 3): an envelope `{"events": [...]}`, each event with a unique `id`, an `action` (push,
  pull, mount, delete) and a `target` (repository, digest, mediaType, tag, url). Distribution 2.8
  sends one event per request, pull events for HEAD requests too, and for a manifest deleted by digest
  one delete naming the digest and one naming each tag it untagged (no digest).
- Harbor (`src/pkg/notifier/model/event.go`, `application/json`): `{"type": "PUSH_ARTIFACT" |
  "PULL_ARTIFACT" | "DELETE_ARTIFACT", "occur_at": <unix seconds>, "operator": ..., "event_data":
  {"resources": [{"digest", "tag", "resource_url"}], "repository": {"repo_full_name", ...}}}`; a
  resource's `tag` is the artifact's first tag, or its digest when it has none.
- Quay (`notifications/notificationevent.py` RepoPushEvent, `application/json`): `{"repository":
  "ns/name", "namespace", "name", "docker_url", "homepage", "updated_tags": [...]}`, no digest, no time.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from analytics.events.pulls import is_scanner
from analytics.infra import jsontext
from workers.registry.errors import ReferenceError as InvalidReference
from workers.registry.media_types import MANIFEST_TYPES, SCHEMA1_TYPES
from workers.registry.reference import validate_digest, validate_repository, validate_tag

DISTRIBUTION_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",  # distribution 3
    }
)
JSON_TYPES = frozenset({"application/json"})
# A body is at most EVENTS_MAX_BODY_BYTES; this bounds the rows one request may write (distribution
# sends one event a request; an envelope of a few hundred would be a registry batching on purpose).
MAX_EVENTS = 1000
MAX_DEPTH = 8  # the deepest of the three formats nests 5 levels

SOURCE_DISTRIBUTION, SOURCE_HARBOR, SOURCE_QUAY = "distribution", "harbor", "quay"
PUSH, PULL, DELETE, MOUNT = "push", "pull", "delete", "mount"
MANIFEST, BLOB = "manifest", "blob"

_HARBOR_ACTIONS = {"PUSH_ARTIFACT": PUSH, "PULL_ARTIFACT": PULL, "DELETE_ARTIFACT": DELETE}


class EventFormatError(ValueError):
    """A request to refuse whole (400, nothing stored); `reason` labels the refusal in the metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EventRecord:
    """One event as the inbox stores it (`RegistryEvent`'s columns)."""

    key: str
    source: str
    action: str
    target: str
    repository: str
    tag: str = ""
    digest: str = ""
    media_type: str = ""
    user_agent: str = ""
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class Parsed:
    source: str
    events: tuple[EventRecord, ...]
    ignored: int  # events of a kind Layerlens has no use for (a HEAD, a Harbor scan finished, ...)


def events_parse(*, body: bytes, content_type: str) -> Parsed:
    """The events in one request's body, or `EventFormatError` (media type, JSON, shape, names)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in DISTRIBUTION_TYPES and media_type not in JSON_TYPES:
        raise EventFormatError("media_type", f"unknown media type {media_type[:100]!r}")
    try:
        document = jsontext.loads(body, max_depth=MAX_DEPTH)
    except ValueError as exc:  # UnicodeDecodeError too
        raise EventFormatError("malformed", f"malformed JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise EventFormatError("malformed", "the body is no JSON object")
    if media_type in DISTRIBUTION_TYPES or "events" in document:
        return _distribution(document)
    if "event_data" in document and "type" in document:
        return _harbor(document)
    if "updated_tags" in document and "repository" in document:
        return _quay(document)
    raise EventFormatError("shape", "no distribution envelope, Harbor webhook or Quay notification")


# -- fields --------------------------------------------------------------------------------------------


def _text(value: object, what: str, *, limit: int, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise EventFormatError("shape", f"{what} is missing")
        return ""
    if not isinstance(value, str):
        raise EventFormatError("shape", f"{what} is no string")
    if len(value) > limit or "\x00" in value:
        raise EventFormatError("shape", f"{what} is longer than {limit} characters or holds a NUL")
    return value


def _reference(value, what: str, *, limit: int, valid, called: str, required: bool = False) -> str:
    """`value` as the spec spells a `what` (empty when absent and not `required`), else refused."""
    text = _text(value, what, limit=limit, required=required)
    if not text:
        return ""
    try:
        return valid(text)
    except InvalidReference:
        raise EventFormatError(what, f"{text[:100]!r} is no {called}") from None


def _repository(value: object) -> str:
    return _reference(
        value, "repository", limit=255, valid=validate_repository, called="repository name", required=True
    )


def _tag(value: object) -> str:
    return _reference(value, "tag", limit=128, valid=validate_tag, called="tag")


def _digest(value: object) -> str:
    return _reference(value, "digest", limit=100, valid=validate_digest, called="digest")


def _time(value: object) -> datetime | None:
    """RFC 3339 as Go writes it (nanoseconds, `Z`); an unreadable time is no reason to lose the event."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:  # Python reads at most microseconds
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:digits][:6]}{rest[digits:]}"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _object(value: object, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventFormatError("shape", f"{what} is no object")
    return value


def _list(value: object, what: str) -> list:
    if not isinstance(value, list):
        raise EventFormatError("shape", f"{what} is no list")
    if len(value) > MAX_EVENTS:
        raise EventFormatError("too_many", f"{what}: more than {MAX_EVENTS} in one request")
    return value


def _content_key(source: str, *parts: object) -> str:
    """For a format whose events carry no id: the same event sent again is the same key."""
    text = json.dumps(parts, separators=(",", ":"), sort_keys=True, default=str)
    return f"{source}:{hashlib.sha256(text.encode()).hexdigest()}"


# -- distribution ---------------------------------------------------------------------------------------


def _distribution(document: dict) -> Parsed:
    records: list[EventRecord] = []
    ignored = 0
    for raw in _list(document.get("events"), "events"):
        event = _object(raw, "an event")
        action = _text(event.get("action"), "action", limit=16)
        target = _object(event.get("target"), "target")
        request = _object(event.get("request"), "request")
        repository = _repository(target.get("repository"))
        if action not in (PUSH, PULL, DELETE, MOUNT):
            ignored += 1
            continue
        user_agent = str(request.get("useragent") or "")[:255]
        # A HEAD is a check, not a pull (Docker Hub counts GETs of manifests only): a client asking
        # whether its copy is current, the scanner's incremental rescans. The scanner's own reads are
        # no pulls either: a scan of a followed registry would otherwise fill the inbox with them.
        if action == PULL and (
            _text(request.get("method"), "method", limit=16).upper() == "HEAD" or is_scanner(user_agent)
        ):
            ignored += 1
            continue
        media_type = _text(target.get("mediaType"), "mediaType", limit=255)
        url = _text(target.get("url"), "url", limit=4096)
        digest = _digest(target.get("digest"))
        tag = _tag(target.get("tag"))
        if action == DELETE:
            kind = MANIFEST  # a digest (manifest or blob: the event does not say) or a tag
        elif media_type in MANIFEST_TYPES or media_type in SCHEMA1_TYPES or "/manifests/" in url:
            kind = MANIFEST
        else:
            kind = BLOB
        event_id = _text(event.get("id"), "id", limit=100)
        records.append(
            EventRecord(
                key=f"distribution:{event_id}" if event_id else _content_key(SOURCE_DISTRIBUTION, event),
                source=SOURCE_DISTRIBUTION,
                action=action,
                target=kind,
                repository=repository,
                tag=tag,
                digest=digest,
                media_type=media_type,
                user_agent=user_agent,
                occurred_at=_time(event.get("timestamp")),
            )
        )
    return Parsed(SOURCE_DISTRIBUTION, tuple(records), ignored)


# -- Harbor ------------------------------------------------------------------------------------------------


def _harbor(document: dict) -> Parsed:
    kind = _text(document.get("type"), "type", limit=64)
    action = _HARBOR_ACTIONS.get(kind)
    data = _object(document.get("event_data"), "event_data")
    resources = _list(data.get("resources") or [], "resources")
    if action is None:  # scans, quotas, replication, charts: nothing Layerlens records
        return Parsed(SOURCE_HARBOR, (), max(1, len(resources)))
    repository = _repository(_object(data.get("repository"), "repository").get("repo_full_name"))
    occur_at = document.get("occur_at")
    occurred = (
        datetime.fromtimestamp(occur_at, tz=UTC)
        if isinstance(occur_at, int | float) and 0 <= occur_at < 2**33
        else None
    )
    operator = _text(document.get("operator"), "operator", limit=255)
    records = []
    for position, raw in enumerate(resources):
        resource = _object(raw, "a resource")
        digest = _digest(resource.get("digest"))
        reference = _text(resource.get("tag"), "tag", limit=128)
        # the artifact's first tag, or its digest when it has none
        tag = "" if not reference or ":" in reference else _tag(reference)
        records.append(
            EventRecord(
                # Harbor's events carry no id: a redelivery repeats every field, so it is the same key;
                # two pulls of one digest by one operator within one second count once.
                key=_content_key(
                    SOURCE_HARBOR, kind, occur_at, operator, repository, digest, reference, position
                ),
                source=SOURCE_HARBOR,
                action=action,
                target=MANIFEST,
                repository=repository,
                tag=tag,
                digest=digest,
                user_agent=f"harbor:{operator}"[:255] if operator else "",
                occurred_at=occurred,
            )
        )
    return Parsed(SOURCE_HARBOR, tuple(records), 0)


# -- Quay --------------------------------------------------------------------------------------------------


def _quay(document: dict) -> Parsed:
    repository = _repository(document.get("repository"))
    tags = [_tag(t) for t in _list(document.get("updated_tags"), "updated_tags")]
    records = tuple(
        EventRecord(
            # Quay's notification names no digest and no time, so two pushes of one tag are the same
            # document: each delivery is its own event. Applying a push again re-reads the tag, which
            # changes nothing the first did not.
            key=f"quay:{uuid.uuid4()}",
            source=SOURCE_QUAY,
            action=PUSH,
            target=MANIFEST,
            repository=repository,
            tag=tag,
        )
        for tag in dict.fromkeys(t for t in tags if t)
    )
    return Parsed(SOURCE_QUAY, records, 0)
