"""Docker Engines follow the registries' SSRF rule: a tcp:// (or ssh://) engine on an internal address
needs `allow_internal` (staff), `--allow-internal` or LAYERLENS_ALLOWED_NETWORKS; it is refused in the
request and again on every connection, which resolves once and connects to the address it checked."""

from __future__ import annotations

import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics.engines.services import engine_scan_run, engine_scan_start
from analytics.models import Engine, EngineScan, Scan
from workers.engine import EngineClient, EngineRefused

pytestmark = pytest.mark.django_db

API = "/api/v1/"
HINT = "LAYERLENS_ALLOWED_NETWORKS"


class _FakeEngine(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"ApiVersion": "1.41", "Version": "20.10.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_engine():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_api_refuses_an_internal_tcp_engine_unless_staff_allow_it(client_staff):
    body = {"endpoint": "tcp://10.0.0.5:2375", "name": "inside"}
    response = client_staff.post(f"{API}engines/", body, format="json")
    assert response.status_code == 400 and HINT in response.json()["detail"]
    assert not Engine.objects.exists()
    response = client_staff.post(f"{API}engines/", {**body, "allow_internal": True}, format="json")
    assert response.status_code == 201, response.content
    assert Engine.objects.get(name="inside").allow_internal


def test_a_unix_socket_engine_needs_no_allowance(client_staff):
    response = client_staff.post(f"{API}engines/", {"endpoint": "unix:///run/other.sock"}, format="json")
    assert response.status_code == 201, response.content


def test_the_command_refuses_an_internal_engine_without_allow_internal(db):
    with pytest.raises(CommandError, match="--allow-internal"):
        call_command("scan", "engine:tcp://10.0.0.5:2375", "--inline", stdout=io.StringIO())
    assert not Engine.objects.exists() and not EngineScan.objects.exists()


def test_a_stored_internal_engine_fails_its_scan_at_once_without_connecting(db):
    engine = Engine.objects.create(name="inside", endpoint="tcp://10.0.0.5:2375")
    scan = EngineScan.objects.create(engine=engine)
    scan = engine_scan_run(scan_id=scan.id)  # not retried: the same address is refused again
    assert scan.status == Scan.Status.FAILED and "refusing to connect" in scan.message


def test_the_api_scan_of_a_stored_internal_engine_is_a_400(client_staff):
    engine = Engine.objects.create(name="inside", endpoint="tcp://10.0.0.5:2375")
    response = client_staff.post(f"{API}engines/{engine.id}/scan/", {}, format="json")
    assert response.status_code == 400 and HINT in response.json()["detail"]
    assert not EngineScan.objects.exists()


def test_engine_client_refuses_before_connecting_and_when_a_name_is_rebound(fake_engine, monkeypatch):
    with pytest.raises(EngineRefused, match="10.0.0.5 is private"):
        EngineClient("tcp://10.0.0.5:2375", timeout=2)
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34", "127.0.0.1"])  # public when checked, loopback when connecting

    def rebinding(host, port, *args, **kwargs):
        if host == "engine.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers, "127.0.0.1"), port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(EngineRefused, match="127.0.0.1 is loopback"):
        EngineClient(f"tcp://engine.test:{fake_engine}", timeout=2)


def test_an_allowed_internal_engine_is_reached_through_the_guarded_connection(fake_engine):
    client = EngineClient(f"tcp://127.0.0.1:{fake_engine}", timeout=2, allowed_networks="127.0.0.0/8")
    try:
        assert client.api.version()["ApiVersion"] == "1.41"
    finally:
        client.close()
    client = EngineClient(f"tcp://127.0.0.1:{fake_engine}", timeout=2, allow_internal=True)
    client.close()


def test_engine_scan_start_saves_allow_internal(db, monkeypatch):
    monkeypatch.setattr("analytics.engines.services.engine_scan_enqueue", lambda scan: None)
    engine_scan_start(endpoint="tcp://10.0.0.5:2375", allow_internal=True, check_reachable=True)
    assert Engine.objects.get(endpoint="tcp://10.0.0.5:2375").allow_internal
