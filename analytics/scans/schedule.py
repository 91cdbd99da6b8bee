"""Beat's work: enqueue the scans of tracked registries and repositories whose time has come, and send
again the scans no worker is running (expired leases, tasks the broker lost)."""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from analytics.infra.logs import log_context
from analytics.models import Registry, Repository, Scan
from analytics.scans.crawl import crawls_resume
from analytics.scans.start import scan_create, scan_enqueue
from analytics.scans.state import scan_give_up

logger = logging.getLogger(__name__)


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
    return created


def stuck_scans_requeue(*, now=None) -> list[int]:
    """Send again the scans no worker is running: the beat task's sweeper. Returns their ids.

    1. A running scan whose lease expired: its worker stopped beating (killed, its machine gone).
       It goes back to queued and is sent again; the next claim counts a take-over (and fails the
       scan past `SCAN_MAX_ATTEMPTS`). A registry scan waiting on its children holds no lease.
    2. A queued scan sent longer than `SCAN_REQUEUE_AFTER_SECONDS` ago: the broker lost its task
       (e.g. Redis restarted without persistence). Sending it twice is harmless: the claim is a
       conditional update and the repository lease keeps a second worker out. A crawl's child not
       sent yet (no `enqueued_at`: it waits for its crawl's window) is not lost.
    3. Then every crawl's window is topped up (`crawl.crawls_resume`), should the tasks that send
       its next children all have ended without doing so; those first sends are not returned.
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
                | (
                    Q(status=Scan.Status.QUEUED, sent_at__lt=lost_before)
                    & ~Q(parent__isnull=False, enqueued_at__isnull=True)
                )
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
                    transaction.on_commit(functools.partial(scan_give_up, scan.id, scan.takeovers))
                    continue
                Scan.objects.filter(id=scan.id).update(
                    status=Scan.Status.QUEUED, lease_until=None, takeovers=scan.takeovers
                )
            scan_enqueue(scan)
            sent.append(scan.id)
    crawls_resume()
    return sent
