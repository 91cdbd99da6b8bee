"""Pull counts from pull events: per manifest and repository, a total with first and last pull time, and
a daily series. The scanner's own reads are not pulls."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC

from django.db import connection
from django.db.models import Q

from analytics.models import Registry, RegistryEvent, Tag
from analytics.registries import repositories_ensure

# What this service's registry client sends as User-Agent (`workers.registry.client`): a request with it
# is a scan's read, never a pull anyone made.
SCANNER_USER_AGENT_PREFIX = "layerlens/"


def is_scanner(user_agent: str) -> bool:
    return user_agent.startswith(SCANNER_USER_AGENT_PREFIX)


def pulls_record(*, registry_id: int, events: Iterable[RegistryEvent]) -> list[RegistryEvent]:
    """Count the manifest pulls among `events` (in the caller's transaction, which marks them applied, so
    a retry counts them once). Returns the events counted; the rest (blobs, the scanner's reads, a pull
    by a tag nobody recorded and no digest) count nothing. Every event given, counted or not, moves the
    registry's `pulls_counted_since` back to its time if older: it shows the registry was notifying."""
    counted: list[RegistryEvent] = []
    by_repository: dict[str, list[RegistryEvent]] = defaultdict(list)
    events = list(events)
    _counted_since(registry_id=registry_id, events=events)
    for event in events:
        if event.action != RegistryEvent.Action.PULL or event.target != RegistryEvent.Target.MANIFEST:
            continue
        if is_scanner(event.user_agent):
            continue
        by_repository[event.repository].append(event)
    if not by_repository:
        return counted
    repositories = repositories_ensure(registry_id=registry_id, names=set(by_repository))
    totals: dict[tuple[int, str], list] = {}
    days: dict[tuple[int, str, object], int] = defaultdict(int)
    for name, pulls in by_repository.items():
        repository_id = repositories[name]
        tag_digests = _tag_digests(repository_id=repository_id, tags={e.tag for e in pulls if not e.digest})
        for event in pulls:
            digest = event.digest or tag_digests.get(event.tag, "")
            if not digest:
                continue
            at = event.occurred_at or event.received_at
            key = (repository_id, digest)
            if key in totals:
                total = totals[key]
                total[0] += 1
                total[1] = min(total[1], at)
                total[2] = max(total[2], at)
            else:
                totals[key] = [1, at, at]
            days[(repository_id, digest, at.astimezone(UTC).date())] += 1
            counted.append(event)
    _upsert_totals(totals)
    _upsert_days(days)
    return counted


def _counted_since(*, registry_id: int, events: list[RegistryEvent]) -> None:
    """Move the registry's `pulls_counted_since` back to the oldest event given, of any action: the
    registry was notifying then, so from then on a pull would have been counted. The condition keeps
    the registry's row unlocked in the usual case (nothing older arrives)."""
    if not events:
        return
    oldest = min(e.occurred_at or e.received_at for e in events)
    Registry.objects.filter(
        Q(pulls_counted_since=None) | Q(pulls_counted_since__gt=oldest), id=registry_id
    ).update(pulls_counted_since=oldest)


def _tag_digests(*, repository_id: int, tags: set[str]) -> dict[str, str]:
    tags.discard("")
    if not tags:
        return {}
    return dict(
        Tag.objects.filter(repository_id=repository_id, name__in=tags, removed_at=None)
        .exclude(manifest=None)
        .values_list("name", "manifest__digest")
    )


def _upsert_totals(totals: dict[tuple[int, str], list]) -> None:
    rows = sorted(totals.items())  # one order for every writer: concurrent upserts never deadlock
    if not rows:
        return
    values = ", ".join(["(%s, %s, %s, %s::timestamptz, %s::timestamptz)"] * len(rows))
    params: list[object] = []
    for (repository_id, digest), (count, first, last) in rows:
        params += [repository_id, digest, count, first, last]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO analytics_manifestpulls
                (repository_id, digest, pulls, first_pulled_at, last_pulled_at)
            VALUES {values}
            ON CONFLICT (repository_id, digest) DO UPDATE SET
                pulls = analytics_manifestpulls.pulls + EXCLUDED.pulls,
                first_pulled_at = LEAST(analytics_manifestpulls.first_pulled_at, EXCLUDED.first_pulled_at),
                last_pulled_at = GREATEST(analytics_manifestpulls.last_pulled_at, EXCLUDED.last_pulled_at)
            """,
            params,
        )


def _upsert_days(days: dict[tuple[int, str, object], int]) -> None:
    rows = sorted(days.items())
    if not rows:
        return
    values = ", ".join(["(%s, %s, %s::date, %s)"] * len(rows))
    params: list[object] = []
    for (repository_id, digest, day), count in rows:
        params += [repository_id, digest, day, count]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO analytics_manifestpullday (repository_id, digest, day, pulls)
            VALUES {values}
            ON CONFLICT (repository_id, digest, day) DO UPDATE SET
                pulls = analytics_manifestpullday.pulls + EXCLUDED.pulls
            """,
            params,
        )
