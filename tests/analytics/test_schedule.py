from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.errors import RepositoryBusy
from analytics.models import Registry, Repository, Scan
from analytics.scans.repository_run import scan_repository_run
from analytics.scans.schedule import due_scans_enqueue
from analytics.scans.start import scan_create, scan_run_inline


@pytest.fixture
def sent(monkeypatch):
    """Tasks handed to the broker, captured at the one place the services send them."""
    from config.celery import app

    calls = []
    monkeypatch.setattr(app, "send_task", lambda name, args: calls.append((name, args)))
    return calls


@pytest.mark.django_db(transaction=True)
def test_due_tracked_registry_is_enqueued_once_and_rescheduled(sent):
    registry = Registry.objects.create(
        name="r", url="http://127.0.0.1:5999", tracked=True, scan_interval=timedelta(hours=1)
    )
    Registry.objects.create(name="untracked", url="http://127.0.0.1:5998")

    first = due_scans_enqueue()
    assert len(first) == 1
    assert sent == [("workers.tasks.scan_registry", [first[0]])]
    registry.refresh_from_db()
    assert registry.next_scan_at > timezone.now() + timedelta(minutes=59)
    # Not due again until the interval has passed.
    assert due_scans_enqueue() == []
    # Due again, but its scan is still queued: skipped rather than doubled.
    assert due_scans_enqueue(now=timezone.now() + timedelta(hours=2)) == []
    Scan.objects.filter(id=first[0]).update(status=Scan.Status.SUCCEEDED)
    assert len(due_scans_enqueue(now=timezone.now() + timedelta(hours=4))) == 1


@pytest.mark.django_db(transaction=True)
def test_tracked_repository_is_enqueued_as_a_repository_scan(sent):
    registry = Registry.objects.create(name="r", url="http://127.0.0.1:5999")
    repo = Repository.objects.create(
        registry=registry, name="team/app", tracked=True, scan_interval=timedelta(minutes=5)
    )
    (scan_id,) = due_scans_enqueue()
    scan = Scan.objects.get(id=scan_id)
    assert (scan.kind, scan.repository_id, scan.trigger) == (Scan.Kind.REPOSITORY, repo.id, "schedule")
    assert sent == [("workers.tasks.scan_repository", [scan_id])]


@pytest.mark.django_db
def test_repository_held_by_another_worker_is_not_scanned_twice():
    registry = Registry.objects.create(name="r", url="http://127.0.0.1:5999")
    repo = Repository.objects.create(
        registry=registry, name="team/app", scan_lease_until=timezone.now() + timedelta(minutes=10)
    )
    scan = scan_create(registry=registry, repository=repo)
    with pytest.raises(RepositoryBusy):
        scan_repository_run(scan_id=scan.id)
    scan.refresh_from_db()
    assert scan.status == Scan.Status.QUEUED  # left for the retry, not claimed


@pytest.mark.django_db
def test_expired_lease_of_a_dead_worker_does_not_block_the_repository(monkeypatch):
    registry = Registry.objects.create(name="r", url="http://127.0.0.1:1")  # nothing listens: fails fast
    repo = Repository.objects.create(
        registry=registry, name="team/app", scan_lease_until=timezone.now() - timedelta(seconds=1)
    )
    scan = scan_create(registry=registry, repository=repo)
    result = scan_run_inline(scan_id=scan.id)
    assert result.status == Scan.Status.FAILED  # it ran (and met no registry), instead of waiting
    assert "127.0.0.1:1" in result.message
    repo.refresh_from_db()
    assert repo.scan_lease_until is None


@pytest.mark.django_db
def test_scan_left_running_by_a_dead_worker_is_taken_over_once_its_lease_expires():
    registry = Registry.objects.create(name="r", url="http://127.0.0.1:1")
    repo = Repository.objects.create(registry=registry, name="team/app")
    scan = scan_create(registry=registry, repository=repo)
    Scan.objects.filter(id=scan.id).update(status=Scan.Status.RUNNING)
    Repository.objects.filter(id=repo.id).update(scan_lease_until=timezone.now() + timedelta(minutes=5))
    with pytest.raises(RepositoryBusy):  # the worker may still be alive
        scan_repository_run(scan_id=scan.id)

    Repository.objects.filter(id=repo.id).update(scan_lease_until=timezone.now() - timedelta(seconds=1))
    result = scan_run_inline(scan_id=scan.id)
    assert result.status == Scan.Status.FAILED and result.finished_at is not None  # ran again, to the end


@pytest.mark.django_db(transaction=True)
def test_beats_enqueuer_runs_whole_and_enqueues_a_due_engine(sent):
    """The task as beat runs it, outside any transaction: registries first, then engines."""
    from analytics.models import Engine, EngineScan
    from workers.tasks import enqueue_due_scans

    engine = Engine.objects.create(
        name="e", endpoint="unix:///nonexistent.sock", tracked=True, scan_interval=timedelta(hours=1)
    )
    enqueue_due_scans()
    (scan,) = EngineScan.objects.filter(engine=engine)
    assert scan.trigger == "schedule"
    assert sent == [("workers.tasks.scan_engine", [scan.id])]
