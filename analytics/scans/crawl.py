"""A registry crawl's children go to the workers a window at a time: at most `SCAN_CRAWL_WINDOW`
batches of one crawl are out (sent and not finished), and each batch that ends sends the next ones.
The bulk queue then holds a few batches per crawl, whatever the registry's size, so the crawls of
several registries take turns instead of one's thousands of batches running before another's first.

A child not sent yet has `enqueued_at` null (the sweeper leaves it alone); sending sets it, so a sent
child whose task the broker lost looks lost and is sent again. Children are sent in id order, the
order they were created, so the sent ones come first among a crawl's unfinished children."""

from __future__ import annotations

import logging

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.models import Scan

logger = logging.getLogger(__name__)

_UNFINISHED = [Scan.Status.QUEUED, Scan.Status.RUNNING]


def crawl_send_next(parent_id: int) -> int:
    """Send registry scan `parent_id`'s next children, `SCAN_TASK_BATCH` per `scan_repositories` task,
    until `SCAN_CRAWL_WINDOW` batches' worth are out; returns how many were sent. Safe to call from
    anywhere at any time: a call that finds the window full sends nothing."""
    size = max(1, settings.SCAN_TASK_BATCH)
    window = max(1, settings.SCAN_CRAWL_WINDOW) * size
    with transaction.atomic():
        # One sender per crawl at a time, so two batches ending together do not both fill the window.
        if not Scan.objects.select_for_update().filter(id=parent_id).exists():
            return 0
        # The first `window` unfinished children (index `scan_children_unfinished`): the ones out,
        # then the next to send.
        rows = list(
            Scan.objects.filter(parent_id=parent_id, status__in=_UNFINISHED)
            .order_by("id")
            .values_list("id", "enqueued_at")[:window]
        )
        out = sum(1 for _, sent in rows if sent is not None)
        unsent = [scan_id for scan_id, sent in rows if sent is None]
        free = window - out
        # Whole batches only, so that a batch ending while others are half done does not send the
        # slots they freed as a short one; but the last children go however few they are.
        take = free // size * size
        if len(rows) < window:  # every unsent child is among `rows`, and there is room for them all
            take = len(unsent)
        ids = unsent[:take]
        if not ids:
            return 0
        Scan.objects.filter(id__in=ids, enqueued_at__isnull=True).update(enqueued_at=timezone.now())

        def send() -> None:
            for i in range(0, len(ids), size):
                current_app.send_task("workers.tasks.scan_repositories", args=[ids[i : i + size]])

        transaction.on_commit(send)
    return len(ids)


def crawl_continue(scan_ids: list[int]) -> None:
    """After a task ran these scans: send the next children of the crawls they belong to."""
    parents = Scan.objects.filter(id__in=scan_ids, parent__isnull=False).values_list("parent_id", flat=True)
    for parent_id in sorted(set(parents)):
        crawl_send_next(parent_id)


def crawls_resume() -> int:
    """The sweeper's part: top up every crawl with unfinished children. A crawl's sending stops only if
    every task that would send its next children ended without doing so (a batch lost with its
    worker, a child given up by the sweeper); this restarts it. Walks the crawls with unfinished
    children one index probe each; returns the children sent."""
    sent = 0
    last = 0
    while True:
        parent_id = (
            Scan.objects.filter(parent_id__gt=last, status__in=_UNFINISHED)
            .order_by("parent_id", "id")  # the index's own order: not the finished children's index
            .values_list("parent_id", flat=True)
            .first()
        )
        if parent_id is None:
            return sent
        n = crawl_send_next(parent_id)
        if n:
            logger.info("crawl of scan %s resumed: %d children sent", parent_id, n)
        sent += n
        last = parent_id
