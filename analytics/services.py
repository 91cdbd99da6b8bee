"""Write-side services: registries, scans and the scan state machine.

Services raise the domain exceptions below; one DRF exception handler maps them to HTTP replies and
the management commands print them. Tasks call `scan_registry_run` / `scan_repository_run` and nothing else.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import os
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, connections, transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from analytics.ingest import snapshot_ingest
from analytics.known import configs_known, manifests_known, tags_current
from analytics.models import Registry, Repository, Scan, ScanError
from analytics.queries.trends import scan_figures_record
from analytics.scan_runtime import Heartbeat, Progress, lease_deadline, metrics_sink, registry_gate
from config.logs import log_context
from workers import telemetry
from workers.registry.client import RegistryClient
from workers.registry.errors import RegistryError
from workers.registry.records import RepositorySnapshot
from workers.registry.reference import parse_scan_target

logger = logging.getLogger(__name__)


class LayerlensError(Exception):
    """Base of the domain errors; `status` is the HTTP status the API answers with."""

    status = 400


class InvalidRequest(LayerlensError):
    status = 400


class NotFound(LayerlensError):
    status = 404


class Conflict(LayerlensError):
    status = 409


class RepositoryBusy(LayerlensError):
    """Another worker holds the repository's scan lease; try again later."""

    status = 409


# --- registries -------------------------------------------------------------------------------------


def _normalise_url(url: str) -> str:
    target = parse_scan_target(url)
    if target.repository:
        raise InvalidRequest(
            f"{url!r} names a repository; a registry is its base URL, e.g. http://127.0.0.1:5000"
        )
    return target.registry_url.rstrip("/")


def registry_lookup(identifier: str) -> Registry:
    """A registry by id, name, base URL or host:port."""
    ident = identifier.strip().rstrip("/")
    qs = Registry.objects.all()
    if ident.isdigit():
        found = qs.filter(id=int(ident)).first()
    else:
        found = qs.filter(Q(name=ident) | Q(url=ident)).first()
        if found is None:
            host = ident.split("://", 1)[-1]
            found = qs.filter(Q(url=f"http://{host}") | Q(url=f"https://{host}")).first()
    if found is None:
        raise NotFound(f"no registry {identifier!r}")
    return found


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


def registry_client(registry: Registry) -> RegistryClient:
    """The registry client for `registry`, with its credentials, TLS options and network policy.

    Internal addresses are allowed when the registry is marked `allow_internal` or the address is in
    `LAYERLENS_ALLOWED_NETWORKS`; the client enforces that on every connection.
    """
    verify: bool | ssl.SSLContext = not registry.insecure
    if registry.ca_bundle and not registry.insecure:
        verify = ssl.create_default_context(cadata=registry.ca_bundle)
    secret = registry.get_password()
    return RegistryClient(
        registry.url,
        username=(registry.username or None) if not registry.identity_token else None,
        password=secret if not registry.identity_token else None,
        identity_token=secret if registry.identity_token else None,
        verify=verify,
        timeout=settings.REGISTRY_TIMEOUT_SECONDS,
        page_size=settings.REGISTRY_PAGE_SIZE,
        allow_internal=registry.allow_internal,
        allowed_networks=settings.LAYERLENS_ALLOWED_NETWORKS,
        allow_plain_http=registry.insecure,
        total_timeout=settings.REGISTRY_TOTAL_TIMEOUT_SECONDS,
        retries=settings.REGISTRY_RETRIES,
        retry_base_delay=settings.REGISTRY_RETRY_BASE_SECONDS,
        max_concurrency=settings.REGISTRY_SCAN_CONCURRENCY,
        gate=registry_gate(registry),
        observer=functools.partial(metrics_sink().request, registry=registry.name),
    )


_SHARED_CLIENTS: OrderedDict[tuple[object, ...], RegistryClient] = OrderedDict()
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 32


