"""Starting a scan: turn a target (`http://host:port`, `host:port/repo[:tag]`) into rows, create its
scan, and send it to the workers once the transaction commits, or run it in this process."""

from __future__ import annotations

from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.errors import InvalidRequest, RepositoryBusy
from analytics.models import Registry, Repository, Scan
from analytics.registries import registry_reachable_check, registry_upsert
from analytics.scans.registry_run import scan_registry_run
from analytics.scans.repository_run import scan_repository_run
from analytics.scans.state import scan_fail
from workers.registry.errors import RegistryError
from workers.registry.reference import parse_scan_target

# Compressed bytes one repository's deep scan may stream: 1 PiB is no bound in practice, and keeps the
# value inside the bigint it is stored in.
MAX_DEEP_BUDGET_BYTES = 2**50


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
    check_reachable: bool = False,
) -> ScanRequest:
    """Turn `http://host:port`, `host:port/repo` or `host:port/repo:tag` into rows, creating what is new.

    Credentials and `allow_internal` given here are saved on the registry (never in task arguments).
    With `check_reachable` (the API, the command), a target whose address the SSRF policy will refuse
    is an `InvalidRequest` saying how to allow it, and nothing is created.
    """
    try:
        parsed = parse_scan_target(target)
    except RegistryError as exc:
        raise InvalidRequest(f"target: {exc}") from None
    registry = Registry.objects.filter(url=parsed.registry_url.rstrip("/")).first()
    if check_reachable:
        allowed = allow_internal if allow_internal is not None else bool(registry and registry.allow_internal)
        registry_reachable_check(url=parsed.registry_url, allow_internal=allowed, field="target")
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
    (`analytics.scans.deep`) within that many compressed bytes."""
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
    """Send the scan to the workers once the surrounding transaction commits.

    Registry scans go to the bulk queue, repository and tag scans to the interactive one (the
    routes in settings); a registry scan's child sent again on its own (the sweeper) stays in bulk.
    """
    task = (
        "workers.tasks.scan_registry" if scan.kind == Scan.Kind.REGISTRY else "workers.tasks.scan_repository"
    )
    # The same task serves both: a crawl's child must not jump ahead of other registries' single scans.
    options = {"queue": settings.QUEUE_BULK} if scan.parent_id is not None else {}
    Scan.objects.filter(id=scan.id).update(enqueued_at=timezone.now())
    transaction.on_commit(lambda: current_app.send_task(task, args=[scan.id], **options))


def scan_start(
    *,
    target: str,
    trigger: str = "manual",
    username: str | None = None,
    password: str | None = None,
    deep_budget_bytes: int | None = None,
    allow_internal: bool | None = None,
    enqueue: bool = True,
    check_reachable: bool = False,
) -> Scan:
    """Resolve `target` (creating its rows), create its scan and, unless `enqueue` is False (the caller
    runs it in process: `scan_run_inline`), send it to the workers once the transaction commits.
    `check_reachable` as for `scan_request_resolve`."""
    if deep_budget_bytes is not None and not 1 <= deep_budget_bytes <= MAX_DEEP_BUDGET_BYTES:
        raise InvalidRequest(f"deep_budget is from 1 to {MAX_DEEP_BUDGET_BYTES} bytes (1 PiB)")
    with transaction.atomic():
        request = scan_request_resolve(
            target=target,
            username=username,
            password=password,
            allow_internal=allow_internal,
            check_reachable=check_reachable,
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
