"""How many apply tasks a burst sends: one while a task is out or running, whatever the number of
requests, and never none for an event stored while the task was finishing. The pending-task key is in
the real Redis; the task runs in this process (its sends captured, not brokered); the events are pulls,
which are applied without reading the registry."""

from __future__ import annotations

import pytest

from analytics.events.apply import registry_events_apply as real_apply
from analytics.events.inbox import APPLY_TASK
from analytics.models import Registry
from tests.support.inbox import pending, pull_deliver, sends_capture
from workers.tasks import apply_registry_events

pytestmark = pytest.mark.django_db

DIGEST = "sha256:" + "b" * 64


@pytest.fixture
def sends(monkeypatch, settings) -> list[tuple[str, list]]:
    assert settings.LAYERLENS_REDIS_URL, "the pending-task key lives in Redis"
    return sends_capture(monkeypatch)


@pytest.fixture
def registry() -> Registry:
    return Registry.objects.create(name="followed", url="http://127.0.0.1:5999")


def deliver(registry: Registry, capture) -> None:
    pull_deliver(registry, capture, digest=DIGEST)


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