@contextlib.contextmanager
def registry_client_shared(registry: Registry) -> Iterator[RegistryClient]:
    """This process's client for `registry`, kept open across scans (kept-alive connections, cached
    tokens and configs); a new one when the registry's connection settings change.

    Keyed on the process id too: a client never crosses a fork (Celery's prefork pool). Evicted and
    replaced clients are closed; the rest at interpreter exit (`registry_clients_close`).
    """
    key = (
        os.getpid(),
        registry.id,
        registry.url,
        registry.username,
        registry.password_encrypted,
        registry.identity_token,
        registry.insecure,
        registry.ca_bundle,
        registry.allow_internal,
        registry.max_concurrency,  # the politeness gate is built with the client
        registry.max_requests_per_second,
        registry_client,  # a test that swaps the factory gets its own clients
    )
    with _SHARED_LOCK:
        client = _SHARED_CLIENTS.get(key)
        for k in [k for k in _SHARED_CLIENTS if k[0] != key[0]]:
            del _SHARED_CLIENTS[k]  # the parent process's: its sockets are the parent's to close
        for k in [k for k in _SHARED_CLIENTS if k[1] == registry.id and k != key]:
            _SHARED_CLIENTS.pop(k).close()
        if client is None or client.closed:
            client = _SHARED_CLIENTS[key] = registry_client(registry)
        _SHARED_CLIENTS.move_to_end(key)
        while len(_SHARED_CLIENTS) > _SHARED_MAX:
            _SHARED_CLIENTS.popitem(last=False)[1].close()
    yield client


@atexit.register
def registry_clients_close() -> None:
    """Close every shared client of this process (connection pools and scan threads)."""
    with _SHARED_LOCK:
        while _SHARED_CLIENTS:
            _SHARED_CLIENTS.popitem()[1].close()


# --- scans: creation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanRequest:
    registry: Registry
    repository: Repository | None
    tag: str


def scan_request_resolve(
    *,
    target: str,
    username: str | None = None,
    password: str | None = None,
    allow_internal: bool | None = None,
) -> ScanRequest:
    """Turn `http://host:port`, `host:port/repo` or `host:port/repo:tag` into rows, creating what is new.

    Credentials and `allow_internal` given here are saved on the registry (never in task arguments).
    """
    try:
        parsed = parse_scan_target(target)
    except RegistryError as exc:
        raise InvalidRequest(str(exc)) from exc
    registry = Registry.objects.filter(url=parsed.registry_url.rstrip("/")).first()
    if registry is None or username is not None or password is not None or allow_internal is not None:
        registry = registry_upsert(
            url=parsed.registry_url, username=username, password=password, allow_internal=allow_internal
        )
    repository = None
    if parsed.repository:
        repository, _ = Repository.objects.get_or_create(registry=registry, name=parsed.repository)
    return ScanRequest(registry=registry, repository=repository, tag=parsed.tag or parsed.digest or "")


def scan_create(
    *,
    registry: Registry,
    repository: Repository | None = None,
    tag: str = "",
    trigger: str = "manual",
    parent: Scan | None = None,
    deep_budget_bytes: int | None = None,
) -> Scan:
    """A queued scan; with `deep_budget_bytes`, each repository scan then streams its unmeasured layers
    (`analytics.deep_scan`) within that many compressed bytes."""
    kind = Scan.Kind.TAG if tag else Scan.Kind.REPOSITORY if repository else Scan.Kind.REGISTRY
    return Scan.objects.create(
        kind=kind,
        registry=registry,
        repository=repository,
        tag=tag,
        trigger=trigger,
        parent=parent,
        deep_budget_bytes=deep_budget_bytes,
    )


def scan_enqueue(scan: Scan) -> None:
    """Send the scan to the workers once the surrounding transaction commits."""
    from config.celery import app

    task = (
        "workers.tasks.scan_registry" if scan.kind == Scan.Kind.REGISTRY else "workers.tasks.scan_repository"
    )
    Scan.objects.filter(id=scan.id).update(enqueued_at=timezone.now())
    transaction.on_commit(lambda: app.send_task(task, args=[scan.id]))


def scan_start(
    *,
    target: str,
    trigger: str = "manual",
    username: str | None = None,
    password: str | None = None,
    deep_budget_bytes: int | None = None,
    allow_internal: bool | None = None,
    enqueue: bool = True,
) -> Scan:
    """Resolve `target` (creating its rows), create its scan and, unless `enqueue` is False (the caller
    runs it in process: `scan_run_inline`), send it to the workers once the transaction commits."""
    with transaction.atomic():
        request = scan_request_resolve(
            target=target, username=username, password=password, allow_internal=allow_internal
        )
        scan = scan_create(
            registry=request.registry,
            repository=request.repository,
            tag=request.tag,
            trigger=trigger,
            deep_budget_bytes=deep_budget_bytes,
        )
        if enqueue:
            scan_enqueue(scan)
    return scan


# --- scans: running -----------------------------------------------------------------------------------


