"""Registry writes: create, update and schedule a registry, and take its credentials from a Docker
config. Secrets are encrypted by the model (`Registry.set_password`); nothing here returns them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from analytics.errors import Conflict, InvalidRequest
from analytics.models import (
    Registry,
)
from workers.registry.reference import parse_scan_target


def _normalise_url(url: str) -> str:
    target = parse_scan_target(url)
    if target.repository:
        raise InvalidRequest(
            f"{url!r} names a repository; a registry is its base URL, e.g. http://127.0.0.1:5000"
        )
    return target.registry_url.rstrip("/")


def registry_upsert(
    *,
    url: str,
    name: str | None = None,
    username: str | None = None,
    password: str | None = None,
    insecure: bool | None = None,
    ca_bundle: str | None = None,
    allow_internal: bool | None = None,
    docker_config: str | None = None,
) -> Registry:
    """Create a registry by base URL, or update the one that has it. Idempotent.

    `docker_config` is the text of a Docker `config.json`: its entry for this registry replaces the
    credentials (a user name and password, or an identity token). `allow_internal` is the operator's
    decision to let this registry live on a loopback, private or link-local address; callers check
    who may make it (staff, a management command).
    """
    base = _normalise_url(url)
    if docker_config is not None:
        found = registry_credentials_from_docker_config(config_text=docker_config, registry_url=base)
        username, password = found.username, found.secret
    registry = Registry.objects.filter(url=base).first() or Registry(
        url=base, name=name or base.split("://", 1)[1]
    )
    taken = Registry.objects.filter(name=name or registry.name).exclude(url=base).first()
    if taken is not None:
        raise Conflict(f"the name {taken.name!r} belongs to the registry at {taken.url}; choose another name")
    if name:
        registry.name = name
    if username is not None:
        registry.username = username
    if password is not None:
        registry.set_password(password)
        registry.identity_token = docker_config is not None and found.identity_token
    if allow_internal is not None:
        registry.allow_internal = allow_internal
    if insecure is not None:
        registry.insecure = insecure
    if ca_bundle is not None:
        registry.ca_bundle = ca_bundle
    registry.save()
    return registry


def registry_create(
    *,
    url: str,
    tracked: bool = False,
    scan_interval: timedelta | None = None,
    max_concurrency: int | None = None,
    max_requests_per_second: float | None = None,
    **fields: object,
) -> Registry:
    """Create a registry; a registry with the same base URL already existing is a conflict. The
    politeness limits (null: the settings') are the caller's to validate (the model's validators)."""
    if Registry.objects.filter(url=_normalise_url(url)).exists():
        raise Conflict(f"a registry with base URL {_normalise_url(url)} exists already")
    with transaction.atomic():
        registry = registry_upsert(url=url, **fields)  # type: ignore[arg-type]
        if max_concurrency is not None or max_requests_per_second is not None:
            registry.max_concurrency = max_concurrency
            registry.max_requests_per_second = max_requests_per_second
            registry.save(update_fields=["max_concurrency", "max_requests_per_second"])
        if tracked or scan_interval:
            registry_schedule(registry=registry, tracked=tracked, interval=scan_interval)
    return registry


def registry_schedule(*, registry: Registry, tracked: bool, interval: timedelta | None) -> Registry:
    """Track a registry (scanned every `interval` by the beat task) or stop tracking it."""
    if tracked and (interval is None or interval.total_seconds() < 60):
        raise InvalidRequest("a tracked registry needs a scan interval of at least 60 seconds")
    registry.tracked, registry.scan_interval = tracked, interval
    registry.next_scan_at = timezone.now() if tracked else None
    registry.save(update_fields=["tracked", "scan_interval", "next_scan_at"])
    return registry


@dataclass(frozen=True)
class DockerConfigCredentials:
    username: str | None
    secret: str = field(repr=False)
    identity_token: bool


def registry_credentials_from_docker_config(
    *, config_text: str, registry_url: str
) -> DockerConfigCredentials:
    """The credentials a Docker `config.json` holds for `registry_url`, via `docker.auth`.

    Only `auths` entries are read: `auth` (base64 `user:password`) or `identitytoken` (kept as the
    secret and used as an OAuth2 refresh token). `credsStore` and `credHelpers` name programs to run;
    a file that came from a user must never make us run one, so they are refused, never executed.
    """
    import docker.auth
    import docker.errors

    try:
        doc = json.loads(config_text)
    except ValueError as exc:
        raise InvalidRequest(f"the Docker config is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("the Docker config is not a JSON object")
    host = registry_url.split("://", 1)[-1].rstrip("/")
    helpers = doc.pop("credHelpers", None) or {}
    store = doc.pop("credsStore", None)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    if not auths and not helpers and not store:
        # Never hand docker.auth an empty dict: it would read this machine's own ~/.docker/config.json.
        raise InvalidRequest("the Docker config has no 'auths' entries")
    try:
        # Docker Hub's entry is keyed by the index (https://index.docker.io/v1/), not by the registry host.
        lookup = None if host in ("registry-1.docker.io", "index.docker.io", "docker.io") else host
        loaded = docker.auth.load_config(config_dict={"auths": dict(auths)}) if auths else {}
        entry = docker.auth.resolve_authconfig(loaded, lookup) if auths else None
    except (docker.errors.DockerException, ValueError, TypeError) as exc:
        raise InvalidRequest(f"the Docker config's auths are malformed: {exc}") from None
    if entry and entry.get("IdentityToken"):
        return DockerConfigCredentials(username=None, secret=entry["IdentityToken"], identity_token=True)
    if entry and entry.get("username") is not None and entry.get("password") is not None:
        return DockerConfigCredentials(
            username=entry["username"], secret=entry["password"], identity_token=False
        )
    if host in helpers or store:
        helper = helpers.get(host) or store
        raise InvalidRequest(
            f"the Docker config keeps the credentials for {host} in the credential helper "
            f"'docker-credential-{helper}', which Layerlens does not run; "
            "give the user name and password instead"
        )
    raise InvalidRequest(f"the Docker config has no usable credentials for {host} under 'auths'")
