"""`scripts/services.sh start --fresh-test-db`, which `make test` runs first: a test database left by an
interrupted run is dropped, even with a connection still open to it (a worker that outlived its run),
and the project's database exists afterwards, so the migrations check has a history to read."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from harness.services import drop_database, ensure_database

ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgresql://postgres@127.0.0.1:5432"


def _exists(name: str) -> bool:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


@pytest.fixture
def names():
    name = f"ll_services_{uuid.uuid4().hex[:8]}"
    yield name, f"test_{name}"
    for db in (name, f"test_{name}"):
        drop_database(db)


def test_an_interrupted_runs_test_database_is_dropped_and_the_database_made(names):
    name, test_name = names
    env = {**os.environ, "DATABASE_URL": f"{SERVER}/{name}"}
    ensure_database(test_name)
    leftover = psycopg.connect(f"{SERVER}/{test_name}", autocommit=True)  # still connected
    try:
        done = subprocess.run(
            ["scripts/services.sh", "start", "--create-db", "--fresh-test-db"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        leftover.close()
    assert done.returncode == 0, done.stderr
    assert not _exists(test_name)
    assert _exists(name)
