"""Registry and repository writes: create and update a registry (credentials, TLS, limits), take its
credentials from a Docker config, set the secret it sends its events with, and track a registry or
repository on a schedule. Every write path (the API, the admin, the commands, a scan's target) comes
through here. Secrets are encrypted by the model (`Registry.set_password`, `set_events_secret`);
nothing here returns them, and no message repeats one."""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import docker.auth
import docker.errors
import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.errors import Conflict, InvalidRequest
from analytics.infra import jsontext
from analytics.models import REGISTRY_MAX_CONCURRENCY, REGISTRY_MAX_RATE, Registry, Repository
from workers.registry.errors import RegistryError
from workers.registry.policy import NetworkPolicy, parse_networks
from workers.registry.reference import parse_scan_target

MIN_SCAN_INTERVAL = timedelta(seconds=60)
RESOLVE_TIMEOUT_SECONDS = 2.0  # a request waits no longer for the policy check's name lookup
ALLOW_INTERNAL_HINT = (
    "allow an internal registry with allow_internal: true (staff, API), `--allow-internal` "
    "(manage.py registry add / scan) or LAYERLENS_ALLOWED_NETWORKS"
)
# Beat adds the interval to now: a longer one would overflow the date (and fail every due scan with it).
MAX_SCAN_INTERVAL = timedelta(days=365)


# The longest texts kept for a registry or an engine (README "Limits"): PEM certificates (a few CAs, a
# chain), a Docker config.json, a secret (a password, token or PEM key). Each is stored, and the PEM is
# returned with every registry listed.
MAX_PEM_CHARS = 64 * 1024
MAX_DOCKER_CONFIG_CHARS = 64 * 1024
MAX_SECRET_CHARS = 16 * 1024

# A registry sends its events secret as `Authorization: Bearer <secret>` (distribution, Harbor) or as
# the password of the webhook URL's user info (Quay): RFC 6750's b64token keeps it one header token and
# safe in YAML and a URL. At least 16 characters: the secret is all that stands between the receiver
# and anyone who can reach it.
EVENTS_SECRET_MIN_CHARS = 16
EVENTS_SECRET_MAX_CHARS = 256
_EVENTS_SECRET = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
EVENTS_SECRET_RULE = (
    f"an events secret is {EVENTS_SECRET_MIN_CHARS} to {EVENTS_SECRET_MAX_CHARS} characters of letters, "
    "digits and - . _ ~ + / (a bearer token, RFC 6750), e.g. from `openssl rand -hex 32`"
)


def text_check(name: str, value: str | None, most: int) -> None:
    """A text a caller gave is at most `most` characters: an InvalidRequest naming it otherwise."""
    if value is not None and len(value) > most:
        raise InvalidRequest(f"{name} is at most {most:,} characters, not {len(value):,}")


def _columns_check(row: Registry, names: tuple[str, ...]) -> None:
    """The row's text columns fit, the name derived from the URL included."""
    for name in names:
        text_check(name, getattr(row, name), type(row)._meta.get_field(name).max_length)


class Keep(enum.Enum):
    """The value of an argument left out: the field keeps what it has (None means "set to null")."""

    KEEP = "keep"


KEEP = Keep.KEEP


def registry_url_normalise(url: str, *, field: str = "url") -> str:
    """A registry's base URL as stored: http(s), host and port, no path; refused (an `InvalidRequest`
    naming `field`) for a repository URL, userinfo, a query, a fragment or another scheme. The message
    never repeats userinfo: it may be a password."""
    try:
        target = parse_scan_target(url, what="registry URL")
    except RegistryError as exc:
        raise InvalidRequest(f"{field}: {exc}") from None
    if target.repository:
        raise InvalidRequest(
            f"{field}: {url!r} names a repository; a registry is its base URL, e.g. http://127.0.0.1:5000"
        )
    return target.registry_url.rstrip("/")


def registry_reachable_check(*, url: str, allow_internal: bool, field: str = "url") -> None:
    """Refuse (an `InvalidRequest` naming `field`) a registry whose address the workers' SSRF policy
    (`workers.registry.policy`) will refuse, before anything is stored: an IP literal is judged as
    it is, a name as it resolves now (within `RESOLVE_TIMEOUT_SECONDS`; a name that does not resolve
    passes, and every connection is checked again anyway)."""
    if allow_internal:
        return
    parsed = httpx.URL(url)
    policy = NetworkPolicy(allowed_networks=parse_networks(settings.LAYERLENS_ALLOWED_NETWORKS))
    why = policy.host_refusal(parsed.host, parsed.port, timeout=RESOLVE_TIMEOUT_SECONDS)
    if why is not None:
        raise InvalidRequest(f"{field}: the scanner would refuse {why}; {ALLOW_INTERNAL_HINT}")


