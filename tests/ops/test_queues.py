"""The three queues (control, interactive, bulk) and a registry crawl's window on the bulk queue: what is
sent where, how many batches of one crawl are out at once, and what the sweeper does with children
not sent yet. Tasks are captured at the broker's door, not run."""

from __future__ import annotations

from collections import deque
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from analytics.models import Registry, Scan
from analytics.scans.crawl import crawl_continue, crawl_send_next, crawls_resume
from analytics.scans.registry_run import _children_create
from analytics.scans.schedule import stuck_scans_requeue
from analytics.scans.start import scan_create, scan_enqueue
from config.celery import app
from harness.celery_worker import CeleryWorker

pytestmark = pytest.mark.django_db(transaction=True)  # sends happen on commit


@pytest.fixture
def sent(monkeypatch):
    """(task name, args, queue given at send time or None) per task handed to the broker."""
    out: list[tuple[str, list, str | None]] = []
    monkeypatch.setattr(
        app, "send_task", lambda name, args=None, **options: out.append((name, args, options.get("queue")))
    )
    return out


@pytest.fixture
def window(settings):
    settings.SCAN_TASK_BATCH = 10
    settings.SCAN_CRAWL_WINDOW = 3
    return 10, 3


def crawl(name: str, repositories: int) -> Scan:
    """A registry scan that has listed `repositories` repositories and sent none of them yet."""
    registry = Registry.objects.create(name=name, url=f"http://127.0.0.1:1/{name}")
    scan = scan_create(registry=registry)
    Scan.objects.filter(id=scan.id).update(status=Scan.Status.RUNNING)
    _children_create(scan, [f"{name}/r{i:05d}" for i in range(repositories)])
    return Scan.objects.get(id=scan.id)


def finish(ids: list[int]) -> None:
    Scan.objects.filter(id__in=ids).update(status=Scan.Status.SUCCEEDED, finished_at=timezone.now())


def queue_of(name: str) -> str:
    return app.amqp.router.route({}, name)["queue"].name


def test_every_task_has_its_queue():
    expected = {
        "workers.tasks.enqueue_due_scans": settings.QUEUE_CONTROL,
        "workers.tasks.requeue_stuck_scans": settings.QUEUE_CONTROL,
        "workers.tasks.sweep_registry_events": settings.QUEUE_CONTROL,
        "workers.tasks.scan_repository": settings.QUEUE_INTERACTIVE,
        "workers.tasks.apply_registry_events": settings.QUEUE_INTERACTIVE,
        "workers.tasks.scan_engine": settings.QUEUE_INTERACTIVE,
        "workers.tasks.whatif_job": settings.QUEUE_INTERACTIVE,
        "workers.tasks.evaluate_cleanup_policy": settings.QUEUE_INTERACTIVE,
        "workers.tasks.scan_registry": settings.QUEUE_BULK,
        "workers.tasks.scan_repositories": settings.QUEUE_BULK,
    }
    app.loader.import_default_modules()
    ours = {name for name in app.tasks if name.startswith("workers.tasks.")}
    assert ours == set(expected) == set(settings.CELERY_TASK_ROUTES)  # a new task is routed on purpose
    assert {name: queue_of(name) for name in ours} == expected
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert queue_of(entry["task"]) == settings.QUEUE_CONTROL
    # A worker given no -Q takes all three; the harness names them the same way.
    assert [q.name for q in app.amqp.queues.values()] == CeleryWorker(
        database_name="x", broker_url="redis://"
    ).queue_names()


def test_a_crawls_child_sent_alone_stays_in_bulk(sent):
    parent = crawl("reg", 1)
    (child,) = parent.children.all()
    single = scan_create(registry=parent.registry, repository=child.repository)
    scan_enqueue(single)
    scan_enqueue(child)  # as the sweeper does
    scan_enqueue(parent)
    assert sent == [
        ("workers.tasks.scan_repository", [single.id], None),  # routed: interactive
        ("workers.tasks.scan_repository", [child.id], settings.QUEUE_BULK),
        ("workers.tasks.scan_registry", [parent.id], None),  # routed: bulk
    ]


