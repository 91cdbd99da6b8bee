"""The client's HTTP/1.1 (`workers/registry/wire.py`) against a socket server that sends exactly the
bytes each test gives it: framing, kept-alive connections, and the replies it must refuse."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from workers.registry.policy import NetworkPolicy, PolicyError
from workers.registry.wire import MAX_HEADER_BYTES, LeanTransport


class RawServer:
    """Answers each request read on a connection with the next of `replies` (bytes, sent as they are;
    None closes the connection without a reply; (bytes, True) sends them, then closes). Counts the
    connections accepted."""

    def __init__(self, replies: list) -> None:
        self.replies = list(replies)
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while self.replies:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                self.requests.append(head)
                reply = self.replies.pop(0)
                if reply is None:
                    return
                if isinstance(reply, tuple):
                    conn.sendall(reply[0])
                    return
                conn.sendall(reply)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator:
    servers: list[RawServer] = []

    def start(*replies) -> tuple[RawServer, httpx.Client]:
        server = RawServer(list(replies))
        servers.append(server)
        transport = LeanTransport(
            policy=NetworkPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)),
            ssl_context=httpx.create_ssl_context(),
        )
        return server, httpx.Client(
            transport=transport, base_url=f"http://127.0.0.1:{server.port}", timeout=5
        )

    yield start
    for server in servers:
        server.close()


def test_content_length_and_chunked_bodies_come_whole_over_one_kept_alive_connection(serve) -> None:
    server, client = serve(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDocker-Content-Digest: sha256:x\r\n\r\n",
    )
    assert client.get("/a").content == b"hello"
    assert client.get("/b").content == b"abcde"
    head = client.head("/c")
    assert head.status_code == 200 and head.headers["docker-content-digest"] == "sha256:x"
    assert server.connections == 1
    assert (
        server.requests[0].startswith(b"GET /a HTTP/1.1\r\n")
        and b"\r\nHost: 127.0.0.1:" in server.requests[0]
    )


def test_a_head_reply_has_no_body_whatever_its_content_length(serve) -> None:
    server, client = serve(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
    )
    assert client.head("/m").headers["content-length"] == "1234"
    missing = client.get("/n")
    assert (missing.status_code, missing.content) == (404, b"no")
    assert server.connections == 1


def test_a_body_read_to_the_close_and_a_connection_close_reply_are_not_reused(serve) -> None:
    server, client = serve(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", None)
    assert client.get("/a").content == b"ok"
    server.replies = [b"HTTP/1.0 200 OK\r\n\r\nuntil close"]
    assert client.get("/b").content == b"until close"
    assert server.connections == 2


def test_a_body_cut_short_is_a_protocol_error(serve) -> None:
    _, client = serve((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True))
    with pytest.raises(httpx.RemoteProtocolError, match="received 5 bytes, expected 10"):
        client.get("/a")


@pytest.mark.parametrize(
    "reply, match",
    [
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n", "size limit"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "malformed status line"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (None, "without sending a response"),
    ],
)
def test_malformed_replies_are_protocol_errors(serve, reply: bytes | None, match: str) -> None:
    _, client = serve(reply)
    with pytest.raises(httpx.RemoteProtocolError, match=match):
        client.get("/a")


def test_a_header_with_a_line_break_is_never_sent(serve) -> None:
    server, client = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(httpx.LocalProtocolError):
        client.get("/a", headers={"Authorization": "Bearer x\r\nX-Injected: 1"})
    assert server.requests == []


def test_every_connection_passes_the_network_policy() -> None:
    transport = LeanTransport(policy=NetworkPolicy(), ssl_context=httpx.create_ssl_context())
    with pytest.raises(PolicyError, match="loopback"):
        httpx.Client(transport=transport).get("http://127.0.0.1:9/")
