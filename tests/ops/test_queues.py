"""The three queues (control, interactive, bulk): what is sent where. Tasks are captured at the broker's
door, not run."""

from __future__ import annotations

import pytest
from django.conf import settings

from analytics.models import Registry, Scan
from analytics.scans.registry_run import _children_create
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


def crawl(name: str, repositories: int) -> Scan:
    """A registry scan that has listed `repositories` repositories."""
    registry = Registry.objects.create(name=name, url=f"http://127.0.0.1:1/{name}")
    scan = scan_create(registry=registry)
    Scan.objects.filter(id=scan.id).update(status=Scan.Status.RUNNING)
    _children_create(scan, [f"{name}/r{i:05d}" for i in range(repositories)])
    return Scan.objects.get(id=scan.id)


def queue_of(name: str) -> str:
    return app.amqp.router.route({}, name)["queue"].name


def test_every_task_has_its_queue():
    expected = {
        "workers.tasks.enqueue_due_scans": settings.QUEUE_CONTROL,
        "workers.tasks.requeue_stuck_scans": settings.QUEUE_CONTROL,
        "workers.tasks.scan_repository": settings.QUEUE_INTERACTIVE,
        "workers.tasks.scan_engine": settings.QUEUE_INTERACTIVE,
        "workers.tasks.scan_registry": settings.QUEUE_BULK,
        "workers.tasks.scan_repositories": settings.QUEUE_BULK,
    }
    app.loader.import_default_modules()
    ours = {name for name in app.tasks if name.startswith("workers.tasks.")}
    assert ours == set(expected) == set(settings.CELERY_TASK_ROUTES)  # a new task is routed on purpose
    assert {name: queue_of(name) for name in ours} == expected
    for name, _ in settings.CELERY_BEAT_SCHEDULE.items():
        assert queue_of(settings.CELERY_BEAT_SCHEDULE[name]["task"]) == settings.QUEUE_CONTROL
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
