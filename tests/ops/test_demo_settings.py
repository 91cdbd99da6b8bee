"""`make run` serves as a deployment would: DEBUG off, a SECRET_KEY made once under var/ and reused,
ALLOWED_HOSTS set, static files still served; with DEBUG off an error shows nothing of the settings."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

ROOT = django_settings.BASE_DIR


@pytest.fixture(scope="module")
def run_demo():
    spec = importlib.util.spec_from_file_location("run_demo", ROOT / "scripts" / "run_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_runs_with_debug_off_and_a_secret_key_made_once(run_demo, tmp_path):
    var = tmp_path / "var"
    env = run_demo.demo_env(var, {"PATH": os.environ["PATH"]})
    key_file = var / "secret_key"
    assert env["DEBUG"] == "0" and env["ALLOWED_HOSTS"] == "127.0.0.1,localhost"
    assert len(env["SECRET_KEY"]) >= 50 and key_file.read_text().strip() == env["SECRET_KEY"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert run_demo.demo_env(var, {})["SECRET_KEY"] == env["SECRET_KEY"]  # reused, not remade
    assert run_demo.demo_env(var, {"SECRET_KEY": "given", "DEBUG": "1"})["SECRET_KEY"] == "given"

    key = env["SECRET_KEY"]
    code = f"import config.settings as s; print(s.DEBUG, s.ALLOWED_HOSTS, s.SECRET_KEY == {key!r})"
    loaded = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["False", "['127.0.0.1',", "'localhost']", "True"]


def test_the_repository_ignores_var():
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "var/secret_key"], cwd=ROOT, capture_output=True, check=False
    )
    assert ignored.returncode == 0


@pytest.mark.django_db
def test_with_debug_off_an_error_is_a_plain_500_and_static_files_are_served(
    django_user_model, settings, monkeypatch
):
    settings.DEBUG = False
    user = django_user_model.objects.create_user("reader")
    monkeypatch.setattr("analytics.api.content.dedup_summary", lambda **kw: 1 / 0)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)
    response = client.get("/api/v1/summary/")
    body = response.content.decode()
    assert response.status_code == 500 and len(body) < 1000
    for leak in ("SECRET_KEY", "DATABASE", "Traceback", "ZeroDivisionError", str(ROOT)):
        assert leak not in body
    static = client.get("/static/web/pages.css")
    assert static.status_code == 200 and b"".join(static.streaming_content)