def _claim(scan_id: int, *, orphaned_ok: bool = False) -> Scan | None:
    """Move a queued scan to running, under a lease; None if another worker has it (or it is finished).

    A scan left running is taken over when its lease has expired (its worker stopped beating), or,
    with `orphaned_ok`, whatever its lease says: the caller holds the repository's lease, so whoever
    was running it is gone. A take-over counts in `takeovers`; past `SCAN_MAX_ATTEMPTS` the scan is
    failed with the reason instead of being run again (a repository that kills its workers).
    """
    now = timezone.now()
    orphaned = Q(status=Scan.Status.RUNNING)
    if not orphaned_ok:
        orphaned &= Q(lease_until__lt=now)
    with transaction.atomic():
        scan = (
            Scan.objects.select_for_update(of=("self",))
            .filter(Q(status=Scan.Status.QUEUED) | orphaned, id=scan_id)
            .select_related("registry", "repository")
            .first()
        )
        if scan is None:
            return None
        if scan.status == Scan.Status.RUNNING:
            scan.takeovers += 1
            logger.warning("taking over scan %s left running by a stopped worker", scan.id)
        scan.status, scan.started_at, scan.lease_until = Scan.Status.RUNNING, now, lease_deadline()
        scan.save(update_fields=["status", "started_at", "lease_until", "takeovers"])
    if scan.takeovers >= settings.SCAN_MAX_ATTEMPTS:
        _give_up(scan.id, scan.takeovers)
        return None
    return scan


def _give_up(scan_id: int, takeovers: int) -> None:
    Scan.objects.filter(id=scan_id).update(takeovers=takeovers)
    scan_fail(
        scan_id=scan_id,
        kind="WorkerLost",
        message=f"gave up: the workers running this scan stopped {takeovers} times "
        "(killed, out of memory or past the time limit); it runs again at the next schedule",
    )


def _finish(
    scan: Scan,
    status: str,
    message: str = "",
    *,
    errors: int | None = None,
    fields: dict[str, object] | None = None,
    tags: tuple[int, int] = (0, 0),
) -> None:
    """Finish `scan` (conditionally: a scan finished twice, by a slow worker whose lease was taken,
    counts once) with `fields` in the same UPDATE, and count it done on its parent, adding `tags`
    (total, done) to the parent's progress. `errors` is the scan's error rows when the caller knows."""
    if errors is None:
        errors = scan.errors.count()
    if status == Scan.Status.SUCCEEDED and errors:
        status = Scan.Status.PARTIAL
    finished = Scan.objects.filter(id=scan.id, status__in=[Scan.Status.QUEUED, Scan.Status.RUNNING]).update(
        status=status,
        finished_at=timezone.now(),
        message=message[:4000],
        errors_count=errors,
        lease_until=None,
        **(fields or {}),
    )
    if not finished:
        return
    _scan_finished_observe(scan, status, message, errors=errors)
    if scan.parent_id:
        _parent_child_done(scan.parent_id, tags=tags)


