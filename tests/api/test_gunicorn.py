"""Wherever the web is started (`make run`, the Dockerfile, compose), gunicorn runs gthread workers that
are replaced after about 10,000 requests with jitter, so the memory large answers leave behind in a
worker is returned. Each start's own command line is resolved by gunicorn itself (`--print-config`)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gunicorn.workers.gthread import ThreadWorker

from config.gunicorn_worker import MAX_RSS_BYTES, RecyclingThreadWorker

ROOT = Path(__file__).resolve().parents[2]


def _dockerfile() -> list[str]:
    line = next(x for x in (ROOT / "Dockerfile").read_text().splitlines() if x.startswith("CMD "))
    return json.loads(line.removeprefix("CMD "))


def _compose() -> list[str]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return shlex.split(services["web"]["command"])


def _make_run() -> list[str]:
    spec = importlib.util.spec_from_file_location("run_demo", ROOT / "scripts" / "run_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = module.WEB
    return argv[argv.index("gunicorn") :]


def _resolved(argv: list[str]) -> dict[str, str]:
    assert argv[0] == "gunicorn"
    env = {**os.environ, "DEBUG": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", *argv[1:], "--print-config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(re.findall(r"^(\w+)\s+= (.*)$", done.stdout, re.M))


@pytest.mark.parametrize(
    "start", [_dockerfile, _compose, _make_run], ids=["Dockerfile", "compose", "make run"]
)
def test_every_gunicorn_start_recycles_its_gthread_workers(start):
    config = _resolved(start())
    # gthread's worker, drained before it is recycled (tests/api/test_gunicorn_recycling.py)
    assert config["worker_class"] == "config.gunicorn_worker.RecyclingThreadWorker"
    assert issubclass(RecyclingThreadWorker, ThreadWorker) and int(config["threads"]) >= 2
    assert config["preload_app"] == "True"
    # recycled on memory (the worker's own check), not on a count
    assert int(config["max_requests"]) == 0
    assert MAX_RSS_BYTES == 768 * 1024 * 1024
