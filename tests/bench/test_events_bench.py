"""The events benchmark at a small size: pushes are followed, the burst is stored and applied, the
figures are printed; and what it says is checked in its database with SQL of the test's own."""

import json
import os
import subprocess
import sys

import psycopg
import pytest

pytestmark = [pytest.mark.integration]

DATABASE = f"layerlens_bench_events_test_{os.getpid()}"
REDIS = os.environ.get("LAYERLENS_TEST_EVENTS_REDIS_URL", "redis://127.0.0.1:6379/12")
PUSHES = 4
BURST = 60


@pytest.fixture
def bench_database():
    yield DATABASE
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def test_events_bench_follows_pushes_and_applies_the_whole_burst(bench_database, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = tmp_path / "events.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.events", "--pushes", str(PUSHES), "--burst", str(BURST),
            "--connections", "4", "--database", bench_database, "--redis", REDIS, "--json", str(out),
        ],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["latency"]["latencies_s"]) == PUSHES
    assert result["full_scan"]["equal"] and result["full_scan"]["tags_followed"] == PUSHES
    assert result["burst"]["wrk"]["accepted"] == BURST and result["burst"]["wrk"]["refused"] == 0
    for table in ("cpu_ms_per_push", "cpu_ms_per_accepted_event", "cpu_ms_per_applied_event"):
        assert result[table]["web"] > 0 and result[table]["postgres"] > 0, table
    for heading in ("## push to visible", "## inbox: a burst of 60", "## CPU per event"):
        assert heading in done.stdout, heading

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{bench_database}") as conn:
        followed = conn.execute("SELECT id FROM analytics_registry WHERE name = 'followed'").fetchone()[0]
        tags = conn.execute(
            "SELECT count(*) FROM analytics_tag t JOIN analytics_repository r ON r.id = t.repository_id "
            "WHERE r.registry_id = %s AND t.removed_at IS NULL",
            [followed],
        ).fetchone()[0]
        pulls, unapplied, keys = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE applied_at IS NULL), count(DISTINCT key) "
            "FROM analytics_registryevent WHERE registry_id = %s AND action = 'pull'",
            [followed],
        ).fetchone()
        counted = conn.execute(
            "SELECT coalesce(sum(p.pulls), 0) FROM analytics_manifestpulls p "
            "JOIN analytics_repository r ON r.id = p.repository_id WHERE r.registry_id = %s",
            [followed],
        ).fetchone()[0]
    assert tags == PUSHES
    # every event of the burst stored once, under its own id, and applied; the pushes made no pulls
    assert (pulls, unapplied, keys, counted) == (BURST, 0, BURST, BURST)