def _parent_child_done(parent_id: int, *, tags: tuple[int, int] = (0, 0)) -> None:
    """One child more done: an atomic counter (no lock on the parent for each child); only the child
    that brings `repositories_done` to the total goes on to finish the parent."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Scan._meta.db_table} SET repositories_done = repositories_done + 1,"
            " tags_total = tags_total + %s, tags_done = tags_done + %s"
            " WHERE id = %s RETURNING repositories_done, repositories_total",
            [tags[0], tags[1], parent_id],
        )
        row = cursor.fetchone()
    if row is not None and row[0] >= row[1]:
        _parent_finish_if_done(parent_id)


def _scan_finished_observe(scan: Scan, status: str, message: str, *, errors: int | None = None) -> None:
    registry = scan.registry.name
    sink = metrics_sink()
    sink.add(telemetry.SCANS_FINISHED, {"registry": registry, "kind": scan.kind, "status": status})
    if errors != 0:
        for kind, n in scan.errors.values_list("kind").annotate(n=Count("id")).order_by():
            sink.add(telemetry.SCAN_ERRORS, {"registry": registry, "kind": kind}, n)
    sink.flush()
    level = logging.WARNING if status == Scan.Status.FAILED else logging.INFO
    logger.log(
        level,
        "scan %s %s%s",
        scan.id,
        status,
        f": {message}" if message else "",
        extra={"event": "scan_finished", "status": status, "kind": scan.kind},
    )


def _parent_finish_if_done(parent_id: int) -> None:
    with transaction.atomic():
        parent = Scan.objects.select_for_update().get(id=parent_id)
        if parent.is_finished or parent.repositories_done < parent.repositories_total:
            return
        children = parent.children.all()
        totals = children.aggregate(
            tags=Sum("tags_count"),
            images=Sum("images_count"),
            new=Sum("new_manifests_count"),
            errors=Sum("errors_count"),
            failed=Count("id", filter=Q(status=Scan.Status.FAILED)),
        )
        errors = (totals["errors"] or 0) + parent.errors.count()
        status = Scan.Status.PARTIAL if (errors or totals["failed"]) else Scan.Status.SUCCEEDED
        Scan.objects.filter(id=parent_id).update(
            status=status,
            finished_at=timezone.now(),
            tags_count=totals["tags"] or 0,
            images_count=totals["images"] or 0,
            new_manifests_count=totals["new"] or 0,
            errors_count=errors,
            lease_until=None,
        )
        _scan_finished_observe(parent, status, "")
        Registry.objects.filter(id=parent.registry_id).update(last_scanned_at=timezone.now())
        scan_figures_record(scan_id=parent_id)  # the registry's trend point


def scan_fail(*, scan_id: int, message: str, kind: str = "ScanFailed") -> None:
    """Record a scan as failed, whatever state it was in; used when retries are exhausted."""
    scan = Scan.objects.get(id=scan_id)
    if scan.is_finished:
        return
    ScanError.objects.create(
        scan=scan, repository=scan.repository.name if scan.repository else "", kind=kind, message=message
    )
    _finish(scan, Scan.Status.FAILED, message)


def _catalog_fallback(scan: Scan, exc: RegistryError) -> list[str] | None:
    """The repositories already known for a registry that will not list its catalog, or None.

    Docker Hub, GitLab and Harbor (for non-admins) answer `_catalog` with 401, 403, 404 or
    UNSUPPORTED (distribution-spec: the catalog is an optional extension). Their repositories are the
    ones users named; the scan says the listing came from there (a `CatalogUnavailable` error row).
    """
    status, code = getattr(exc, "status", None), getattr(exc, "code", None)
    if status not in (401, 403, 404) and code != "UNSUPPORTED":
        return None
    known = list(Repository.objects.filter(registry=scan.registry).values_list("name", flat=True))
    if not known:
        return None
    ScanError.objects.create(
        scan=scan,
        kind="CatalogUnavailable",
        message=f"the registry does not list its catalog ({exc}); scanned the {len(known)} "
        "repositories already known for it",
    )
    return known


def scan_registry_run(*, scan_id: int, on_children: Callable[[list[int]], None] | None = None) -> list[int]:
    """1. Claim the scan. 2. List every repository, streamed. 3. Create a child scan per repository.

    Children are created `CHILD_BATCH` repositories at a time while the catalog pages come in, and
    each batch's ids go to `on_children` (the task enqueues them), so no whole-registry list is held;
    without `on_children` the ids are returned. The caller runs the children. A registry that cannot
    be listed fails the scan with the registry's own words. A scan taken over (or retried) before its
    listing completed lists again and creates only the children still missing; one taken over after
    it completed returns the unfinished children instead. Once listed the scan holds no lease: it
    finishes with its last child.
    """
    scan = _claim(scan_id)
    if scan is None:
        return []
    with log_context(scan_id=scan.id, registry_id=scan.registry_id):
        created = scan.children.count()
        if created and scan.repositories_total == created:  # listed completely before
            existing = list(scan.children.exclude(status__in=_FINISHED).values_list("id", flat=True))
            Scan.objects.filter(id=scan.id).update(lease_until=None)
            if not existing:
                _parent_finish_if_done(scan.id)
            if on_children is not None and existing:
                on_children(existing)
                return []
            return existing
        return _scan_registry_list(scan, on_children=on_children, created=created)


_FINISHED = [Scan.Status.SUCCEEDED, Scan.Status.PARTIAL, Scan.Status.FAILED]
CHILD_BATCH = 500


def _children_create(scan: Scan, names: list[str]) -> list[int]:
    """Child scans for the repositories `names` that have none under `scan` yet, in one transaction;
    `repositories_total` grows by as many."""
    if not names:
        return []
    with transaction.atomic():
        Repository.objects.bulk_create(
            [Repository(registry=scan.registry, name=n) for n in sorted(set(names))], ignore_conflicts=True
        )
        have = set(scan.children.filter(repository__name__in=names).values_list("repository_id", flat=True))
        repos = [
            r
            for r in Repository.objects.filter(registry=scan.registry, name__in=names).order_by("name")
            if r.id not in have
        ]
        sent = timezone.now()
        children = Scan.objects.bulk_create(
            [
                Scan(
                    kind=Scan.Kind.REPOSITORY,
                    registry=scan.registry,
                    repository=r,
                    deep_budget_bytes=scan.deep_budget_bytes,
                    parent=scan,
                    trigger=scan.trigger,
                    enqueued_at=sent,
                )
                for r in repos
            ]
        )
        Scan.objects.filter(id=scan.id).update(repositories_total=F("repositories_total") + len(children))
    return [c.id for c in children]


def _scan_registry_list(
    scan: Scan, *, on_children: Callable[[list[int]], None] | None, created: int
) -> list[int]:
    # While listing, the total counts one more than the children created, so no child finishing
    # early can finish the parent (and a take-over can tell an unfinished listing); the end removes it.
    Scan.objects.filter(id=scan.id).update(repositories_total=created + 1)
    kept: list[int] = []
    listed = 0

    def flush(batch: list[str]) -> None:
        nonlocal listed
        listed += len(batch)
        ids = _children_create(scan, batch)
        if on_children is None:
            kept.extend(ids)
        elif ids:
            on_children(ids)

    try:
        with Heartbeat(scan_id=scan.id), registry_client_shared(scan.registry) as client:
            batch: list[str] = []
            for name in client.iter_repositories():
                batch.append(name)
                if len(batch) >= CHILD_BATCH:
                    flush(batch)
                    batch = []
            flush(batch)
    except RegistryError as exc:
        if getattr(exc, "transient", False):
            Scan.objects.filter(id=scan.id).update(
                status=Scan.Status.QUEUED, lease_until=None, enqueued_at=timezone.now()
            )
            logger.info("listing the registry failed (%s); retrying later", exc)
            raise
        known = _catalog_fallback(scan, exc)
        if known is None:
            ScanError.objects.create(scan=scan, kind=type(exc).__name__, message=str(exc))
            _finish(scan, Scan.Status.FAILED, str(exc))
            return kept
        for i in range(0, len(known), CHILD_BATCH):
            flush(known[i : i + CHILD_BATCH])
    Scan.objects.filter(id=scan.id).update(repositories_total=F("repositories_total") - 1, lease_until=None)
    logger.info("registry listed: %d repositories", listed, extra={"event": "registry_listed"})
    _parent_finish_if_done(scan.id)
    return kept


def _lease_acquire(repository: Repository, scan_id: int) -> bool:
    now = timezone.now()
    return bool(
        Repository.objects.filter(id=repository.id)
        .filter(Q(scan_lease_until__isnull=True) | Q(scan_lease_until__lt=now))
        .update(scan_lease_until=lease_deadline())
    )


def _lease_release(repository: Repository) -> None:
    Repository.objects.filter(id=repository.id).update(scan_lease_until=None)


def scan_repository_run(*, scan_id: int) -> Scan:
    """Scan one repository (or one tag of it): source, then ingest.

    1. Take the repository's lease, so no two workers scan it at once (RepositoryBusy otherwise;
       the scan stays as it is for a retry). A scan found running under an expired lease was left by
       a dead worker (acks_late redelivers its task): it is taken over and run again from the start.
    2. Read the repository from the registry, outside any transaction.
    3. Ingest the snapshot in one transaction; record counts and per-image failures on the scan.
    A permanent registry error fails this scan only; a transient one is re-raised for a retry.
    While it runs, a heartbeat renews both leases and progress (tags) is written about once a second.
    """
    run = _RepositoryRun.begin(scan_id)
    if run.done:
        return run.result()
    with run:
        run.end(run.read())
        run.deep()
    return run.result()


def scan_repositories_run(
    *, scan_ids: list[int], retry: Callable[[int, Exception], None], read_ahead: int | None = None
) -> None:
    """Scan a batch of repositories in this process, as `scan_repository_run` each, with up to
    `read_ahead` (`SCAN_READ_AHEAD`) of them being read at once by reader threads while this thread
    ingests the ones already read, in order. The registry sees no more than the client's own bound
    (`REGISTRY_SCAN_CONCURRENCY` requests in flight per process), however many repositories are read.

    A scan that cannot run now (`RepositoryBusy`, a transient registry error) goes to `retry(id, exc)`
    (the task sends it again on its own); the others are not held up by it.
    """
    read_ahead = max(1, read_ahead or settings.SCAN_READ_AHEAD)
    pending: list[tuple[_RepositoryRun, Future]] = []
    ids = iter(scan_ids)

    def settle(run: _RepositoryRun, future: Future) -> None:
        with run:
            try:
                run.end(future.result())
                run.deep()
            except (RepositoryBusy, RegistryError) as exc:
                if not isinstance(exc, RepositoryBusy) and not getattr(exc, "transient", False):
                    raise
                retry(run.scan_id, exc)

    readers = _readers(read_ahead)
    try:
        while True:
            while len(pending) < read_ahead:
                scan_id = next(ids, None)
                if scan_id is None:
                    break
                try:
                    run = _RepositoryRun.begin(scan_id)
                except RepositoryBusy as exc:
                    retry(scan_id, exc)
                    continue
                if not run.done:
                    pending.append((run, readers.submit(run.read_in_thread)))
            if not pending:
                break
            settle(*pending.pop(0))
    finally:
        # Stopped by an unexpected error: the scans begun stop beating and free their repositories;
        # left running, their leases expire and the sweeper sends them again.
        for run, future in pending:
            future.cancel()
            run.__exit__(None, None, None)


_READERS: dict[int, ThreadPoolExecutor] = {}


def _readers(size: int) -> ThreadPoolExecutor:
    """This process's reader threads, kept across tasks (their database connections with them)."""
    key = os.getpid()
    with _SHARED_LOCK:
        pool = _READERS.get(key)
        if pool is None or pool._max_workers != size:
            _READERS.clear()  # a parent process's, or another size: never used again here
            pool = _READERS[key] = ThreadPoolExecutor(size, thread_name_prefix="scan-read")
        return pool


