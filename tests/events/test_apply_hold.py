"""A running apply task's hold: it writes in its registry's key until when it keeps the key at the least,
and keeps it so, looking at the inbox meanwhile; a web process that read that promise stores events until
then without asking Redis, and the task's last look finds them. The key is in the real Redis; the task
runs in this process (its sends captured, not brokered); the events are pulls, applied without reading
the registry."""

from __future__ import annotations

import time

import pytest

from analytics.events import inbox
from analytics.events.apply import events_pending as real_pending
from analytics.events.apply import registry_events_apply as real_apply
from analytics.events.inbox import APPLY_TASK, events_apply_started
from analytics.models import Registry
from tests.support.inbox import pending, pull_deliver, sends_capture
from workers.tasks import apply_registry_events

pytestmark = pytest.mark.django_db

DIGEST = "sha256:" + "c" * 64
HOLD = 0.4


@pytest.fixture
def sends(monkeypatch, settings) -> list[tuple[str, list]]:
    assert settings.LAYERLENS_REDIS_URL, "the pending-task key lives in Redis"
    settings.EVENTS_TASK_HOLD_SECONDS = HOLD
    return sends_capture(monkeypatch)


@pytest.fixture
def claims(monkeypatch) -> list[int]:
    """The senders' questions to Redis."""
    asked: list[int] = []
    real_claim = inbox.events_apply_claim

    def claim(*, registry_id: int) -> bool:
        asked.append(registry_id)
        return real_claim(registry_id=registry_id)

    monkeypatch.setattr(inbox, "events_apply_claim", claim)
    return asked


@pytest.fixture
def registry() -> Registry:
    return Registry.objects.create(name="followed", url="http://127.0.0.1:5999")


def deliver(registry: Registry, capture) -> None:
    pull_deliver(registry, capture, digest=DIGEST)


def test_a_sender_trusts_a_running_tasks_hold_and_asks_again_once_it_ends(
    registry, sends, claims, django_capture_on_commit_callbacks
):
    until = events_apply_started(registry_id=registry.id)  # a task's round began
    for _ in range(20):
        deliver(registry, django_capture_on_commit_callbacks)
    assert claims == [registry.id] and sends == []  # one question, its answer kept; the task applies them
    time.sleep(max(0.0, until - time.time()))
    deliver(registry, django_capture_on_commit_callbacks)
    assert claims == [registry.id] * 2  # the hold is over: asked again (the key is still there: no send)
    assert sends == []


def test_a_sender_that_never_saw_a_hold_asks_every_time(
    registry, sends, claims, django_capture_on_commit_callbacks
):
    for _ in range(3):
        deliver(registry, django_capture_on_commit_callbacks)
    # the first took the key and sent the task; a sent task has promised nothing yet
    assert claims == [registry.id] * 3 and sends == [(APPLY_TASK, [registry.id])]


def test_the_task_keeps_its_key_until_its_hold_and_applies_what_came_meanwhile(
    registry, sends, claims, monkeypatch, django_capture_on_commit_callbacks
):
    deliver(registry, django_capture_on_commit_callbacks)
    assert sends == [(APPLY_TASK, [registry.id])]
    rounds: list[int] = []
    holds: list[float] = []
    released: list[float] = []
    late: list[int] = []

    def started(*, registry_id: int) -> float:
        holds.append(inbox.events_apply_started(registry_id=registry_id))
        return holds[-1]

    def idle(*, registry_id: int) -> None:
        released.append(time.time())
        inbox.events_apply_idle(registry_id=registry_id)

    def applying(*, registry_id: int):
        result = real_apply(registry_id=registry_id)
        rounds.append(result.events)
        return result

    def looking(*, registry_id: int) -> bool:
        # while the task holds its key after a round found nothing: a sender stores an event, once
        if rounds == [1, 0] and not late:
            late.append(1)
            deliver(registry, django_capture_on_commit_callbacks)
        return real_pending(registry_id=registry_id)

    monkeypatch.setattr("workers.tasks.events_apply_started", started)
    monkeypatch.setattr("workers.tasks.events_apply_idle", idle)
    monkeypatch.setattr("workers.tasks.registry_events_apply", applying)
    monkeypatch.setattr("analytics.events.apply.events_pending", looking)
    apply_registry_events(registry.id)
    assert rounds == [1, 0, 1, 0] and pending(registry) == 0
    assert len(sends) == 1  # the late event's sender trusted the hold and sent nothing; the task applied it
    assert len(released) == 1 and released[0] >= holds[-1]  # let go only once its last hold was over
