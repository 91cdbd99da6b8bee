"""Management commands, against the same hand-made data as the API tests."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics.models import Registry, Scan
from tests.api.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _run(*args, stdin: str | None = None, monkeypatch=None) -> str:
    out = io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_report_json_prints_the_apis_summary(world, client_user):
    body = json.loads(_run("report", "--json", "--registry", "127.0.0.1:5999"))
    assert body == client_user.get("/api/v1/summary/", {"registry": "127.0.0.1:5999"}).json()
    assert {k: body[k] for k in ("images", "distinct_layers", "logical_bytes", "stored_bytes")} == {
        "images": 2,
        "distinct_layers": 3,
        "logical_bytes": 28_200,
        "stored_bytes": 18_200,
    }
    assert body["saved_bytes"] == 10_000 and body["dedup_ratio"] == pytest.approx(1.5495, abs=1e-4)


def test_report_table_shows_human_and_raw_sizes(world):
    text = _run("report", "--namespace", "team")
    assert "28,200 B" in text and "28.2 kB" in text and "1.55x" in text


def test_report_of_unknown_repository_is_a_command_error(world):
    with pytest.raises(CommandError, match="no repository"):
        _run("report", "--repository", "nope/nope")


def test_registry_add_reads_password_from_stdin_and_list_never_prints_it(db, monkeypatch):
    out = _run(
        "registry",
        "add",
        "http://127.0.0.1:5997",
        "--name",
        "local",
        "--username",
        "bot",
        "--password-stdin",
        "--track",
        "--interval",
        "900",
        stdin=PASSWORD + "\n",
        monkeypatch=monkeypatch,
    )
    assert PASSWORD not in out
    registry = Registry.objects.get(name="local")
    assert registry.get_password() == PASSWORD and registry.tracked
    assert registry.scan_interval.total_seconds() == 900
    listing = _run("registry", "list")
    assert "local" in listing and "900s" in listing and " set " in listing
    assert PASSWORD not in listing and registry.password_encrypted not in listing


def test_registry_add_rejects_a_repository_url(db):
    with pytest.raises(CommandError):
        _run("registry", "add", "http://127.0.0.1:5997/team/app")


def test_scan_waits_for_workers_and_times_out_with_a_hint(
    world, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(CommandError, match="is a worker running"):
            _run("scan", "127.0.0.1:5999/team/app", "--timeout", "0.2", "--poll", "0.05", "--no-progress")
    scan = Scan.objects.get()
    assert (scan.kind, scan.trigger, scan.repository.name) == ("repository", "cli", "team/app")
    assert sent_tasks == [("workers.tasks.scan_repository", [scan.id])]


def test_scan_inline_of_unreachable_registry_fails_with_its_message(db):
    with pytest.raises(CommandError, match="failed"):
        _run("scan", "http://127.0.0.1:1", "--inline", "--no-progress")
    scan = Scan.objects.get()
    assert scan.status == "failed" and scan.errors_count == 1


def test_demo_user_is_idempotent(db):
    from django.contrib.auth import get_user_model

    _run("demo_user", "--username", "demo", "--password", "one")
    _run("demo_user", "--username", "demo", "--password", "two")
    user = get_user_model().objects.get(username="demo")
    assert user.is_staff and user.is_superuser and user.check_password("two")


def test_openapi_schema_generates_without_warnings(tmp_path):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    text = target.read_text()
    for path in (
        "/api/v1/summary/",
        "/api/v1/images/{id}/history/",
        "/api/v1/layers/{digest}/images/",
        "/api/v1/scans/{id}/errors/",
        "/api/v1/tags/{id}/events/",
        "/api/v1/policies/",
        "/api/v1/policies/{id}/series/",
    ):
        assert path + ":" in text
    assert "password_encrypted" not in text


def test_scan_progress_into_a_log_is_plain_lines_and_a_last_one(
    world, sent_tasks, django_capture_on_commit_callbacks, monkeypatch
):
    """Standard error not a terminal (a pipe, a log file): no bar redrawn with carriage returns, a line
    every --progress-every seconds and the final state last."""
    log = io.StringIO()  # not a TTY, as a pipe is not
    monkeypatch.setattr("sys.stderr", log)
    polls = []

    def sleep(seconds: float) -> None:  # a worker finishing the scan after a few polls
        polls.append(seconds)
        if len(polls) == 3:
            Scan.objects.update(status=Scan.Status.SUCCEEDED, repositories_total=1, repositories_done=1)

    monkeypatch.setattr("analytics.management.commands.scan.time.sleep", sleep)
    err = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "scan",
            "127.0.0.1:5999/team/app",
            "--poll",
            "0.01",
            "--progress-every",
            "0",
            stdout=io.StringIO(),
            stderr=err,
        )
    text = log.getvalue() + err.getvalue()
    assert "\r" not in text
    lines = err.getvalue().splitlines()
    scan_id = Scan.objects.get().id
    assert lines[1:] == [f"scan {scan_id} queued: repositories 0/0, tags 0/0"] * 3 + [
        f"scan {scan_id} succeeded: repositories 1/1, tags 0/0"
    ]


def test_report_of_unknown_namespace_names_the_namespaces_there_are(world):
    with pytest.raises(CommandError) as raised:
        _run("report", "--registry", "127.0.0.1:5999", "--namespace", "nope")
    assert str(raised.value) == "no namespace 'nope' in 127.0.0.1:5999; namespaces: team"
    assert raised.value.returncode == 1
    assert "images" in _run("report", "--registry", "127.0.0.1:5999", "--namespace", "team/")


def test_report_of_unknown_engine_is_one_line(db):
    with pytest.raises(CommandError, match=r"^no engine 'unix:///nowhere.sock'; engines scanned: none"):
        _run("report", "--engine", "unix:///nowhere.sock")