def scan_readers_close() -> None:
    """Close this process's reader threads and their database connections (worker shutdown, tests)."""
    with _SHARED_LOCK:
        pool = _READERS.pop(os.getpid(), None)
        _READERS.clear()
    if pool is None:
        return
    size = pool._max_workers
    barrier = threading.Barrier(size)

    def close() -> None:
        connections.close_all()  # this thread's
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)  # so that each thread takes one of these

    for _ in range(size):
        pool.submit(close)
    pool.shutdown(wait=True)


def _image_bytes(snapshot) -> int:
    """Declared bytes (manifest, config, layers) of the images a snapshot read, for the metrics."""
    total = 0
    for record in snapshot.manifests:
        if getattr(record, "kind", None) == "image":
            config = record.config.size if record.config is not None else 0
            total += record.size + config + sum(layer.size for layer in record.layers)
    return total


def _commit_async() -> None:
    """This transaction's commit does not wait for its WAL flush (PostgreSQL `synchronous_commit`).

    Scan bookkeeping and ingest are re-derivable from the registry: a database crash can lose the last
    few hundred milliseconds of them (never tear them: transactions stay atomic and ordered), and the
    lost scan is then left running under an expiring lease, which the sweeper sends again. Waiting for
    a disk flush per repository was most of a repository's fixed cost.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


class _RepositoryRun:
    """One repository scan in three phases: `begin` (lease and claim, in this thread), `read` (the
    registry; any thread) and `end` (ingest and finish, in the thread that began it). Used as a
    context manager around `read`/`end`: the heartbeat and log context, and the lease released
    whatever happens."""

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self.scan_id = scan.id
        self.done = True  # nothing to run (finished, or another worker's)
        self.held = False  # the repository lease is ours and committed
        self.heartbeat = Heartbeat(scan_id=scan.id, repository_id=scan.repository_id)
        self.previous: dict[str, str] | None = None
        self.progress: Progress | None = None
        self._stack = contextlib.ExitStack()

    @classmethod
    def begin(cls, scan_id: int) -> _RepositoryRun:
        scan = Scan.objects.select_related("registry", "repository").get(id=scan_id)
        run = cls(scan)
        if scan.is_finished or scan.repository is None:
            return run
        repository = scan.repository
        ids = {"scan_id": scan.id, "registry_id": scan.registry_id, "repository_id": scan.repository_id}
        with log_context(**ids):
            ran_before = scan.started_at is not None
            # The repository's lease and the scan's claim commit together (one commit per scan start).
            with transaction.atomic():
                _commit_async()
                if not _lease_acquire(repository, scan_id):
                    raise RepositoryBusy(f"{repository} is being scanned by another worker")
                claimed = _claim(scan_id, orphaned_ok=True)
                # A redelivered or retried scan starts over; its rows are rewritten idempotently.
                if claimed is not None and (ran_before or claimed.takeovers):
                    claimed.errors.all().delete()
            run.held = True
            if claimed is None:
                _lease_release(repository)
                run.held = False
                return run
            run.scan, run.done = claimed, False
            try:
                run.heartbeat.start()
                run.progress = Progress.restart(claimed)
                logger.info(
                    "scan %s started",
                    claimed.id,
                    extra={"event": "scan_started", "takeovers": claimed.takeovers},
                )
                # A repository scanned before is rescanned incrementally: a HEAD per tag, compared
                # with the tags recorded then; only what changed is read. A one-tag scan reads its tag.
                if repository.last_scanned_at is not None and not claimed.tag:
                    run.previous = tags_current(repository_id=repository.id)
            except BaseException:
                run.__exit__(None, None, None)
                raise
        return run

    def __enter__(self) -> _RepositoryRun:
        scan = self.scan
        self._stack.enter_context(
            log_context(scan_id=scan.id, registry_id=scan.registry_id, repository_id=scan.repository_id)
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._stack.close()
        finally:
            self.heartbeat.__exit__(*exc_info)
            if self.held:
                assert self.scan.repository is not None
                _lease_release(self.scan.repository)
                self.held = False

    def read(self) -> RepositorySnapshot | RegistryError:
        """The repository's snapshot, or the registry error that stopped it (returned, not raised)."""
        scan, repository = self.scan, self.scan.repository
        assert repository is not None
        try:
            with registry_client_shared(scan.registry) as client:
                return client.snapshot_repository(
                    repository.name,
                    tags=[scan.tag] if scan.tag else None,
                    previous=self.previous,
                    known_manifests=manifests_known,
                    known_configs=configs_known,
                    progress=self.progress,
                )
        except RegistryError as exc:
            return exc

    def read_in_thread(self) -> RepositorySnapshot | RegistryError:
        """`read` from a reader thread: the digest look-ups use that thread's own connection, which
        outlives the read only as long as it is usable (closed here otherwise)."""
        close_old_connections()
        try:
            return self.read()
        finally:
            close_old_connections()

    def end(self, snapshot: RepositorySnapshot | RegistryError) -> None:
        scan, repository = self.scan, self.scan.repository
        assert repository is not None and self.progress is not None
        if isinstance(snapshot, RegistryError):
            exc = snapshot
            if getattr(exc, "transient", False):
                # Back to queued so the retry can claim it again.
                Scan.objects.filter(id=scan.id).update(
                    status=Scan.Status.QUEUED, lease_until=None, enqueued_at=timezone.now()
                )
                logger.info("reading the repository failed (%s); retrying later", exc)
                raise exc
            ScanError.objects.create(
                scan=scan, repository=repository.name, kind=type(exc).__name__, message=str(exc)
            )
            _finish(scan, Scan.Status.FAILED, str(exc))
            return
        # Ingest, the scan's counts and progress, its parent's counter and the lease: one transaction.
        with transaction.atomic():
            _commit_async()
            result = snapshot_ingest(
                repository=repository, snapshot=snapshot, scan=scan, complete=not scan.tag
            )
            labels = {"registry": scan.registry.name}
            metrics_sink().add(telemetry.IMAGES_SCANNED, labels, result.images)
            metrics_sink().add(telemetry.BYTES_SCANNED, labels, _image_bytes(snapshot))
            if self.previous is None or result.tag_events or result.new_manifests:
                scan_figures_record(scan_id=scan.id)  # chain ids of new manifests, then trend points
            total, done, d_total, d_done = self.progress.take()
            _finish(
                scan,
                Scan.Status.SUCCEEDED,
                errors=result.failures,  # the only error rows: earlier runs' were deleted at the claim
                fields={
                    "repositories_total": 1,
                    "repositories_done": 1,
                    "tags_count": result.tags,
                    "images_count": result.images,
                    "new_manifests_count": result.new_manifests,
                    "tags_total": total,
                    "tags_done": done,
                },
                tags=(d_total, d_done),
            )
            _lease_release(repository)
        self.held = False

    def deep(self) -> None:
        """The deep scan (layers streamed within a byte budget) the scan asked for, once it is done."""
        if self.scan.deep_budget_bytes is not None:
            from analytics.deep_scan import scan_deep_record

            scan_deep_record(scan_id=self.scan_id)

    def result(self) -> Scan:
        return Scan.objects.get(id=self.scan_id)


