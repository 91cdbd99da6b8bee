"""A worker replaced (its memory past `WEB_MAX_RSS_MB`, or after `WEB_MAX_REQUESTS`) drops no request:
clients holding kept-alive connections (as `requests`, wrk or a dashboard's poller do, none of them
retrying) all get their answers while the workers are recycled again and again. gunicorn with the
project's configuration, on loopback."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.tools import free_loopback_port
from harness.web import gunicorn_argv

ROOT = Path(__file__).resolve().parents[2]
CLIENTS, REQUESTS = 8, 120


RECYCLING = {
    # a worker's life: 60 requests, so 960 requests recycle about 16
    "count": {"WEB_MAX_REQUESTS": "60", "WEB_MAX_REQUESTS_JITTER": "0", "WEB_RECYCLE_DRAIN": "20"},
    # every worker is past 1 MB at its first look, after 50 requests: each then serves what it holds and goes
    "memory": {"WEB_MAX_RSS_MB": "1", "WEB_MAX_REQUESTS": "0"},
}


@pytest.fixture(params=sorted(RECYCLING))
def recycling_server(tmp_path, request):
    port = free_loopback_port()
    env = {**os.environ, "DEBUG": "1", "ALLOWED_HOSTS": "127.0.0.1", **RECYCLING[request.param]}
    log = tmp_path / "web.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", *gunicorn_argv(port)], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                break
        except OSError:
            pass
        assert time.monotonic() < deadline and server.poll() is None, log.read_text()[-3000:]
        time.sleep(0.3)
    yield port, log
    server.terminate()
    server.wait(timeout=30)


def test_recycled_workers_drop_no_request_on_kept_alive_connections(recycling_server):
    port, log = recycling_server
    failures: list[str] = []
    answered = [0] * CLIENTS

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # keeps its connection alive
        for _ in range(REQUESTS):
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    answered[n] += 1
                else:
                    failures.append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as exc:  # no retry, as a script would not
                failures.append(repr(exc))
                conn.close()
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    restarts = log.read_text().count("Booting worker") - 2  # the replacements of the two first workers
    assert restarts >= 5, log.read_text()[-3000:]  # the workers were recycled under the clients
    assert failures == [] and sum(answered) == CLIENTS * REQUESTS, (failures[:5], restarts)
