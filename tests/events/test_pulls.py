"""Pull counts from pull events: totals, first and last times, the daily series; the scanner's reads and
blob pulls count nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from analytics.events.pulls import pulls_record
from analytics.models import ManifestPullDay, ManifestPulls, Registry, RegistryEvent

pytestmark = pytest.mark.django_db

DIGEST = "sha256:" + "a" * 64


def _event(registry: Registry, n: int, **fields: object) -> RegistryEvent:
    values: dict[str, object] = {
        "source": RegistryEvent.Source.DISTRIBUTION,
        "key": f"event-{n}",
        "action": RegistryEvent.Action.PULL,
        "repository": "team/app",
        "digest": DIGEST,
        "user_agent": "skopeo/1.9.3",
        "occurred_at": datetime(2026, 12, 1, 10, n, tzinfo=UTC),
    }
    values.update(fields)
    return RegistryEvent.objects.create(registry=registry, **values)


def test_pulls_are_counted_by_manifest_and_day_without_the_scanner_or_blobs() -> None:
    registry = Registry.objects.create(name="r", url="http://127.0.0.1:5999")
    events = [
        _event(registry, 1),
        _event(registry, 2),
        _event(registry, 3, occurred_at=datetime(2026, 12, 2, 9, 0, tzinfo=UTC)),
        _event(registry, 4, user_agent="layerlens/1.0"),
        _event(registry, 5, target=RegistryEvent.Target.BLOB),
        _event(registry, 6, action=RegistryEvent.Action.PUSH),
    ]
    counted = pulls_record(registry_id=registry.id, events=events)
    assert [e.key for e in counted] == ["event-1", "event-2", "event-3"]
    total = ManifestPulls.objects.get(repository__name="team/app", digest=DIGEST)
    assert total.pulls == 3
    assert total.first_pulled_at == datetime(2026, 12, 1, 10, 1, tzinfo=UTC)
    assert total.last_pulled_at == datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    days = dict(ManifestPullDay.objects.values_list("day", "pulls"))
    assert days == {date(2026, 12, 1): 2, date(2026, 12, 2): 1}

    # a later batch adds to the same rows
    pulls_record(
        registry_id=registry.id, events=[_event(registry, 7, occurred_at=datetime(2026, 11, 30, tzinfo=UTC))]
    )
    total.refresh_from_db()
    assert total.pulls == 4
    assert total.first_pulled_at == datetime(2026, 11, 30, tzinfo=UTC)
    assert ManifestPullDay.objects.get(day=date(2026, 11, 30)).pulls == 1
