"""Whatever a registry lists or a scan meets, the scan records an error and moves on: invalid catalog
names are errors on the registry scan (never rows), odd tag lists fail their repository alone, and an
unexpected exception fails its scan at once with what it was, never leaving it running."""

from __future__ import annotations

import time

import pytest
from django.db import DataError

from analytics.models import Repository, Scan, ScanError, Tag
from analytics.scans import registry_run, repository_run
from analytics.scans.repository_run import scan_readers_close
from analytics.scans.start import scan_start, scan_start_inline
from tests.support.hostile_registry import BAD_TAGS, hostile_registry
from workers import tasks
from workers.registry import client as client_module

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def readers_closed():
    yield
    scan_readers_close()  # the batch task's reader threads' connections, before the database is dropped


def test_invalid_catalog_names_are_named_errors_of_the_registry_scan_and_never_rows():
    with hostile_registry(names=True) as reg:
        scan = scan_start_inline(target=reg.base_url)

    assert scan.status == Scan.Status.PARTIAL  # ended, with its errors; not stuck, not failed
    names = set(Repository.objects.values_list("name", flat=True))
    assert "names/ok" in names and "good/app" in names
    assert not any(n.startswith(("xxx", "bad", "Upper", "empty")) for n in names)
    errors = list(ScanError.objects.filter(scan=scan, kind="InvalidRepositoryName").order_by("id"))
    messages = "\n".join(e.message for e in errors)
    assert len(errors) == 4
    assert "(300 characters)" in messages and "longer than 255 characters" in messages
    assert "'bad\\x00name'" in messages  # named, escaped
    assert "uppercase is not allowed" in messages and "empty path component" in messages
    by_repo = {c.repository.name: c for c in scan.children.select_related("repository")}
    assert by_repo["names/ok"].status == Scan.Status.SUCCEEDED
    assert scan.errors_count >= 4


def test_long_and_nul_tags_fail_alone_and_are_stored_readably(settings):
    with hostile_registry() as reg:
        scan = scan_start_inline(target=f"{reg.base_url}/abuse/tags")
    assert scan.status == Scan.Status.PARTIAL, scan.message
    assert set(Tag.objects.filter(repository__name="abuse/tags").values_list("name", flat=True)) == {"v1"}
    refs = set(ScanError.objects.filter(scan=scan).values_list("reference", flat=True))
    assert refs == {BAD_TAGS[0][:255], "bad\\x00tag"}


def test_an_endless_tag_list_fails_that_repository_with_the_cap_in_its_message(monkeypatch):
    monkeypatch.setattr(client_module, "MAX_TAGS", 2000)
    with hostile_registry() as reg:
        scan = scan_start_inline(target=f"{reg.base_url}/abuse/endless")
    assert scan.status == Scan.Status.FAILED
    assert "goes on past 2,000 entries" in scan.message
    assert ScanError.objects.filter(scan=scan, kind="ProtocolError").count() == 1


def test_a_header_drip_fails_that_repository_at_the_total_time_limit(settings):
    settings.REGISTRY_TOTAL_TIMEOUT_SECONDS = 1.0
    settings.REGISTRY_RETRIES = 0
    with hostile_registry() as reg:
        scan = scan_start_inline(target=f"{reg.base_url}/abuse/header-drip")
    assert scan.status == Scan.Status.FAILED
    assert "total time limit" in scan.message


def test_an_unexpected_error_while_listing_fails_the_registry_scan_with_what_it_was(monkeypatch):
    def broken(scan, names):
        raise DataError("value too long for type character varying(255)")

    monkeypatch.setattr(registry_run, "_children_create", broken)
    with hostile_registry() as reg:
        scan = scan_start_inline(target=reg.base_url)
    assert scan.status == Scan.Status.FAILED and scan.lease_until is None
    assert "DataError: value too long" in scan.message and "workers" not in scan.message
    assert ScanError.objects.filter(scan=scan, kind="DataError").exists()


def test_an_unexpected_error_in_one_repository_fails_it_alone_and_the_registry_scan_ends(monkeypatch):
    real = repository_run.snapshots_ingest

    def ingest(items):
        # the batch holding it fails, then each repository is ingested alone: only this one fails
        if any(item.repository.name == "hostile/app" for item in items):
            raise ValueError("boom \x00 in a message")
        return real(items)

    monkeypatch.setattr(repository_run, "snapshots_ingest", ingest)
    with hostile_registry() as reg:
        scan = scan_start_inline(target=reg.base_url)
    assert scan.status == Scan.Status.PARTIAL
    by_repo = {c.repository.name: c for c in scan.children.select_related("repository")}
    broken = by_repo["hostile/app"]
    assert broken.status == Scan.Status.FAILED and "ValueError: boom \\x00 in a message" in broken.message
    assert by_repo["good/app"].status == Scan.Status.SUCCEEDED


@pytest.mark.parametrize("task", ["scan_repository", "scan_repositories"])
def test_the_tasks_end_a_scan_an_unexpected_error_stopped(monkeypatch, task):
    monkeypatch.setattr(repository_run, "snapshots_ingest", lambda items: 1 / 0)
    with hostile_registry() as reg:
        scan = scan_start(target=f"{reg.base_url}/good/app", enqueue=False)
        if task == "scan_repository":
            tasks.scan_repository.apply(args=[scan.id]).get()
        else:
            tasks.scan_repositories.apply(args=[[scan.id]]).get()
    scan.refresh_from_db()
    assert scan.status == Scan.Status.FAILED and scan.lease_until is None
    assert scan.message == "stopped by an unexpected error: ZeroDivisionError: division by zero"
    assert Repository.objects.get(id=scan.repository_id).scan_lease_until is None


@pytest.mark.parametrize("task", ["scan_repository", "scan_repositories"])
def test_a_drip_is_cut_at_the_minimum_rate_and_fails_its_scan_untried_again(settings, monkeypatch, task):
    """A tag list dripping 20 bytes a second against 1 KiB in each 1 s window: cut about a second after
    its first bytes, not at the 5 s total time limit, asked for once (no retry by the client, nor by
    the task, nor by the batch's resending), and recorded on the scan."""
    settings.REGISTRY_TOTAL_TIMEOUT_SECONDS = 5.0
    settings.REGISTRY_RETRIES = 3
    settings.REGISTRY_MIN_TRANSFER_BYTES = 1024
    settings.REGISTRY_MIN_TRANSFER_WINDOW_SECONDS = 1.0
    settings.SCAN_RETRY_BACKOFF_SECONDS = 0
    resent = []
    monkeypatch.setattr(tasks.scan_repository, "apply_async", lambda *a, **kw: resent.append((a, kw)))
    with hostile_registry() as reg:
        scan = scan_start(target=f"{reg.base_url}/abuse/drip", enqueue=False)
        t0 = time.monotonic()
        if task == "scan_repository":
            tasks.scan_repository.apply(args=[scan.id]).get()
        else:
            tasks.scan_repositories.apply(args=[[scan.id]]).get()
        seconds = time.monotonic() - t0
        asked = sum("/abuse/drip/tags/list" in path for path in reg.requests)
    scan.refresh_from_db()
    assert seconds < 3.5
    assert asked == 1 and resent == []
    assert scan.status == Scan.Status.FAILED and scan.lease_until is None
    assert "minimum transfer rate" in scan.message
    errors = list(ScanError.objects.filter(scan=scan).values_list("kind", "message"))
    assert len(errors) == 1 and errors[0][0] == "SlowReplyError"
    assert "reply too slow: fewer than 1,024 bytes in 1s (minimum transfer rate)" in errors[0][1]
