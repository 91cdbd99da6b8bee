"""Apply the inbox: a registry's pending events, repository by repository, in the order they arrived.

Events say what changed, but arrive late, twice or out of order (distribution's own docs: "order is
not guaranteed"), so an event is taken as "look again here", never as the new state: the tags an
event concerns are read from the registry now, with the scans' machinery (`snapshot_repository` with
the known-digest shortcuts), and ingested like a one-tag scan of each. Whatever order the events came
in, the last read of a tag is the registry's state of it, which is what a full scan would record.

- push, mount of a manifest with a tag: read that tag;
- delete of a manifest digest: distribution untags every tag naming it; read the tags that named it;
  delete of a tag (distribution 2.8 sends one per tag it untagged), of a repository: read those tags;
- a tag the registry no longer has (404 on GET and on HEAD) is gone: removed, with its `TagEvent`,
  through the normal ingest path, so holdings and every maintained figure follow;
- pulls: counted (`pulls.pulls_record`) in the transaction that marks them applied, so a retry never
  counts them twice; blobs and manifests pushed by digest alone change nothing a scan would see;
- a tag whose read fails with what may pass (a 5xx) keeps the batch pending, tried again with the tasks'
  backoff, until its oldest event is `EVENTS_TRANSIENT_RETRY_SECONDS` old: then the events fail with it;
- once a registry's events are all applied and something changed: the kept answers are recomputed and
  the trend points of the registry and the changed repositories recorded (`events_figures_record`), and
  its saved cleanup policies evaluated (`analytics.policies.evaluate`).

A repository is applied under its scan lease (`Repository.scan_lease_until`), so never by two workers
at once nor beside a scan of it; a busy one is left pending for the next task or the sweeper.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from analytics.events.formats import BLOB, DELETE, MOUNT, PULL, PUSH
from analytics.events.pulls import pulls_record
from analytics.infra import telemetry
from analytics.infra.text import printable
from analytics.ingest.answers import answers_refresh
from analytics.ingest.chains import chains_refresh
from analytics.ingest.known import configs_known, manifests_known
from analytics.ingest.snapshot import snapshot_ingest
from analytics.ingest.trends import events_figures_record
from analytics.models import Registry, RegistryEvent, Repository, Tag
from analytics.policies.evaluate import registry_policies_evaluate
from analytics.registries import repositories_ensure
from analytics.scans.clients import registry_client_shared
from analytics.scans.runtime import Heartbeat, metrics_sink
from analytics.scans.state import commit_async, repository_lease_acquire, repository_lease_release
from workers.registry.errors import NotFoundError, RegistryError
from workers.registry.records import RepositorySnapshot
from workers.registry.snapshot import snapshot_repository

logger = logging.getLogger(__name__)

Outcome = RegistryEvent.Outcome


@dataclass
class Applied:
    """What one call applied: events marked, repositories left for later (busy, or more pending than
    one batch), and whether the registry could not be read now (a transient error: retry)."""

    events: int = 0
    changed: int = 0
    changed_repositories: set[int] = field(default_factory=set)
    later: list[str] = field(default_factory=list)
    transient: RegistryError | None = None


# A repository's batches applied under one lease before the other repositories get their turn.
_BATCHES_PER_LEASE = 4
# How often a task that found nothing left looks again while it holds its key (events_pending_until):
# an event stored then waits about this long.
PENDING_LOOK_SECONDS = 0.02


def registry_events_apply(*, registry_id: int) -> Applied:
    """Apply the registry's pending events, each repository's in one batch of at most
    `EVENTS_APPLY_BATCH` (the rest is `later`)."""
    result = Applied()
    registry = Registry.objects.filter(id=registry_id).first()
    if registry is None:  # deleted since: its events went with it
        return result
    names = list(
        RegistryEvent.objects.filter(registry_id=registry_id, applied_at__isnull=True)
        .order_by()
        .values_list("repository", flat=True)
        .distinct()
    )
    for name in sorted(names):
        try:
            repository_events_apply(registry=registry, name=name, into=result)
        except RegistryError as exc:
            if not getattr(exc, "transient", False):
                raise
            logger.info("events of %s/%s wait: the registry did not answer (%s)", registry.name, name, exc)
            result.transient = exc
            result.later.append(name)
    if result.changed and not result.later:
        # As after a stand-alone repository scan: the registry's kept answers (stale bases, missed
        # savings) are computed now, in the worker, rather than by the next reader, and its trend points
        # recorded. Not while events still wait: the last batch of a burst does it once. A failure
        # leaves the answers to the next reader and the trend point to the next change.
        try:
            answers_refresh(registry_id=registry_id)
        except DatabaseError:
            logger.exception("the kept answers of registry %s were not refreshed", registry_id)
        try:
            events_figures_record(registry_id=registry_id, repository_ids=sorted(result.changed_repositories))
        except DatabaseError:
            logger.exception("the trend points of registry %s were not recorded", registry_id)
        # Its saved cleanup policies too: one point each per content version, failures recorded as points.
        try:
            registry_policies_evaluate(registry_id=registry_id)
        except DatabaseError:
            logger.exception("the cleanup policies of registry %s were not evaluated", registry_id)
    return result


def repository_events_apply(*, registry: Registry, name: str, into: Applied) -> None:
    """1. Take the repository's lease (busy: left for later).
    2. Read the tags the pending events concern, outside any transaction.
    3. In one transaction: ingest what was read (tags gone removed), count the pulls, mark the events.
    """
    repository = _repository(registry=registry, name=name)
    if not repository_lease_acquire(repository, 0):
        into.later.append(name)
        return
    heartbeat = Heartbeat(scan_id=None, repository_id=repository.id)
    try:
        heartbeat.start()
        limit = settings.EVENTS_APPLY_BATCH
        pending = RegistryEvent.objects.filter(registry=registry, repository=name, applied_at__isnull=True)
        # Events that arrive while a batch is applied are taken by the holder of the lease, in more
        # batches, rather than by the task that found the repository busy and must wait to retry.
        for batch in range(_BATCHES_PER_LEASE):
            events = list(pending.order_by("id")[: limit + 1])
            if len(events) > limit:
                events = events[:limit]
                if batch == _BATCHES_PER_LEASE - 1:
                    into.later.append(name)
            if not events:
                return
            tags = _tags_concerned(repository=repository, events=events)
            retry = _retrying(events)
            read = _read(registry=registry, repository=repository, tags=tags, retry=retry) if tags else None
            if read is not None and (read.gone or read.failed) and _settled(events):
                read = _read(registry=registry, repository=repository, tags=tags, retry=retry)
            changed = _record(registry=registry, repository=repository, events=events, read=read)
            into.events += len(events)
            into.changed += changed
            if changed:
                into.changed_repositories.add(repository.id)
    finally:
        heartbeat.__exit__(None, None, None)
        repository_lease_release(repository)


def _repository(*, registry: Registry, name: str) -> Repository:
    """The repository an event names; the registry said it exists, so it is recorded if new."""
    repository_id = repositories_ensure(registry_id=registry.id, names=[name])[name]
    return Repository.objects.select_related("registry").get(id=repository_id)


def _tags_concerned(*, repository: Repository, events: list[RegistryEvent]) -> list[str]:
    """The tags to read again for `events`, in a stable order."""
    tags: set[str] = set()
    deleted_digests: set[str] = set()
    whole = False
    for event in events:
        if event.target == BLOB or event.action == PULL:
            continue
        if event.action in (PUSH, MOUNT):
            if event.tag:
                tags.add(event.tag)
        elif event.action == DELETE:
            if event.tag:
                tags.add(event.tag)
            elif event.digest:
                deleted_digests.add(event.digest)
            else:  # the repository itself (distribution 3)
                whole = True
    current = Tag.objects.filter(repository=repository, removed_at__isnull=True, manifest__isnull=False)
    if whole:
        tags.update(current.values_list("name", flat=True))
    elif deleted_digests:
        tags.update(current.filter(manifest__digest__in=deleted_digests).values_list("name", flat=True))
    return sorted(tags)


@dataclass(frozen=True)
class _Read:
    snapshot: RepositorySnapshot
    gone: frozenset[str]
    failed: dict[str, str]  # tag -> why it could not be read (it keeps what it held)
    error: str = ""  # the whole read failed (permanently): every event of the batch says why


def _retrying(events: list[RegistryEvent]) -> bool:
    """Whether a tag's transient failure still keeps `events` pending: their oldest came less than
    `EVENTS_TRANSIENT_RETRY_SECONDS` ago (a manifest answering 500 for ever must not hold the
    repository's events for ever)."""
    oldest = min(e.received_at for e in events)
    return (timezone.now() - oldest).total_seconds() < settings.EVENTS_TRANSIENT_RETRY_SECONDS


def _settled(events: list[RegistryEvent]) -> bool:
    """Whether a push among `events` is younger than `EVENTS_PUSH_SETTLE_SECONDS`, after waiting until it
    is not: its tags are worth reading again. Distribution notifies a manifest push when the manifest is
    stored, before it links the tag (registry/handlers PutManifest: `manifests.Put`, then `tags.Tag`), so
    an applier that keeps up with its events can read a just-pushed tag before it exists (404: taken
    as gone, or failed when the HEAD after it finds the tag)."""
    pushed = [e.received_at for e in events if e.action in (PUSH, MOUNT) and e.tag]
    if not pushed:
        return False
    wait = settings.EVENTS_PUSH_SETTLE_SECONDS - (timezone.now() - max(pushed)).total_seconds()
    if wait <= 0:
        return False
    time.sleep(min(wait, settings.EVENTS_PUSH_SETTLE_SECONDS))
    return True


def _read(*, registry: Registry, repository: Repository, tags: list[str], retry: bool = True) -> _Read:
    """The tags read from the registry. A tag answered 404 is asked again with a HEAD: only a
    manifest the registry does not have makes the tag gone (a missing config leaves it failed, as a
    scan leaves it). A transient error is raised (the events wait), a tag's too while `retry`; a
    permanent one is returned."""
    try:
        with registry_client_shared(registry) as client:
            snapshot = snapshot_repository(
                client,
                repository.name,
                tags=tags,
                known_manifests=manifests_known,
                known_configs=configs_known,
            )
            gone: set[str] = set()
            failed: dict[str, str] = {}
            for failure in snapshot.failures:
                if failure.reference not in tags:
                    continue  # an index child: the tag's own read stands
                if failure.transient and retry:
                    error = RegistryError(
                        f"{failure.kind}: {failure.message}",
                        registry=registry.name,
                        repository=repository.name,
                        reference=failure.reference,
                    )
                    error.transient = True
                    raise error
                if failure.kind == NotFoundError.__name__:
                    try:
                        client.head_manifest(repository.name, failure.reference)
                    except NotFoundError:
                        gone.add(failure.reference)
                        continue
                failed[failure.reference] = f"{failure.kind}: {failure.message}"
    except RegistryError as exc:
        if getattr(exc, "transient", False):
            raise
        empty = RepositorySnapshot(registry_url=registry.url, repository=repository.name, tags={})
        return _Read(empty, frozenset(), {}, error=f"{type(exc).__name__}: {exc}")
    return _Read(snapshot, frozenset(gone), failed)


def _record(
    *, registry: Registry, repository: Repository, events: list[RegistryEvent], read: _Read | None
) -> int:
    """Ingest, count pulls and mark `events`, in one transaction; the number of tag changes."""
    now = timezone.now()
    changed = 0
    with transaction.atomic():
        # Scan bookkeeping's rule: a crash may lose the last moments of this commit, never tear it,
        # and the events then are pending again, applied again from the registry's state.
        commit_async()
        ids = _claim([e.id for e in events], now=now)
        events = [e for e in events if e.id in ids]  # a slower worker (its lease lost) applied the rest
        if not events:
            return 0
        if read is not None and not read.error:
            result = snapshot_ingest(
                repository=repository, snapshot=read.snapshot, complete=False, gone=read.gone, scanned=False
            )
            changed = result.tag_events
            if result.new_manifests:
                chains_refresh(repository_ids=[repository.id])
        counted = {e.id for e in pulls_record(registry_id=registry.id, events=events)}
        outcomes: dict[tuple[str, str], list[int]] = defaultdict(list)
        for event in events:
            outcomes[_outcome(event, read=read, changed=changed, counted=counted)].append(event.id)
        for (outcome, message), event_ids in outcomes.items():
            RegistryEvent.objects.filter(id__in=event_ids).update(outcome=outcome, message=message)
        if changed or counted:
            Registry.objects.filter(id=registry.id).update(last_event_at=now)
    applied = sum(len(v) for (o, _), v in outcomes.items() if o != Outcome.FAILED)
    sink = metrics_sink()
    sink.add(telemetry.EVENTS_APPLIED, {"registry": registry.name}, applied)
    return changed


def _claim(ids: list[int], *, now) -> set[int]:
    """Mark the events applied, only those still pending (row locks make a second applier wait, then
    find them taken): the ids this transaction applies."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {RegistryEvent._meta.db_table} SET applied_at = %s"
            " WHERE id = ANY(%s) AND applied_at IS NULL RETURNING id",
            [now, ids],
        )
        return {row[0] for row in cursor.fetchall()}


def _outcome(event: RegistryEvent, *, read: _Read | None, changed: int, counted: set[int]) -> tuple[str, str]:
    if event.action == PULL:
        return (Outcome.APPLIED if event.id in counted else Outcome.UNCHANGED), ""
    if event.target == BLOB or read is None or (event.action in (PUSH, MOUNT) and not event.tag):
        return Outcome.UNCHANGED, ""
    if read.error:
        return Outcome.FAILED, printable(read.error)[:2000]
    why = read.failed.get(event.tag) if event.tag else None
    if why is not None:
        return Outcome.FAILED, printable(why)[:2000]
    return (Outcome.APPLIED if changed else Outcome.UNCHANGED), ""


# -- the sweeper -----------------------------------------------------------------------------------------


def events_pending(*, registry_id: int) -> bool:
    """Whether any event of the registry waits to be applied (a probe of the pending index)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {RegistryEvent._meta.db_table}"
            " WHERE registry_id = %s AND applied_at IS NULL)",
            [registry_id],
        )
        return bool(cursor.fetchone()[0])


