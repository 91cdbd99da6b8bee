"""The access log leaves out a registry event the receiver accepted, and keeps every other request: the
served entry (`config.wsgi.application`) marks only its 202s, and gunicorn's logger as the project
configures it (config/gunicorn_conf.py's `logger_class`) writes no line for a marked request."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from gunicorn.config import Config

from analytics.infra.logs import ACCESS_UNLOGGED
from analytics.infra.statements import web_statement_timeout_install
from analytics.models import Registry
from config.gunicorn_logger import AccessLogger

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
DISTRIBUTION = "application/vnd.docker.distribution.events.v1+json"
SECRET = "s3cret-for-tests"


@pytest.fixture(autouse=True)
def _no_tasks(monkeypatch):
    monkeypatch.setattr("analytics.events.inbox.events_apply_soon", lambda *, registry_id: None)


@pytest.fixture
def followed(db) -> int:
    row = Registry.objects.create(name="followed", url="http://127.0.0.1:5999")
    row.set_events_secret(SECRET)
    row.save()
    return row.id


def serve(registry_id: int, body: bytes, authorization: str) -> tuple[str, dict]:
    """One request through the web's WSGI application (Django's request signals cut, as in
    tests/events/test_receiver_entry_points.py); its status and the environ the server would log."""
    import config.wsgi

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/api/v1/registries/{registry_id}/events/",
        "QUERY_STRING": "",
        "CONTENT_TYPE": DISTRIBUTION,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": authorization,
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
    }
    status: list[str] = []
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        b"".join(config.wsgi.application(environ, lambda s, h, e=None: status.append(s)))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        web_statement_timeout_install(0)
    return status[0], environ


def test_only_accepted_events_are_marked_for_no_access_line(followed, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    push = (FIXTURES / "distribution_push_manifest.json").read_bytes()
    status, environ = serve(followed, push, f"Bearer {SECRET}")
    assert status.startswith("202") and environ.get(ACCESS_UNLOGGED) is True
    for body, authorization, code in [
        (push, "Bearer wrong", "401"),
        (b"{not json", f"Bearer {SECRET}", "400"),
    ]:
        status, environ = serve(followed, body, authorization)
        assert status.startswith(code) and ACCESS_UNLOGGED not in environ


def _logged(tmp_path: Path, environ: dict, status: str) -> str:
    path = tmp_path / "access.log"
    config = Config()
    config.set("accesslog", str(path))
    logger = AccessLogger(config)
    response = SimpleNamespace(status=status, headers=[], sent=52)
    environ = {"RAW_URI": environ["PATH_INFO"], **environ}
    logger.access(response, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=3))
    for handler in logger.access_log.handlers:
        handler.flush()
    return path.read_text()


def test_the_logger_skips_marked_requests_and_logs_the_rest(tmp_path):
    request = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/registries/1/events/",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    assert _logged(tmp_path, {**request, ACCESS_UNLOGGED: True}, "202 Accepted") == ""
    line = _logged(tmp_path, request, "401 Unauthorized")
    assert '"POST /api/v1/registries/1/events/ HTTP/1.1" 401 52' in line


def test_every_start_uses_the_logger():
    import runpy

    conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "config" / "gunicorn_conf.py"))
    assert conf["logger_class"] == "config.gunicorn_logger.AccessLogger" and conf["accesslog"] == "-"