def test_a_crawl_keeps_its_window_of_batches_out_and_each_batch_sends_the_next(sent, window):
    size, batches = window
    scan = crawl("reg", 95)
    children = list(scan.children.order_by("id").values_list("id", flat=True))
    assert Scan.objects.filter(parent=scan, enqueued_at__isnull=False).count() == 0

    assert crawl_send_next(scan.id) == size * batches
    assert [args[0] for _, args, _ in sent] == [children[0:10], children[10:20], children[20:30]]
    assert crawl_send_next(scan.id) == 0  # full: nothing more until a batch ends
    out = Scan.objects.filter(parent=scan, enqueued_at__isnull=False).values_list("id", flat=True)
    assert set(out) == set(children[:30])

    # A batch ends with one child handed back to run alone: that child is still out, and the nine
    # slots free are no whole batch.
    finish(children[10:19])
    crawl_continue(children[10:20])
    assert len(sent) == 3
    finish(children[:10] + [children[19]])
    crawl_continue([children[19]])
    assert [args[0] for _, args, _ in sent[3:]] == [children[30:40], children[40:50]]
    # The end of the list: a short last batch.
    finish(children[:50])
    crawl_continue(children[40:50])
    assert [args[0] for _, args, _ in sent[5:]] == [children[50:60], children[60:70], children[70:80]]
    finish(children[50:80])
    crawl_continue(children[70:80])
    assert [args[0] for _, args, _ in sent[8:]] == [children[80:90], children[90:95]]
    assert all(name == "workers.tasks.scan_repositories" and queue is None for name, _, queue in sent)


def test_two_crawls_take_turns_on_the_bulk_queue(sent, window):
    """A FIFO queue and one worker: the small crawl started after the big one has begun waits behind
    a window of the big one's batches, not behind all of them."""
    size, batches = window
    big, small = crawl("big", 2000), crawl("small", 30)
    queue: deque = deque()

    def drain_sent():
        while sent:
            queue.append(sent.pop(0)[1][0])

    crawl_send_next(big.id)
    drain_sent()
    ran: list[int] = []  # which crawl each batch the worker ran belongs to
    for step in range(40):
        if step == 5:  # the small crawl starts while the big one is under way
            crawl_send_next(small.id)
            drain_sent()
        ids = queue.popleft()
        finish(ids)
        crawl_continue(ids)
        drain_sent()
        ran.append(Scan.objects.get(id=ids[0]).parent_id)
    small_runs = [i for i, parent in enumerate(ran) if parent == small.id]
    assert len(small_runs) == 3 and small_runs[-1] <= 5 + 2 * batches
    assert len(queue) <= batches  # the big crawl never holds more than its window


def test_children_not_sent_yet_are_not_lost_but_sent_ones_are(sent, window, settings):
    settings.SCAN_REQUEUE_AFTER_SECONDS = 60
    scan = crawl("reg", 50)
    children = list(scan.children.order_by("id").values_list("id", flat=True))
    long_ago = timezone.now() - timedelta(hours=2)
    Scan.objects.filter(parent=scan).update(created_at=long_ago)
    assert crawl_send_next(scan.id) == 30
    sent.clear()
    # The first batch's task was lost with the broker long ago: sent again, alone, to bulk.
    Scan.objects.filter(id__in=children[:10]).update(enqueued_at=long_ago)
    assert stuck_scans_requeue() == children[:10]
    assert sent == [("workers.tasks.scan_repository", [i], settings.QUEUE_BULK) for i in children[:10]]
    # The twenty never sent are waiting for the window, not lost, however old.
    assert Scan.objects.filter(parent=scan, enqueued_at__isnull=True).count() == 20


def test_the_sweeper_restarts_a_crawl_whose_sending_stopped(sent, window):
    scan = crawl("reg", 50)
    other = crawl("other", 5)
    children = list(scan.children.order_by("id").values_list("id", flat=True))
    crawl_send_next(scan.id)
    # Every batch out ended without sending the next ones (say their worker died after the ingest).
    finish(children[:30])
    sent.clear()
    assert stuck_scans_requeue() == []
    assert [args[0] for _, args, _ in sent] == [
        children[30:40],
        children[40:50],
        list(other.children.order_by("id").values_list("id", flat=True)),
    ]
    assert crawls_resume() == 0  # nothing more to send: the windows are full or the lists sent