def scan_start_inline(*, target: str, trigger: str = "manual", **credentials: object) -> Scan:
    """Resolve `target`, create its scan and run it in this process (tests, benchmarks, tools)."""
    scan = scan_start(target=target, trigger=trigger, enqueue=False, **credentials)
    return scan_run_inline(scan_id=scan.id)


def scan_run_inline(*, scan_id: int) -> Scan:
    """Run a scan and its children in this process (for `manage.py scan --inline` and tests)."""
    scan = Scan.objects.get(id=scan_id)
    # No retries in-process: a transient error fails the scan (or child scan) at once.
    try:
        child_ids = scan_registry_run(scan_id=scan_id) if scan.kind == Scan.Kind.REGISTRY else [scan_id]
    except (RegistryError, RepositoryBusy) as exc:
        scan_fail(scan_id=scan_id, message=str(exc), kind=type(exc).__name__)
        return Scan.objects.get(id=scan_id)
    for child_id in child_ids:
        try:
            scan_repository_run(scan_id=child_id)
        except (RegistryError, RepositoryBusy) as exc:
            scan_fail(scan_id=child_id, message=str(exc), kind=type(exc).__name__)
    return Scan.objects.get(id=scan_id)


# --- schedule -------------------------------------------------------------------------------------------


def due_scans_enqueue(*, now=None) -> list[int]:
    """Create and enqueue a scan for each tracked registry or repository whose time has come.

    Rows are claimed with `select_for_update(skip_locked=True)`, so two beat processes never enqueue the
    same scan, and a target with a scan still queued or running is skipped, not doubled.
    """
    now = now or timezone.now()
    created: list[int] = []
    active = [Scan.Status.QUEUED, Scan.Status.RUNNING]
    with transaction.atomic():
        for registry in (
            Registry.objects.select_for_update(skip_locked=True)
            .filter(tracked=True, scan_interval__isnull=False)
            .filter(Q(next_scan_at__isnull=True) | Q(next_scan_at__lte=now))
        ):
            registry.next_scan_at = now + registry.scan_interval
            registry.save(update_fields=["next_scan_at"])
            if Scan.objects.filter(registry=registry, kind=Scan.Kind.REGISTRY, status__in=active).exists():
                continue
            scan = scan_create(registry=registry, trigger="schedule")
            scan_enqueue(scan)
            created.append(scan.id)
        for repo in (
            Repository.objects.select_for_update(skip_locked=True)
            .select_related("registry")
            .filter(tracked=True, scan_interval__isnull=False)
            .filter(Q(next_scan_at__isnull=True) | Q(next_scan_at__lte=now))
        ):
            repo.next_scan_at = now + repo.scan_interval
            repo.save(update_fields=["next_scan_at"])
            if Scan.objects.filter(repository=repo, status__in=active).exists():
                continue
            scan = scan_create(registry=repo.registry, repository=repo, trigger="schedule")
            scan_enqueue(scan)
            created.append(scan.id)
        # Tracked Docker Engines: their `EngineScan` ids are another table's, so they are not returned.
        from analytics.engine_services import engine_due_scans_enqueue

        engine_due_scans_enqueue(now=now)
    return created


