"""`manage.py scan engine:` of an engine that does not answer: one line, exit 1, no row left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from analytics.models import Engine, EngineScan

pytestmark = pytest.mark.django_db(transaction=True)


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    db = connection.settings_dict
    env = {
        "PATH": os.environ["PATH"],
        "DEBUG": "1",
        "LOG_FORMAT": "plain",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "LAYERLENS_ENV_FILE": os.devnull,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", ["socket", "port"])
@pytest.mark.parametrize("inline", [True, False])
def test_an_engine_that_does_not_answer_is_one_line_and_no_row(tmp_path, where, inline):
    endpoint = f"unix://{tmp_path}/none.sock" if where == "socket" else f"tcp://127.0.0.1:{_free_port()}"
    args = [
        "scan",
        f"engine:{endpoint}",
        "--allow-internal",
        *(["--inline"] if inline else ["--timeout", "5"]),
    ]
    done = _manage(*args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"CommandError: cannot reach the Docker Engine at {endpoint}: ")
    assert "; check that it runs" in lines[0]
    assert Engine.objects.count() == 0 and EngineScan.objects.count() == 0

    report = _manage("report", "--engine", endpoint)
    assert report.returncode == 1 and report.stdout == ""
    assert report.stderr.strip().splitlines() == [
        f"CommandError: no engine {endpoint!r}; engines scanned: none "
        "(manage.py scan engine:ENDPOINT --inline)"
    ]


def test_an_engine_recorded_before_that_stops_answering_fails_its_scan_in_one_line(tmp_path):
    endpoint = f"unix://{tmp_path}/gone.sock"
    Engine.objects.create(endpoint=endpoint, name="gone")
    done = _manage("scan", f"engine:{endpoint}", "--inline")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    scan = EngineScan.objects.get()
    assert done.stderr.strip().splitlines() == [f"CommandError: engine scan {scan.id} failed: {scan.message}"]
    assert scan.status == "failed" and scan.message.startswith(
        f"cannot reach the Docker Engine at {endpoint}"
    )
    assert Engine.objects.count() == 1
