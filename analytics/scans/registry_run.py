"""A registry scan: claim it, list the catalog (streamed), and create one child scan per repository."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from analytics.infra.logs import log_context
from analytics.infra.text import printable
from analytics.models import Repository, Scan, ScanError
from analytics.scans.clients import registry_client_shared
from analytics.scans.runtime import Heartbeat
from analytics.scans.state import (
    HANDLED_ELSEWHERE,
    parent_finish_if_done,
    scan_claim,
    scan_fail_unexpected,
    scan_finish,
)
from workers.registry.errors import RegistryError
from workers.registry.reference import validate_repository

logger = logging.getLogger(__name__)


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
        message=printable(
            f"the registry does not list its catalog ({exc}); scanned the {len(known)} "
            "repositories already known for it"
        ),
    )
    return known


def scan_registry_run(*, scan_id: int, on_children: Callable[[list[int]], None] | None = None) -> list[int]:
    """1. Claim the scan. 2. List every repository, streamed. 3. Create a child scan per repository.

    Children are created `CHILD_BATCH` repositories at a time while the catalog pages come in, and
    each batch's ids go to `on_children` (the task sends the crawl's next window of them,
    `scans.crawl`), so no whole-registry list is held; without `on_children` the ids are returned and
    the caller runs the children in this process. A registry that cannot
    be listed fails the scan with the registry's own words. A scan taken over (or retried) before its
    listing completed lists again and creates only the children still missing; one taken over after
    it completed returns the unfinished children instead. Once listed the scan holds no lease: it
    finishes with its last child.
    """
    scan = scan_claim(scan_id)
    if scan is None:
        return []
    with log_context(scan_id=scan.id, registry_id=scan.registry_id):
        created = scan.children.count()
        if created and scan.repositories_total == created:  # listed completely before
            existing = list(scan.children.exclude(status__in=_FINISHED).values_list("id", flat=True))
            Scan.objects.filter(id=scan.id).update(lease_until=None)
            if not existing:
                parent_finish_if_done(scan.id)
            if on_children is not None and existing:
                on_children(existing)
                return []
            return existing
        return _scan_registry_list(scan, on_children=on_children, created=created)


_FINISHED = [Scan.Status.SUCCEEDED, Scan.Status.PARTIAL, Scan.Status.FAILED]


CHILD_BATCH = 500
INVALID_NAMES_RECORDED = 100  # one ScanError each; the rest of a hostile catalog's are counted in one


class _InvalidNames:
    """Catalog entries that are no repository name (distribution-spec "Pulling manifests": `<name>` is
    path components `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*` joined by `/`, at most 255 characters):
    never stored, each one a `ScanError` on the registry scan, up to `INVALID_NAMES_RECORDED`."""

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self.count = 0
        scan.errors.filter(kind="InvalidRepositoryName").delete()  # a listing again records them again

    def valid(self, name: str) -> bool:
        try:
            validate_repository(name)
        except RegistryError as exc:  # the grammar's ReferenceError
            self.count += 1
            if self.count <= INVALID_NAMES_RECORDED:
                shown = repr(name[:100]) + (f"... ({len(name)} characters)" if len(name) > 100 else "")
                ScanError.objects.create(
                    scan=self.scan,
                    kind="InvalidRepositoryName",
                    message=printable(f"the catalog lists {shown}, skipped: {exc.message}"),
                )
            return False
        return True

    def close(self) -> None:
        more = self.count - INVALID_NAMES_RECORDED
        if more > 0:
            ScanError.objects.create(
                scan=self.scan,
                kind="InvalidRepositoryName",
                message=f"{more} more catalog entries that are no repository name, skipped",
            )


def _children_create(scan: Scan, names: list[str]) -> list[int]:
    """Child scans for the repositories `names` that have none under `scan` yet, in one transaction;
    `repositories_total` grows by as many. They have no `enqueued_at`: not sent yet, they wait for the
    crawl's window (`scans.crawl`)."""
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
        children = Scan.objects.bulk_create(
            [
                Scan(
                    kind=Scan.Kind.REPOSITORY,
                    registry=scan.registry,
                    repository=r,
                    deep_budget_bytes=scan.deep_budget_bytes,
                    parent=scan,
                    trigger=scan.trigger,
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
        if on_children is not None:
            ids = _children_create(scan, batch)
            if ids:
                on_children(ids)
            return
        # Run in this process: stamped as sent in the same transaction, so that the sweeper never
        # sends them to the workers as well.
        with transaction.atomic():
            ids = _children_create(scan, batch)
            Scan.objects.filter(id__in=ids).update(enqueued_at=timezone.now())
        kept.extend(ids)

    invalid = _InvalidNames(scan)
    try:
        with Heartbeat(scan_id=scan.id), registry_client_shared(scan.registry) as client:
            batch: list[str] = []
            for name in client.iter_repositories():
                if not invalid.valid(name):
                    continue
                batch.append(name)
                if len(batch) >= CHILD_BATCH:
                    flush(batch)
                    batch = []
            flush(batch)
        invalid.close()
    except RegistryError as exc:
        if getattr(exc, "transient", False):
            Scan.objects.filter(id=scan.id).update(
                status=Scan.Status.QUEUED, lease_until=None, enqueued_at=timezone.now()
            )
            logger.info("listing the registry failed (%s); retrying later", exc)
            raise
        invalid.close()
        known = _catalog_fallback(scan, exc)
        if known is None:
            ScanError.objects.create(scan=scan, kind=type(exc).__name__, message=printable(str(exc)))
            scan_finish(scan, Scan.Status.FAILED, str(exc))
            return kept
        for i in range(0, len(known), CHILD_BATCH):
            flush(known[i : i + CHILD_BATCH])
    except HANDLED_ELSEWHERE:
        raise
    except Exception as exc:
        # Whatever else stops the listing ends this scan with what it was; the children created so far
        # run on (their parent is finished, so they finish alone).
        scan_fail_unexpected(scan_id=scan.id, exc=exc)
        return kept
    Scan.objects.filter(id=scan.id).update(repositories_total=F("repositories_total") - 1, lease_until=None)
    logger.info("registry listed: %d repositories", listed, extra={"event": "registry_listed"})
    parent_finish_if_done(scan.id)
    return kept
