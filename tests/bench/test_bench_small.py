"""The scale benchmark at a small size: the generator loads and every question runs against it."""

import os
import subprocess
import sys

import psycopg
import pytest

from bench.queries import TARGETS_MS

DATABASE = f"layerlens_bench_test_{os.getpid()}"


@pytest.fixture
def bench_database():
    yield DATABASE
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def _run(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_generator_loads_and_every_question_runs(bench_database):
    out = _run("-m", "bench.generate", "--images", "2000", "--database", bench_database)
    assert "copied" in out and "done in" in out
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{bench_database}") as conn:
        images = conn.execute("SELECT count(*) FROM analytics_manifest WHERE kind = 'image'").fetchone()[0]
        artifacts = conn.execute(
            "SELECT count(*) FROM analytics_manifest WHERE kind = 'artifact'"
        ).fetchone()[0]
        hot = conn.execute("SELECT max(images) FROM analytics_registryblob").fetchone()[0]
        pairs = conn.execute(
            "SELECT count(*) FROM (SELECT diff_id FROM analytics_blob WHERE diff_id <> '' "
            "GROUP BY diff_id HAVING count(*) > 1) d"
        ).fetchone()[0]
    assert images >= 2000 and artifacts > 0 and hot > 50 and pairs >= 0
    out = _run("-m", "bench.queries", "--database", bench_database, "--runs", "1", "--ingest", "100")
    for name in TARGETS_MS:
        assert out.count(name) == 2, name  # before and after the ingest
    assert "ingested 100 images" in out