def events_pending_until(*, registry_id: int, until: float) -> bool:
    """Whether an event of the registry waits, looking every `PENDING_LOOK_SECONDS` until `until`
    (`time.time()`; an apply task's promise to hold its key, `inbox.events_apply_soon`): True at the
    first look that finds one, False once `until` has passed with none."""
    while (left := until - time.time()) > 0:
        time.sleep(min(PENDING_LOOK_SECONDS, left))
        if events_pending(registry_id=registry_id):
            return True
    return False


def registries_waiting(*, now=None) -> list[int]:
    """Registries with an event pending longer than `EVENTS_SWEEP_AFTER_SECONDS`: their task was lost
    (a worker killed, the broker restarted) or their repository was busy; the sweeper sends them again."""
    now = now or timezone.now()
    before = now - timedelta(seconds=settings.EVENTS_SWEEP_AFTER_SECONDS)
    with connection.cursor() as cursor:
        # one probe of the pending-age index per registry, not a scan of the pending events
        cursor.execute(
            f"""
            SELECT r.id FROM {Registry._meta.db_table} r
            WHERE EXISTS (
                SELECT 1 FROM {RegistryEvent._meta.db_table} e
                WHERE e.registry_id = r.id AND e.applied_at IS NULL AND e.received_at < %s
            )
            ORDER BY r.id
            """,
            [before],
        )
        return [row[0] for row in cursor.fetchall()]


def events_forget(*, now=None, batch: int = 10_000) -> int:
    """Delete applied events older than `EVENTS_KEEP_DAYS`, a batch at a time (the record of what was
    done, and the window within which a redelivery is known as a duplicate)."""
    now = now or timezone.now()
    before = now - timedelta(days=settings.EVENTS_KEEP_DAYS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            DELETE FROM {RegistryEvent._meta.db_table} WHERE id IN (
                SELECT id FROM {RegistryEvent._meta.db_table}
                WHERE applied_at IS NOT NULL AND applied_at < %s
                LIMIT %s
            )
            """,
            [before, batch],
        )
        return cursor.rowcount