def stuck_scans_requeue(*, now=None) -> list[int]:
    """Send again the scans no worker is running: the beat task's sweeper. Returns their ids.

    1. A running scan whose lease expired: its worker stopped beating (killed, its machine gone).
       It goes back to queued and is sent again; the next claim counts a take-over (and fails the
       scan past `SCAN_MAX_ATTEMPTS`). A registry scan waiting on its children holds no lease.
    2. A queued scan sent longer than `SCAN_REQUEUE_AFTER_SECONDS` ago: the broker lost its task
       (e.g. Redis restarted without persistence). Sending it twice is harmless: the claim is a
       conditional update and the repository lease keeps a second worker out.
    Rows are locked with `skip_locked`, so two beat processes never send the same scan twice.
    """
    now = now or timezone.now()
    lost_before = now - timedelta(seconds=settings.SCAN_REQUEUE_AFTER_SECONDS)
    sent: list[int] = []
    with transaction.atomic():
        stuck = (
            Scan.objects.select_for_update(skip_locked=True)
            .annotate(sent_at=Coalesce("enqueued_at", "created_at"))
            .filter(
                Q(status=Scan.Status.RUNNING, lease_until__lt=now)
                | Q(status=Scan.Status.QUEUED, sent_at__lt=lost_before)
            )
            .order_by("id")
        )
        for scan in stuck:
            with log_context(scan_id=scan.id, registry_id=scan.registry_id, repository_id=scan.repository_id):
                logger.warning(
                    "scan %s %s; sending it to the workers again",
                    scan.id,
                    "lost its worker (lease expired)"
                    if scan.status == Scan.Status.RUNNING
                    else "was never run",
                    extra={"event": "scan_requeued", "was": scan.status},
                )
            if scan.status == Scan.Status.RUNNING:
                scan.takeovers += 1
                if scan.takeovers >= settings.SCAN_MAX_ATTEMPTS:
                    transaction.on_commit(functools.partial(_give_up, scan.id, scan.takeovers))
                    continue
                Scan.objects.filter(id=scan.id).update(
                    status=Scan.Status.QUEUED, lease_until=None, takeovers=scan.takeovers
                )
            scan_enqueue(scan)
            sent.append(scan.id)
    return sent
