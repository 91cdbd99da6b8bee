"""Every write of a saved cleanup policy (`CleanupPolicy`): create, update, delete.

A policy is checked before anything is written: its text is parsed in its format (`preview.policy_parse`,
whose refusals name a line and column or a JSON path: wrong types, unknown fields, bad or catastrophic
regexes, a document past 64 KiB), its name and scope are checked; a refusal raises and saves nothing.
The text is stored as given, so the user's document comes back unchanged. A policy saved (or changed in
what it selects, or enabled) is sent to a worker to be evaluated once the write has committed.
"""

from __future__ import annotations

from celery import current_app
from django.db import IntegrityError, transaction

from analytics.errors import Conflict, InvalidPolicy, InvalidRequest
from analytics.infra.text import printable
from analytics.models import CleanupPolicy, Registry, Repository
from analytics.policies.preview import FORMATS, policy_parse

MAX_NAME_CHARS = 100
MAX_SCOPE_CHARS = 255
# What changes a policy's selection: a new revision, so its next evaluation is a new point.
_SELECTING = ("text", "format", "namespace", "repository")
EVALUATE_TASK = "workers.tasks.evaluate_cleanup_policy"


def _evaluate_soon(policy: CleanupPolicy) -> None:
    """A policy saved, or changed in what it selects, gets its first point from a worker now rather than
    after the registry's next change (`evaluate.policy_evaluate`, bounded there)."""
    if policy.enabled:
        transaction.on_commit(lambda: current_app.send_task(EVALUATE_TASK, args=[policy.id]), robust=True)


def policy_text_check(*, text: object, format: str | None) -> str:
    """The format of a policy text that parses (`format` if given, else guessed); InvalidPolicy if not."""
    if not isinstance(text, str):
        raise InvalidPolicy("the policy's text must be a string (the policy's document as JSON text)")
    if "\x00" in text:
        raise InvalidPolicy("the policy's text holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPolicy(
            f"the policy's text is not UTF-8 text (a lone surrogate at {exc.start})"
        ) from None
    return policy_parse(text, format=format or None).format


def policy_name_check(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("name: a policy needs a name")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequest(f"name: at most {MAX_NAME_CHARS} characters, not {len(name):,}")
    if printable(name) != name or any(c in name for c in "\r\n\t"):
        raise InvalidRequest("name: control characters are not allowed")
    return name.strip()


def policy_scope_check(*, registry: Registry, namespace: str, repository: str) -> tuple[str, str]:
    namespace = (namespace or "").strip().strip("/")
    repository = (repository or "").strip()
    for what, value in (("namespace", namespace), ("repository", repository)):
        if len(value) > MAX_SCOPE_CHARS:
            raise InvalidRequest(f"{what}: at most {MAX_SCOPE_CHARS} characters, not {len(value):,}")
        if any(c.isspace() or not c.isprintable() for c in value):
            raise InvalidRequest(f"{what}: a repository path has no spaces or control characters")
    if repository:
        if not Repository.objects.filter(registry=registry, name=repository).exists():
            raise InvalidRequest(
                f"repository: {repository!r} is not recorded in registry {registry.name} (scan it first)"
            )
        if namespace and not (repository == namespace or repository.startswith(namespace + "/")):
            raise InvalidRequest(f"repository: {repository!r} is not in namespace {namespace!r}")
    return namespace, repository


def cleanup_policy_create(
    *,
    registry: Registry,
    name: str,
    text: str,
    format: str | None = None,
    namespace: str = "",
    repository: str = "",
    enabled: bool = True,
) -> CleanupPolicy:
    """Save a policy for `registry`; `format` None guesses it from the text's fields."""
    name = policy_name_check(name)
    fmt = policy_text_check(text=text, format=format)
    namespace, repository = policy_scope_check(registry=registry, namespace=namespace, repository=repository)
    try:
        with transaction.atomic():
            policy = CleanupPolicy.objects.create(
                registry=registry,
                name=name,
                format=fmt,
                text=text,
                namespace=namespace,
                repository=repository,
                enabled=bool(enabled),
            )
    except IntegrityError:
        raise Conflict(f"registry {registry.name} already has a policy named {name!r}") from None
    _evaluate_soon(policy)
    return policy


def cleanup_policy_update(*, policy: CleanupPolicy, **changes: object) -> CleanupPolicy:
    """Change `name`, `text`, `format`, `namespace`, `repository` or `enabled` (those given; None keeps
    a value). A text given without a format is read in the policy's format."""
    unknown = set(changes) - {"name", "enabled", *_SELECTING}
    if unknown:
        raise InvalidRequest(f"cannot change {', '.join(sorted(unknown))}")
    given = {k: v for k, v in changes.items() if v is not None}
    name = policy_name_check(given["name"]) if "name" in given else policy.name
    text = given.get("text", policy.text)
    format = given.get("format", policy.format)
    if format not in FORMATS:
        raise InvalidPolicy(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if "text" in given or "format" in given:
        format = policy_text_check(text=text, format=str(format))
    namespace, repository = policy_scope_check(
        registry=policy.registry,
        namespace=str(given.get("namespace", policy.namespace)),
        repository=str(given.get("repository", policy.repository)),
    )
    new = {
        "name": name,
        "text": text,
        "format": format,
        "namespace": namespace,
        "repository": repository,
        "enabled": bool(given.get("enabled", policy.enabled)),
    }
    selecting = any(getattr(policy, k) != new[k] for k in _SELECTING)
    enabling = new["enabled"] and not policy.enabled
    for key, value in new.items():
        setattr(policy, key, value)
    if selecting:
        policy.revision += 1
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError:
        policy.refresh_from_db()
        raise Conflict(f"registry {policy.registry.name} already has a policy named {name!r}") from None
    if selecting or enabling:
        _evaluate_soon(policy)
    return policy


def cleanup_policy_delete(*, policy: CleanupPolicy) -> None:
    """Delete the policy and its series."""
    policy.delete()
