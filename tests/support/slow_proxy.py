"""A reverse proxy on 127.0.0.1 that slows a real registry down and records what it was asked.

Fault tests need a scan that lasts long enough to be interrupted; a registry on loopback answers in
a millisecond. The proxy forwards every GET/HEAD to `upstream` after `delay` seconds and records, per
request, the path, the start and end times and how many requests were in flight at once
(`max_in_flight`), which is what a per-registry concurrency cap must bound. When the upstream is
down the proxy drops the connection without a reply, as a registry whose process died would.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Seen:
    method: str
    path: str
    start: float
    end: float = 0.0
    status: int | None = None


@dataclass
class ProxyState:
    upstream: str
    delay: float
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    connections: int = 0  # TCP connections accepted: a client keeping them alive opens few
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.state.lock:
            self.server.state.connections += 1

    def do_HEAD(self) -> None:
        self._forward("HEAD")

    def do_GET(self) -> None:
        self._forward("GET")

    def _forward(self, method: str) -> None:
        state = self.server.state
        seen = Seen(method, self.path, time.monotonic())
        with state.lock:
            state.seen.append(seen)
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        counted = True
        try:
            time.sleep(state.delay)
            up = urlsplit(state.upstream)
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            try:
                conn.request(method, self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except OSError:
                self.close_connection = True  # the registry is down: no reply at all
                return
            finally:
                conn.close()
                # Counted until the reply is ready, before it is written: a client cannot have let go
                # of its slot (it has not read the reply) while the request is still counted here.
                with state.lock:
                    state.in_flight -= 1
                counted = False
            seen.status = resp.status
            self.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)
        finally:
            seen.end = time.monotonic()
            if counted:
                with state.lock:
                    state.in_flight -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ProxyState

    def handle_error(self, request, client_address) -> None:
        pass  # a client killed mid-request (the point of these tests) is no error of the proxy


class SlowProxy:
    def __init__(self, upstream: str, *, delay: float) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.state = ProxyState(upstream=upstream.rstrip("/"), delay=delay)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def state(self) -> ProxyState:
        return self.server.state

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SlowProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
