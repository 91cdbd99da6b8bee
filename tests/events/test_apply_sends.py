"""How many apply tasks a burst sends: one while a task is out or running, whatever the number of
requests, and never none for an event stored while the task was finishing. The pending-task key is in
the real Redis; the task runs in this process (its sends captured, not brokered); the events are pulls,
which are applied without reading the registry."""

from __future__ import annotations

import json
import uuid

import pytest

from analytics.events.apply import registry_events_apply as real_apply
from analytics.events.formats import events_parse
from analytics.events.inbox import APPLY_TASK, events_store
from analytics.models import Registry, RegistryEvent
from config.celery import app
from workers.tasks import apply_registry_events

pytestmark = pytest.mark.django_db

DISTRIBUTION = "application/vnd.docker.distribution.events.v1+json"
DIGEST = "sha256:" + "b" * 64


@pytest.fixture
def sends(monkeypatch, settings) -> list[tuple[str, list]]:
    assert settings.LAYERLENS_REDIS_URL, "the pending-task key lives in Redis"
    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **kw: sent.append((name, args)))
    return sent


@pytest.fixture
def registry() -> Registry:
    return Registry.objects.create(name="followed", url="http://127.0.0.1:5999")


def deliver(registry: Registry, capture) -> None:
    """One pull event, as a request stores it; the apply task asked for once it commits."""
    event = {
        "id": str(uuid.uuid4()),
        "action": "pull",
        "target": {
            "repository": "team/app",
            "digest": DIGEST,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
        },
        "request": {"method": "GET", "useragent": "containerd/v1.7.24"},
    }
    body = json.dumps({"events": [event]}).encode()
    with capture(execute=True):
        events_store(registry=registry, events=events_parse(body=body, content_type=DISTRIBUTION).events)


def pending(registry: Registry) -> int:
    return RegistryEvent.objects.filter(registry=registry, applied_at__isnull=True).count()


def test_a_burst_sends_one_task_and_the_next_event_after_it_another(
    registry, sends, django_capture_on_commit_callbacks
):
    for _ in range(50):
        deliver(registry, django_capture_on_commit_callbacks)
    assert sends == [(APPLY_TASK, [registry.id])]
    apply_registry_events(registry.id)  # the task the burst sent: applies all, lets the key go
    assert pending(registry) == 0
    assert sends == [(APPLY_TASK, [registry.id])]  # it did not send itself again
    deliver(registry, django_capture_on_commit_callbacks)
    assert sends == [(APPLY_TASK, [registry.id])] * 2


def test_events_stored_while_the_task_runs_are_its_own(
    registry, sends, monkeypatch, django_capture_on_commit_callbacks
):
    deliver(registry, django_capture_on_commit_callbacks)
    rounds: list[int] = []

    def applying(*, registry_id: int):
        result = real_apply(registry_id=registry_id)
        rounds.append(result.events)
        if len(rounds) == 1:  # more requests while the first round applied
            for _ in range(3):
                deliver(registry, django_capture_on_commit_callbacks)
        return result

    monkeypatch.setattr("workers.tasks.registry_events_apply", applying)
    apply_registry_events(registry.id)
    assert rounds == [1, 3, 0] and pending(registry) == 0
    assert len(sends) == 1  # the burst's first request's; the task applied the rest itself


def test_an_event_stored_after_the_tasks_last_look_is_not_left_waiting(
    registry, sends, monkeypatch, django_capture_on_commit_callbacks
):
    """The task read nothing pending, and an event commits before it lets go of the key: its sender
    sends nothing (the key is held), so the task must find it itself."""
    deliver(registry, django_capture_on_commit_callbacks)
    rounds: list[int] = []

    def applying(*, registry_id: int):
        result = real_apply(registry_id=registry_id)
        rounds.append(result.events)
        if len(rounds) == 2:  # the round that found nothing; the event lands before the key is let go
            deliver(registry, django_capture_on_commit_callbacks)
        return result

    monkeypatch.setattr("workers.tasks.registry_events_apply", applying)
    apply_registry_events(registry.id)
    assert rounds == [1, 0, 1, 0] and pending(registry) == 0
    assert len(sends) == 1  # no task was sent for the late event: this one applied it
