"""`make run` serves as a deployment would: DEBUG off, a SECRET_KEY made once under var/ and reused,
ALLOWED_HOSTS set, static files still served; with DEBUG off an error shows nothing of the settings."""

from __future__ import annotations

import importlib.util
import json
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


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """manage.py as pasted into a new shell: nothing of this process's settings, only PATH and `env`."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env={"PATH": os.environ["PATH"], **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_run_writes_the_settings_it_runs_with_owner_only(run_demo, tmp_path):
    var = tmp_path / "var"
    values = run_demo.demo_settings(var, {"PATH": "/bin", "LAYERLENS_FERNET_KEYS": "k1", "HOME": "/root"})
    path = var / "run.env"
    run_demo.run_env_write(path, values)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    written = dict(line.split("=", 1) for line in lines)
    # the demo's settings and what the caller set that the settings read; nothing else of the shell
    assert written == values and written["LAYERLENS_FERNET_KEYS"] == "k1"
    assert written["DEBUG"] == "0" and written["SECRET_KEY"] == (var / "secret_key").read_text().strip()
    assert written["LAYERLENS_ALLOWED_NETWORKS"] == "127.0.0.0/8,::1/128"
    assert "PATH" not in written and "HOME" not in written
    with pytest.raises(ValueError, match="several lines"):
        run_demo.run_env_write(path, {"SECRET_KEY": "a\nb"})


def test_manage_py_without_settings_says_what_to_do_in_one_line(tmp_path):
    done = _manage("report", "--json", env={"LAYERLENS_ENV_FILE": str(tmp_path / "run.env")})
    assert done.returncode != 0 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "SECRET_KEY" in done.stderr and "make run" in done.stderr


@pytest.mark.django_db
def test_manage_py_reads_the_settings_make_run_wrote_and_the_environment_wins(run_demo, tmp_path):
    from django.db import connection

    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    values = run_demo.demo_settings(
        tmp_path / "var",
        {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
            "LAYERLENS_REDIS_URL": django_settings.CELERY_BROKER_URL,
        },
    )
    path = tmp_path / "var" / "run.env"
    run_demo.run_env_write(path, values)
    env = {"LAYERLENS_ENV_FILE": str(path)}
    done = _manage("report", "--json", env=env)  # as the README shows it
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"] == 0
    code = "from django.conf import settings as s; print(s.DEBUG, s.LAYERLENS_ALLOWED_NETWORKS, s.LOG_FORMAT)"
    shown = _manage("shell", "--no-imports", "-c", code, env=env)
    assert shown.stdout.split() == ["False", "['127.0.0.0/8',", "'::1/128']", "plain"], shown.stderr
    shown = _manage("shell", "--no-imports", "-c", code, env={**env, "LOG_FORMAT": "json"})
    assert shown.stdout.split()[-1] == "json", shown.stderr