def schedule_check(
    *, tracked: bool, interval: timedelta | None, what: str = "registry or repository"
) -> None:
    """A tracked target needs an interval, and not one so short it floods what it scans; no target has
    one longer than a year."""
    if interval is not None and interval > MAX_SCAN_INTERVAL:
        raise InvalidRequest(
            f"scan_interval is at most {int(MAX_SCAN_INTERVAL.total_seconds())} seconds "
            f"({MAX_SCAN_INTERVAL.days} days)"
        )
    if tracked and (interval is None or interval < MIN_SCAN_INTERVAL):
        raise InvalidRequest(
            f"a tracked {what} needs a scan interval of at least "
            f"{int(MIN_SCAN_INTERVAL.total_seconds())} seconds"
        )


def events_secret_check(secret: str) -> None:
    """A secret a registry can send as a bearer token (an `InvalidRequest` otherwise, never repeating
    it); the empty string, which clears the secret, passes."""
    if secret == "":
        return
    if not (
        EVENTS_SECRET_MIN_CHARS <= len(secret) <= EVENTS_SECRET_MAX_CHARS and _EVENTS_SECRET.fullmatch(secret)
    ):
        raise InvalidRequest(f"events_secret: {EVENTS_SECRET_RULE}")


def events_secret_generate() -> str:
    """A new events secret: 32 random bytes, URL-safe base64 (43 characters, within the rule above)."""
    return secrets.token_urlsafe(32)


def _limits_check(max_concurrency: int | None, max_requests_per_second: float | None) -> None:
    if max_concurrency is not None and not 1 <= max_concurrency <= REGISTRY_MAX_CONCURRENCY:
        raise InvalidRequest(f"max_concurrency is between 1 and {REGISTRY_MAX_CONCURRENCY}")
    if max_requests_per_second is not None and not 0.1 <= max_requests_per_second <= REGISTRY_MAX_RATE:
        raise InvalidRequest(f"max_requests_per_second is between 0.1 and {REGISTRY_MAX_RATE:,.0f}")


def _schedule_apply(
    target: Registry | Repository,
    *,
    tracked: bool | None,
    interval: timedelta | None | Keep,
    next_scan_at: datetime | None | Keep,
) -> None:
    """Set tracking on `target` (unsaved). A schedule that changes starts now; `next_scan_at` overrides."""
    new_tracked = target.tracked if tracked is None else tracked
    new_interval = target.scan_interval if interval is KEEP else interval
    if tracked is not None or interval is not KEEP:
        schedule_check(tracked=new_tracked, interval=new_interval)
        if (new_tracked, new_interval) != (target.tracked, target.scan_interval) or target.pk is None:
            target.next_scan_at = timezone.now() if new_tracked else None
        target.tracked, target.scan_interval = new_tracked, new_interval
    if next_scan_at is not KEEP:
        target.next_scan_at = next_scan_at if target.tracked else None


