"""HTTP/1.1 on the wire for the registry client: a small connection pool and message reader behind
httpx's transport interface (`httpx.BaseTransport`), over the network policy's guarded connections.

Why not httpcore's pool and h11: a registry client sends small GETs and HEADs over a few kept-alive
connections to one origin, and per request httpcore's pool scans every connection it has (twice) and
h11 runs a general state machine; together they cost about as much CPU as the registry spends serving
the request. This reads the same messages with a buffer and `bytes.find`.

Every protection of the transport it replaces is kept, because it is below or above this module:

- the SSRF policy on every connection: connections are opened by `policy.GuardedBackend` (the name
  resolved once, every address checked, the checked one connected to) and every URL is checked by
  `transport.Session` before it is sent;
- timeouts: each connect, read and write is bounded by the request's `timeout` extension (httpx's
  connect/read/write/pool), the total time limit and the minimum transfer rate by
  `policy.DeadlineStream` (`DEADLINE`, `METER`), which every stream here is;
- size caps: response headers at most `MAX_HEADER_BYTES` (h11's own limit, 16 KiB) and a chunk-size
  line at most `MAX_LINE_BYTES`; bodies are read by the caller as it goes, under its own caps;
- redirects and retries are `transport.Session`'s, above this; header values with CR, LF or NUL
  are refused before sending (no header injection from a token).

Framing (RFC 9112 section 6): no body for HEAD, 1xx, 204 and 304; `Transfer-Encoding` ending in
`chunked` is decoded (trailers read and dropped); else `Content-Length` (one value, or equal ones);
else the body runs to the connection's close. A connection is reused only when its response was read
to the end, the server did not ask to close it and nothing more came after the message; before reuse
an idle one is checked to be unreadable (not closed by the server) and younger than `keepalive_expiry`.
Failures are raised as httpx's exceptions, as `httpx.HTTPTransport` raises them.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator

import httpcore
import httpx
from httpx._transports.default import map_httpcore_exceptions

from .policy import GuardedBackend, NetworkPolicy

MAX_HEADER_BYTES = 16 * 1024  # h11's `max_incomplete_event_size`
MAX_LINE_BYTES = 4 * 1024  # a chunk-size line or a trailer line
READ_BYTES = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_BAD_HEADER_BYTES = (b"\r", b"\n", b"\0")

Origin = tuple[bytes, bytes, int]


class _Connection:
    """One kept-alive connection: its stream and what was read past the last message."""

    __slots__ = ("origin", "stream", "buffer", "idle_since", "reusable")

    def __init__(self, origin: Origin, stream: httpcore.NetworkStream) -> None:
        self.origin = origin
        self.stream = stream
        self.buffer = bytearray()
        self.idle_since = 0.0
        self.reusable = True

    def fill(self, timeout: float | None) -> bool:
        """Read more into the buffer; False at the end of the stream."""
        data = self.stream.read(READ_BYTES, timeout)
        if not data:
            return False
        self.buffer += data
        return True

    def line(self, timeout: float | None, limit: int) -> bytes:
        """The next CRLF-terminated line, without its CRLF."""
        start = 0
        while True:
            end = self.buffer.find(b"\r\n", start)
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > limit:
                raise httpcore.RemoteProtocolError("line too long in the response")
            start = max(0, len(self.buffer) - 1)
            if not self.fill(timeout):
                raise httpcore.RemoteProtocolError("peer closed connection inside a chunked body")

    def close(self) -> None:
        self.reusable = False
        try:
            self.stream.close()
        except Exception:  # noqa: S110 - closing what is broken already
            pass


def _head_bytes(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path or b"/"
    parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if any(bad in name or bad in value for bad in _BAD_HEADER_BYTES) or b":" in name:
            raise httpx.LocalProtocolError(f"refusing to send a header with a line break: {name!r}")
        parts += [name, b": ", value, b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts) + body


def _parse_head(raw: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    """(status, reason, headers, HTTP/1.1 or later) of a response head (status line and fields)."""
    lines = raw.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise httpcore.RemoteProtocolError(f"malformed status line {lines[0][:100]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise httpcore.RemoteProtocolError(f"malformed header line {line[:100]!r}")
        headers.append((name, value.strip(b" \t")))
    return int(code), reason, headers, version != b"HTTP/1.0"


class _Body(httpx.SyncByteStream):
    """A response body as it comes; closing it gives the connection back (read to its end) or
    closes it."""

    def __init__(
        self, transport: LeanTransport, conn: _Connection, framing: str, length: int, timeout: float | None
    ) -> None:
        self.transport, self.conn, self.framing, self.remaining, self.timeout = (
            transport,
            conn,
            framing,
            length,
            timeout,
        )
        self.done = framing == "none"
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        with map_httpcore_exceptions():
            if self.framing == "length":
                yield from self._length()
            elif self.framing == "chunked":
                yield from self._chunked()
            elif self.framing == "close":
                yield from self._to_close()

    def _length(self) -> Iterator[bytes]:
        conn, expected = self.conn, self.remaining
        while self.remaining > 0:
            if not conn.buffer and not conn.fill(self.timeout):
                raise httpcore.RemoteProtocolError(
                    "peer closed connection without sending complete message body: "
                    f"received {expected - self.remaining} bytes, expected {expected}"
                )
            piece = bytes(conn.buffer[: self.remaining])
            del conn.buffer[: len(piece)]
            self.remaining -= len(piece)
            yield piece
        self.done = True

    def _chunked(self) -> Iterator[bytes]:
        conn = self.conn
        while True:
            size_line = conn.line(self.timeout, MAX_LINE_BYTES)
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpcore.RemoteProtocolError(f"malformed chunk size {size_line[:100]!r}") from None
            if size < 0 or not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                raise httpcore.RemoteProtocolError(f"malformed chunk size {size_line[:100]!r}")
            if size == 0:
                while conn.line(self.timeout, MAX_LINE_BYTES):  # trailers, up to the empty line
                    pass
                self.done = True
                return
            while size > 0:
                if not conn.buffer and not conn.fill(self.timeout):
                    raise httpcore.RemoteProtocolError("peer closed connection inside a chunked body")
                piece = bytes(conn.buffer[:size])
                del conn.buffer[: len(piece)]
                size -= len(piece)
                yield piece
            if conn.line(self.timeout, MAX_LINE_BYTES):
                raise httpcore.RemoteProtocolError("chunk not followed by CRLF")

    def _to_close(self) -> Iterator[bytes]:
        conn = self.conn
        conn.reusable = False
        if conn.buffer:
            piece = bytes(conn.buffer)
            conn.buffer.clear()
            yield piece
        while conn.fill(self.timeout):
            piece = bytes(conn.buffer)
            conn.buffer.clear()
            yield piece
        self.done = True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        reuse = self.done and self.conn.reusable and not self.conn.buffer
        self.transport._release(self.conn, reuse)


class LeanTransport(httpx.BaseTransport):
    """An `httpx.BaseTransport` speaking HTTP/1.1 over `policy.GuardedBackend` connections (module
    docstring), at most `max_connections` at once (a request waits the pool timeout for one)."""

    def __init__(
        self,
        *,
        policy: NetworkPolicy,
        ssl_context: ssl.SSLContext,
        max_connections: int = 16,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._backend = GuardedBackend(policy)
        self._ssl_context = ssl_context
        self._max = max(1, max_connections)
        self._expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False

    # -- the pool -----------------------------------------------------------------------------------

    def _acquire(self, origin: Origin, pool_timeout: float | None) -> _Connection | None:
        """An idle connection to `origin`, or None when the caller may open one (counted already)."""
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        with self._cond:
            while True:
                now = time.monotonic()
                idle = self._idle.get(origin)
                while idle:
                    conn = idle.pop()
                    if now - conn.idle_since < self._expiry and not conn.stream.get_extra_info("is_readable"):
                        return conn
                    self._count -= 1
                    conn.close()
                if self._count < self._max:
                    self._count += 1
                    return None
                other = next((conns for conns in self._idle.values() if conns), None)
                if other:  # a connection to another origin makes room
                    other.pop(0).close()
                    self._count -= 1
                    continue
                left = None if deadline is None else deadline - now
                if left is not None and left <= 0:
                    raise httpx.PoolTimeout("no connection free in the pool")
                self._cond.wait(left)

    def _release(self, conn: _Connection, reuse: bool) -> None:
        with self._cond:
            if reuse and not self._closed:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(conn.origin, []).append(conn)
            else:
                self._count -= 1
                conn.close()
            self._cond.notify()

    def _connect(
        self, request: httpx.Request, origin: Origin, timeouts: dict[str, float | None]
    ) -> _Connection:
        scheme, host, port = origin
        stream = self._backend.connect_tcp(host.decode("ascii"), port, timeout=timeouts.get("connect"))
        if scheme == b"https":
            sni = request.extensions.get("sni_hostname") or host.decode("ascii")
            stream = stream.start_tls(self._ssl_context, server_hostname=sni, timeout=timeouts.get("connect"))
        return _Connection(origin, stream)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for conns in self._idle.values():
                for conn in conns:
                    self._count -= 1
                    conn.close()
            self._idle.clear()
            self._cond.notify_all()

    # -- one request --------------------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        port = url.port or (443 if url.scheme == "https" else 80)
        origin: Origin = (url.scheme.encode("ascii"), url.raw_host, port)
        timeouts = request.extensions.get("timeout", {})
        body = b"".join(request.stream)  # type: ignore[arg-type]  # a registry client's bodies are small
        if body and "transfer-encoding" in request.headers:
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        conn = self._acquire(origin, timeouts.get("pool"))
        try:
            with map_httpcore_exceptions():
                if conn is None:
                    conn = self._connect(request, origin, timeouts)
                conn.stream.write(_head_bytes(request, body), timeouts.get("write"))
                status, reason, headers, keep = self._read_head(conn, timeouts.get("read"))
                framing, length = self._framing(request.method, status, headers)
        except BaseException:
            if conn is None:
                with self._cond:
                    self._count -= 1
                    self._cond.notify()
            else:
                self._release(conn, False)
            raise
        if not keep or any(n.lower() == b"connection" and b"close" in v.lower() for n, v in headers):
            conn.reusable = False
        stream = _Body(self, conn, framing, length, timeouts.get("read"))
        if framing == "none":
            stream.close()
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    @staticmethod
    def _read_head(
        conn: _Connection, timeout: float | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
        while True:
            start = 0
            while True:
                end = conn.buffer.find(b"\r\n\r\n", start)
                if end >= 0:
                    break
                if len(conn.buffer) > MAX_HEADER_BYTES:
                    raise httpcore.RemoteProtocolError("response headers over the size limit")
                start = max(0, len(conn.buffer) - 3)
                if not conn.fill(timeout):
                    if conn.buffer:
                        raise httpcore.RemoteProtocolError(
                            "peer closed connection inside the response headers"
                        )
                    raise httpcore.RemoteProtocolError("Server disconnected without sending a response.")
            if end > MAX_HEADER_BYTES:
                raise httpcore.RemoteProtocolError("response headers over the size limit")
            raw = bytes(conn.buffer[:end])
            del conn.buffer[: end + 4]
            status, reason, headers, keep = _parse_head(raw)
            if 100 <= status < 200 and status != 101:
                continue  # an interim response (100 Continue): the final one follows
            return status, reason, headers, keep

    @staticmethod
    def _framing(method: str, status: int, headers: list[tuple[bytes, bytes]]) -> tuple[str, int]:
        if method == "HEAD" or status < 200 or status in _NO_BODY_STATUSES:
            return "none", 0
        lengths: set[bytes] = set()
        coding = None
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                coding = value.lower()
            elif lowered == b"content-length":
                lengths.update(v.strip() for v in value.split(b","))
        if coding is not None:
            return ("chunked" if coding.rsplit(b",", 1)[-1].strip() == b"chunked" else "close"), 0
        if lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                raise httpcore.RemoteProtocolError(f"malformed Content-Length {sorted(lengths)!r}")
            length = int(next(iter(lengths)))
            return ("length", length) if length else ("none", 0)
        return "close", 0
