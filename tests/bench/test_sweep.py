"""The endpoint sweep at a small size: every GET path of the schema and every /ui/ pattern is visited,
and what is not a 2xx is reported as an error."""

import json
import os
import subprocess
import sys

import psycopg
import pytest

from bench import sweep

DATABASE = f"layerlens_sweep_test_{os.getpid()}"
REDIS = os.environ.get("LAYERLENS_TEST_SWEEP_REDIS_URL", "redis://127.0.0.1:6379/13")
MISSING = "/api/v1/images/999999999/"


@pytest.fixture
def small_database():
    yield DATABASE
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["BENCH_REDIS_URL"] = REDIS
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, env=env, check=False
    )


def _schema_get_paths() -> set[str]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {path for path, operations in schema["paths"].items() if "get" in operations}


def _ui_routes() -> set[str]:
    from analytics.web.urls import urlpatterns

    return {f"/ui/{p.pattern}" for p in urlpatterns}


def test_sweep_visits_every_get_path_and_page_and_reports_errors(small_database, tmp_path):
    done = _run("-m", "bench.generate", "--images", "1000", "--database", small_database)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "sweep.json"
    done = _run(
        "-m", "bench.sweep", "--database", small_database, "--runs", "1", "--load-seconds", "1",
        "--connections", "2", "--seed-missing", "--also", MISSING, "--json", str(out),
    )  # fmt: skip
    # the one path that cannot answer 2xx makes the run fail, and is named in the output
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["skipped"] == []
    visited = set(result["visited"])
    assert _schema_get_paths() - visited == set()
    assert _ui_routes() - visited == set()
    rows = {r["request"]: r for r in result["requests"]}
    assert rows[MISSING]["status"] == "404" and rows[MISSING]["error_statuses"] == [404]
    assert result["errors"] == [MISSING], result["errors"]
    assert f"errors (non-2xx): {MISSING} 404" in done.stdout
    assert f"| `{MISSING}` | 404 |" in done.stdout and "ERROR" in done.stdout
    # registry variants where a registry filter is accepted, on the API and the pages
    assert "/api/v1/images/?registry=" in rows and "/ui/layers/?registry=" in rows
    assert rows["/ui/logout/"]["status"] == "302" and not rows["/ui/logout/"]["error_statuses"]
    assert [r["path"] for r in result["load"]] == list(sweep.LOAD_PATHS)
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in result["load"])


def test_a_path_parameter_the_sweep_cannot_fill_is_an_error_not_a_skip():
    schema = {"paths": {"/api/v1/gadgets/{id}/": {"get": {"parameters": [{"name": "id", "in": "path"}]}}}}
    with pytest.raises(LookupError, match="API_PICKS"):
        sweep.api_requests(schema, sweep.Picks(registry=1))
    required = {"get": {"parameters": [{"name": "colour", "in": "query", "required": True}]}}
    with pytest.raises(LookupError, match="QUERY_PICKS"):
        sweep.api_requests({"paths": {"/api/v1/gadgets/": required}}, sweep.Picks(registry=1))
    with pytest.raises(LookupError, match="UI_PICKS"):
        sweep.ui_requests(["gadgets/<int:pk>/"], sweep.Picks())


def test_non_2xx_is_an_error_and_slow_is_flagged():
    ok = sweep.Request("/a/", "/a/", "api", statuses=[200, 200, 200], sizes=[1, 1, 1], ms=[10, 20, 900])
    bad = sweep.Request("/b/", "/b/", "api", statuses=[200, 503, 200], sizes=[1, 1, 1], ms=[1, 1, 1])
    logout = sweep.Request("/c/", "/c/", "logout", "POST", expect=302, statuses=[302], sizes=[0], ms=[1])
    rows = [sweep.summarise(r) for r in (ok, bad, logout)]
    assert rows[0]["error_statuses"] == [] and rows[0]["slow"]  # p99 over 500 ms
    assert rows[1]["error_statuses"] == [503] and rows[1]["status"] == "200/503" and not rows[1]["slow"]
    assert rows[2]["error_statuses"] == []
    text = sweep.table(rows)
    assert text.index("`/a/`") < text.index("`/b/`")  # slowest first
    assert "| `/b/` | 200/503 |" in text and "ERROR" in text.split("`/b/`")[1].split("\n")[0]
