"""What a crawl costs everyone else, measured through real workers: how long a one-tag scan of another
registry takes from its start to its end, and how long beat's two tasks wait before they run. Shared
by the queue tests, `bench/queues.py` and `bench/hostile.py`, with what a hostile crawl must come to
(`hostile_problems`); all times are this machine's clock (workers and test alike).

Beat's tasks are sent as beat sends them (`send_task` by name, routed by the settings) and timed by what
they write: `enqueue_due_scans` creates the scan of a repository made due for it (`created_at`),
`requeue_stuck_scans` stamps the scan made stuck for it (`enqueued_at`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.utils import timezone

from analytics.models import ManifestLayer, Repository, Scan, ScanError, Tag
from analytics.scans.start import scan_request_resolve, scan_start
from harness.catalog_registry import (
    AT_CAP_LAYERS,
    DRIP_MANIFEST,
    DRIP_TAGS,
    ENDLESS,
    HOSTILE_REPOSITORIES,
    INVALID_NAMES,
    LAYERS,
    WIDE_LAYERS,
)


def wait_for(predicate, *, timeout: float, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate.__doc__ or predicate}")


def one_tag_scan(target: str, *, timeout: float = 60) -> tuple[Scan, float]:
    """Start a scan of `target` (`host:port/repo:tag`), wait for its end; the scan and its seconds from
    creation to finish."""
    scan = scan_start(target=target)

    def finished():
        """the one-tag scan finished"""
        return Scan.objects.filter(id=scan.id, finished_at__isnull=False).first()

    done = wait_for(finished, timeout=timeout)
    return done, (done.finished_at - done.created_at).total_seconds()


@dataclass
class ControlDelays:
    enqueue_due_scans: float
    requeue_stuck_scans: float


def control_delays(*, due: str, stuck: str, timeout: float = 60) -> ControlDelays:
    """Send beat's two tasks and return how long each waited: `due` and `stuck` are two repositories
    (`host:port/repo`) of a registry other than the crawl's, one made due for `enqueue_due_scans`, one
    given a scan whose worker looks dead for `requeue_stuck_scans`; neither the one a one-tag probe
    scans (a repository is scanned by one worker at a time: a probe would wait for the other's scan).
    Returns once the scans they sent have finished too."""
    due_repo = scan_request_resolve(target=due).repository
    stuck_repo = scan_request_resolve(target=stuck).repository
    assert due_repo is not None and stuck_repo is not None
    Repository.objects.filter(id=due_repo.id).update(
        tracked=True, scan_interval=timedelta(hours=1), next_scan_at=None
    )
    past = timezone.now() - timedelta(seconds=5)
    victim = Scan.objects.create(
        kind=Scan.Kind.REPOSITORY,
        registry=stuck_repo.registry,
        repository=stuck_repo,
        status=Scan.Status.RUNNING,
        started_at=past,
        lease_until=past,
    )
    sent_at = timezone.now()
    current_app.send_task("workers.tasks.enqueue_due_scans")
    current_app.send_task("workers.tasks.requeue_stuck_scans")

    def scheduled():
        """enqueue_due_scans ran"""
        return Scan.objects.filter(repository=due_repo, trigger="schedule", created_at__gte=sent_at).first()

    def swept():
        """requeue_stuck_scans ran"""
        return Scan.objects.filter(id=victim.id, takeovers__gte=1, enqueued_at__gte=sent_at).first()

    created = wait_for(scheduled, timeout=timeout)
    requeued = wait_for(swept, timeout=timeout)
    Repository.objects.filter(id=due_repo.id).update(tracked=False, scan_interval=None)
    assert requeued.enqueued_at is not None

    def settled():
        """the scans the two tasks sent finished (so the next probe finds their repositories free)"""
        return Scan.objects.filter(id__in=[created.id, victim.id], finished_at__isnull=False).count() == 2

    wait_for(settled, timeout=timeout)
    return ControlDelays(
        enqueue_due_scans=(created.created_at - sent_at).total_seconds(),
        requeue_stuck_scans=(requeued.enqueued_at - sent_at).total_seconds(),
    )


# What each hostile repository of the catalog registry (`hostile=True`) comes to in a crawl, as the
# scanner's caps say: (child status, ScanError kind, words its message must hold).
HOSTILE_EXPECTED: dict[str, tuple[str, str, str]] = {
    # workers/registry/client.py MAX_TAGS: the listing stops past 100,000 tags and fails the repository.
    ENDLESS: (Scan.Status.FAILED, "ProtocolError", "tags list goes on past 100,000 entries"),
    # workers/registry/snapshot.py MAX_MANIFEST_LAYERS: that tag fails, the repository's others are read.
    LAYERS: (
        Scan.Status.PARTIAL,
        "ManifestError",
        f"manifest of {WIDE_LAYERS} layers is over the 1024 limit",
    ),
    # REGISTRY_MIN_TRANSFER_BYTES per REGISTRY_MIN_TRANSFER_WINDOW_SECONDS, or the total time limit if
    # that comes first: the reply is cut once, a SlowReplyError that is not retried.
    DRIP_TAGS: (Scan.Status.FAILED, "SlowReplyError", "reply too slow"),
    DRIP_MANIFEST: (Scan.Status.FAILED, "SlowReplyError", "reply too slow"),
}


def hostile_children(crawl: Scan) -> dict[str, Scan]:
    """The crawl's child scans of the hostile repositories, by repository name (those created)."""
    children = Scan.objects.filter(parent=crawl, repository__name__in=HOSTILE_REPOSITORIES)
    return {child.repository.name: child for child in children.select_related("repository")}


def hostile_problems(crawl: Scan) -> list[str]:
    """How a finished hostile crawl differs from what the caps say ([] when it does not): each hostile
    repository finished as `HOSTILE_EXPECTED` with its error row; the `at-cap` tag stored with all its
    1,024 layers; every invalid catalog name an `InvalidRepositoryName` error on the crawl and no
    `Repository` row; the crawl itself finished, not failed."""
    problems = []
    crawl.refresh_from_db()
    if crawl.finished_at is None or crawl.status == Scan.Status.FAILED:
        problems.append(f"the crawl is {crawl.status} (finished at {crawl.finished_at}): {crawl.message}")
    children = hostile_children(crawl)
    for name, (status, kind, words) in HOSTILE_EXPECTED.items():
        child = children.get(name)
        if child is None:
            problems.append(f"{name}: no child scan")
            continue
        errors = list(ScanError.objects.filter(scan=child).values_list("kind", "message"))
        if child.status != status:
            problems.append(f"{name}: {child.status}, not {status} ({child.message[:200]!r}, {errors[:3]})")
        if not any(k == kind and words in m for k, m in errors):
            problems.append(f"{name}: no {kind} error saying {words!r}: {errors[:3]}")
    tags = Tag.objects.filter(repository__registry=crawl.registry, repository__name=LAYERS)
    at_cap = tags.filter(name="at-cap").first()
    layers = ManifestLayer.objects.filter(manifest_id=at_cap.manifest_id).count() if at_cap else None
    if layers != AT_CAP_LAYERS:
        problems.append(f"{LAYERS}:at-cap stored with {layers} layers, not {AT_CAP_LAYERS}")
    if tags.filter(name="wide").exists():
        problems.append(f"{LAYERS}:wide stored as a tag")
    # (A name with a NUL cannot even be asked for: PostgreSQL text holds none. Its error row counts below.)
    storable = [name for name in INVALID_NAMES if "\x00" not in name]
    invalid = Repository.objects.filter(registry=crawl.registry, name__in=storable)
    stored = list(invalid.values_list("name", flat=True))
    if stored:
        problems.append(f"invalid names stored as repositories: {stored}")
    refused = ScanError.objects.filter(scan=crawl, kind="InvalidRepositoryName").count()
    if refused != len(INVALID_NAMES):
        problems.append(f"{refused} InvalidRepositoryName errors on the crawl, not {len(INVALID_NAMES)}")
    return problems