def registry_update(
    *,
    registry: Registry,
    url: str | None = None,
    name: str | None = None,
    username: str | None = None,
    password: str | None = None,
    docker_config: str | None = None,
    insecure: bool | None = None,
    ca_bundle: str | None = None,
    allow_internal: bool | None = None,
    tracked: bool | None = None,
    scan_interval: timedelta | None | Keep = KEEP,
    next_scan_at: datetime | None | Keep = KEEP,
    max_concurrency: int | None | Keep = KEEP,
    max_requests_per_second: float | None | Keep = KEEP,
    events_secret: str | None = None,
    check_reachable: bool = False,
) -> Registry:
    """Change a registry (saved, or new and unsaved); arguments left out keep their value.

    With `check_reachable` (a request from outside: the API, a command), a new registry, a new URL or
    `allow_internal` turned off is refused when the SSRF policy would refuse the address
    (`registry_reachable_check`), and nothing is saved.

    A new `password` replaces the secret and is a password, never an identity token (an empty string
    clears it); `docker_config` (a Docker `config.json`'s text) replaces the credentials with its entry
    for this registry. `allow_internal` is the operator's decision to let the registry live on a
    loopback, private or link-local address: callers check who may make it (staff, a command).
    A new `events_secret` makes the registry followed by events (an empty string clears it: not followed).
    Tracking needs an interval of at least a minute; a changed schedule is due at once.
    """
    url_before, allowed_before = registry.url, registry.allow_internal
    text_check("password", password, MAX_SECRET_CHARS)
    text_check("docker_config", docker_config, MAX_DOCKER_CONFIG_CHARS)
    text_check("ca_bundle", ca_bundle, MAX_PEM_CHARS)
    if events_secret is not None:
        events_secret_check(events_secret)
    if url is not None:
        base = registry_url_normalise(url)
        taken = Registry.objects.filter(url=base).exclude(pk=registry.pk).first()
        if taken is not None:
            raise Conflict(f"a registry with base URL {base} exists already ({taken.name})")
        registry.url = base
    if name is not None or registry.pk is None:
        wanted = registry.name if name is None else name
        taken = Registry.objects.filter(name=wanted).exclude(pk=registry.pk).first()
        if taken is not None:
            raise Conflict(f"the name {wanted!r} belongs to the registry at {taken.url}; choose another name")
        registry.name = wanted
    if docker_config is not None:
        found = registry_credentials_from_docker_config(config_text=docker_config, registry_url=registry.url)
        registry.username = found.username or ""
        registry.set_password(found.secret)
        registry.identity_token = found.identity_token
    else:
        if username is not None:
            registry.username = username
        if password is not None:
            registry.set_password(password)
            registry.identity_token = False
    if events_secret is not None:
        registry.set_events_secret(events_secret)
    if insecure is not None:
        registry.insecure = insecure
    if ca_bundle is not None:
        registry.ca_bundle = ca_bundle
    if allow_internal is not None:
        registry.allow_internal = allow_internal
    if max_concurrency is not KEEP:
        registry.max_concurrency = max_concurrency
    if max_requests_per_second is not KEEP:
        registry.max_requests_per_second = max_requests_per_second
    _limits_check(registry.max_concurrency, registry.max_requests_per_second)
    _schedule_apply(registry, tracked=tracked, interval=scan_interval, next_scan_at=next_scan_at)
    _columns_check(registry, ("url", "name", "username"))
    if check_reachable and (
        registry.pk is None or registry.url != url_before or (allowed_before and not registry.allow_internal)
    ):
        registry_reachable_check(url=registry.url, allow_internal=registry.allow_internal)
    registry.save()
    return registry


def registry_upsert(*, url: str, **changes: object) -> Registry:
    """The registry with this base URL, created when new (named host:port unless `name`), then changed
    as `registry_update` does. Idempotent: the same call twice leaves one row, as it was."""
    base = registry_url_normalise(url)
    with transaction.atomic():
        registry = Registry.objects.select_for_update().filter(url=base).first() or Registry(
            url=base, name=base.split("://", 1)[1]
        )
        return registry_update(registry=registry, **changes)  # type: ignore[arg-type]


def registry_create(*, url: str, **changes: object) -> Registry:
    """A new registry; one with the same base URL already existing is a conflict."""
    base = registry_url_normalise(url)
    if Registry.objects.filter(url=base).exists():
        raise Conflict(f"a registry with base URL {base} exists already")
    return registry_upsert(url=base, **changes)


def registry_schedule(*, registry: Registry, tracked: bool, interval: timedelta | None) -> Registry:
    """Track a registry (scanned every `interval` by the beat task) or stop tracking it."""
    return registry_update(registry=registry, tracked=tracked, scan_interval=interval)


def repository_schedule(
    *,
    repository: Repository,
    tracked: bool | None = None,
    interval: timedelta | None | Keep = KEEP,
    next_scan_at: datetime | None | Keep = KEEP,
) -> Repository:
    """Track a repository (scanned every `interval` by the beat task) or stop tracking it."""
    _schedule_apply(repository, tracked=tracked, interval=interval, next_scan_at=next_scan_at)
    repository.save(update_fields=["tracked", "scan_interval", "next_scan_at"])
    return repository


def repositories_ensure(*, registry_id: int, names: list[str] | set[str]) -> dict[str, int]:
    """The ids of the registry's repositories `names`, recording those seen for the first time (a
    registry's catalog or its events said they exist); safe beside a concurrent writer of the same names."""
    ordered = sorted(set(names))  # one insert order for every writer
    Repository.objects.bulk_create(
        [Repository(registry_id=registry_id, name=n) for n in ordered], ignore_conflicts=True
    )
    return dict(
        Repository.objects.filter(registry_id=registry_id, name__in=ordered).values_list("name", "id")
    )


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
    try:
        doc = jsontext.loads(config_text)
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
