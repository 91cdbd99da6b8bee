"""Web requests spend at most WEB_STATEMENT_TIMEOUT_SECONDS (30) on one SQL statement: PostgreSQL's
statement_timeout is set on every connection a web process (config.wsgi, config.asgi) opens, never in a
Celery worker or a command, and a cancelled statement is a 503 saying how to narrow the question."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection, connections, transaction

from analytics.infra.statements import is_statement_timeout, web_statement_timeout_install

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
SHOW = (
    "from django.db import connection\n"
    "with connection.cursor() as c:\n"
    "    c.execute('SHOW statement_timeout')\n"
    "    timeout = c.fetchone()[0]\n"
    "    c.execute('SHOW jit')\n"
    "    print(timeout, c.fetchone()[0])\n"
)


def _slow(*args, **kwargs):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(2)")


@pytest.fixture
def short_timeout(settings):
    """This test's connection cancels a statement after 100 ms, until the test's savepoint is undone."""
    settings.WEB_STATEMENT_TIMEOUT_SECONDS = 0.1
    sid = transaction.savepoint()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '100ms'")
    yield
    transaction.savepoint_rollback(sid)


def _process(prelude: str, **env: str) -> str:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    environ = {k: v for k, v in os.environ.items() if k != "WEB_STATEMENT_TIMEOUT_SECONDS"}
    environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings_test", **env)
    done = subprocess.run(
        [sys.executable, "-c", prelude + SHOW], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_web_process_bounds_its_statements_and_a_worker_does_not():
    # the web also compiles no query (jit off); a worker keeps the server's default (on)
    assert _process("import config.wsgi\n") == "30s off"
    assert _process("import config.asgi\n", WEB_STATEMENT_TIMEOUT_SECONDS="7") == "7s off"
    assert _process("import config.wsgi\n", WEB_STATEMENT_TIMEOUT_SECONDS="0") == "0 off"
    worker = "import django\ndjango.setup()\nimport config.celery\nimport workers.tasks\n"
    assert _process(worker) == "0 on"


def test_the_bound_is_set_on_each_new_connection_and_cancels_a_long_statement():
    web_statement_timeout_install(0.2)
    fresh = connections.create_connection("default")
    try:
        with fresh.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "200ms"
            with pytest.raises(Exception) as cancelled:
                cursor.execute("SELECT pg_sleep(2)")
        assert is_statement_timeout(cancelled.value)
    finally:
        fresh.close()
        web_statement_timeout_install(0)


def test_a_cancelled_statement_is_a_503_in_the_api(world, client_user, short_timeout, monkeypatch):
    monkeypatch.setattr("analytics.api.content.dedup_summary", _slow)
    response = client_user.get("/api/v1/summary/", {"registry": world.registry.id})
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "WEB_STATEMENT_TIMEOUT_SECONDS" in detail and "0.1 s" in detail and "narrow it" in detail


def test_a_cancelled_statement_is_a_503_on_a_page(world, user, client, short_timeout, monkeypatch):
    monkeypatch.setattr("analytics.web.pages.overview", _slow)
    client.force_login(user)
    response = client.get("/ui/")
    assert response.status_code == 503 and "WEB_STATEMENT_TIMEOUT_SECONDS" in response.content.decode()
