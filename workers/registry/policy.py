"""Which addresses the client may connect to: the SSRF policy, enforced where sockets are opened.

A scanner fetches URLs it is handed: the registry base URL, a token realm from a `WWW-Authenticate`
header, a `Link` from a tag list, a redirect `Location`. Any of those can point at the cloud metadata
service (169.254.169.254), an admin interface on loopback, or a private network. So every address is
refused when it is in one of the `BLOCKED_NETWORKS` below (loopback, RFC 1918 private, unique-local
fc00::/7, link-local incl. metadata, CGNAT 100.64/10, unspecified, multicast, reserved; IPv4-mapped,
IPv4-compatible, 6to4, NAT64 64:ff9b::/96 and Teredo IPv6 are judged by the IPv4 addresses they carry
too), unless the registry is allowed to be
internal (`allow_internal`) or the address is inside an operator's `allowed_networks`.

How the check cannot be bypassed by DNS rebinding (the approach, and why):

1. `NetworkPolicy.check_url` refuses an IP-literal host before any request (so the error names the URL
   that was handed to us, and it also works with an injected test transport).
2. `GuardedTransport` is `httpx.HTTPTransport` with its httpcore connection pool built on
   `GuardedBackend`, an `httpcore.SyncBackend` whose `connect_tcp` resolves the host name once
   (`socket.getaddrinfo`), checks every address it got (one bad address refuses the name, as
   smokescreen and `ssrf_filter` do: a name that resolves to both a public and a metadata address is
   an attack), then connects to the checked IP itself. The name is never resolved again, so the
   answer that was checked is the one used.
3. TLS is unaffected: httpcore wraps the socket with `server_hostname` taken from the request URL, so
   SNI and certificate verification use the host name, and the `Host` header comes from the URL too.
   Proxies are not used (the client sets `trust_env=False`): a proxy would resolve names itself.

Setting `GuardedTransport._pool` reaches into httpx 0.28's transport (pinned in requirements.txt);
httpx has no public hook for an httpcore network backend. The alternative, rewriting each URL to an
IP and setting `Host` and the `sni_hostname` extension by hand, has to be repeated for every redirect
and breaks connection pooling by name, so it was not chosen.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from .errors import PolicyError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (network, why it is refused). IANA special-purpose registries (RFC 6890) list more; these are the
# ones a request could reach something the operator did not mean to expose.
BLOCKED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared address space (CGNAT, RFC 6598)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata lives at 169.254.169.254)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("198.18.0.0/15", "benchmarking (RFC 2544)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)


def parse_networks(value: str | Iterable[str] | None) -> tuple[IPNetwork, ...]:
    """CIDRs from a comma-separated string or an iterable (`"127.0.0.0/8, ::1/128"`); raises ValueError."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded(ip: IPAddress) -> set[IPAddress]:
    """The IPv4 addresses an IPv6 address carries, which a translator or tunnel would reach:
    IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d, RFC 4291 2.5.5.1), 6to4
    (2002:AABB:CCDD::, RFC 3056), the NAT64 well-known prefix (64:ff9b::a.b.c.d, RFC 6052 2.1) and
    Teredo (2001::/32, RFC 4380 4: its server and its obfuscated client address); none otherwise."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return set()
    found: set[IPAddress] = set()
    if ip.ipv4_mapped is not None:
        found.add(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.add(ip.sixtofour)
    if ip.teredo is not None:
        found.update(ip.teredo)
    if ip in NAT64_WELL_KNOWN:
        found.add(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    # The deprecated IPv4-compatible form, but not :: or ::1 themselves.
    if int(ip) >> 32 == 0 and int(ip) > 1:
        found.add(ipaddress.IPv4Address(int(ip)))
    return found


@dataclass(frozen=True)
class NetworkPolicy:
    """Where the client may connect. Frozen, so one policy can be shared by every connection.

    `allow_internal` lifts the refusal entirely (an operator's decision for one registry);
    `allowed_networks` lifts it for addresses inside those networks only.
    """

    allow_internal: bool = False
    allowed_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why `address` may not be connected to, or None when it may."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if self.allow_internal:
            return None
        embedded = _embedded(ip)
        # Allowed when the address, or every address it carries, is in an allowed network.
        if any(ip.version == net.version and ip in net for net in self.allowed_networks):
            return None
        if embedded and all(
            any(c.version == net.version and c in net for net in self.allowed_networks) for c in embedded
        ):
            return None
        for candidate in (ip, *sorted(embedded, key=int)):
            for net, why in BLOCKED_NETWORKS:
                if candidate.version == net.version and candidate in net:
                    shown = "" if candidate == ip else f" (it carries {candidate})"
                    return f"{ip} is {why}{shown}"
        return None

    def host_refusal(self, host: str, port: int | None = None, *, timeout: float = 2.0) -> str | None:
        """Why `host` (a name or an IP literal) may not be connected to, or None when it may or when it
        does not resolve within `timeout` seconds (the connection itself is checked again, always).

        For a check before anything is stored (an API request): the name is resolved in a thread that
        is left behind if the resolver hangs, so the caller waits `timeout` at most.
        """
        literal = host.strip("[]")
        try:
            ip = ipaddress.ip_address(literal)
        except ValueError:
            pass
        else:
            why = self.refusal(ip)
            return None if why is None else f"{host}: {why}"
        pool = ThreadPoolExecutor(1, thread_name_prefix="policy-resolve")
        try:
            infos = pool.submit(socket.getaddrinfo, literal, port, type=socket.SOCK_STREAM).result(timeout)
        except (OSError, UnicodeError, FutureTimeout):
            return None
        finally:
            pool.shutdown(wait=False)
        for info in infos:
            address = str(info[4][0]).split("%", 1)[0]
            why = self.refusal(address)
            if why is not None:
                return f"{host} ({address}): {why}"
        return None

    def check_address(self, address: str | IPAddress, *, host: str) -> None:
        """Raise `PolicyError` if `address` (which `host` names) is refused."""
        why = self.refusal(address)
        if why is not None:
            shown = host if host == str(address) else f"{host} ({address})"
            raise PolicyError(
                f"refusing to connect to {shown}: {why}; an operator can allow an internal registry "
                "with --allow-internal or LAYERLENS_ALLOWED_NETWORKS"
            )

    def check_url(self, url: httpx.URL) -> None:
        """Refuse a URL that is not http(s) or whose host is a refused IP literal (names: at connect)."""
        if url.scheme not in ("http", "https"):
            raise PolicyError(f"refusing a {url.scheme or 'scheme-less'} URL; only http and https")
        host = url.host
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return
        self.check_address(ip, host=host)


# A `time.monotonic()` value after which this thread's reads and writes stop (`Session` sets it per
# attempt). The read timeout alone restarts with every byte, so headers sent a byte at a time would
# never end; the check here covers headers and body alike.
DEADLINE: ContextVar[float | None] = ContextVar("registry_request_deadline", default=None)


_TIMER_SLACK = 0.05  # seconds a socket timeout may fire early


class SlowTransfer(httpx.ReadTimeout):
    """A reply cut for coming too slowly: under the minimum transfer rate (`TransferMeter`) or past
    `DEADLINE`. Not retried: the client maps it to `errors.SlowReplyError`."""


@dataclass
class TransferMeter:
    """The slowest a reply may come once its first bytes are in: at least `min_bytes` in each `window`
    seconds (curl's `--speed-limit` / `--speed-time`, git's `http.lowSpeedLimit` / `lowSpeedTime`).

    The first window opens with the first bytes read, so the wait for a reply to begin is the read
    timeout's alone; a reply that ends inside a window is never judged on that window.
    """

    min_bytes: int
    window: float
    _opened: float | None = None  # when the current window opened
    _got: int = 0  # bytes in it

    def check(self, now: float) -> None:
        """Raise `SlowTransfer` when a window that ended by `now` brought fewer than `min_bytes`."""
        if self._opened is None:
            return
        while now >= self._opened + self.window:
            if self._got < self.min_bytes:
                raise SlowTransfer(
                    f"fewer than {self.min_bytes:,} bytes in {self.window:g}s (minimum transfer rate)"
                )
            self._opened += self.window
            self._got = 0

    def count(self, n: int, now: float) -> None:
        """`n` bytes read at `now` (the first bytes open the first window)."""
        if self._opened is None:
            if n:
                self._opened, self._got = now, n
            return
        self.check(now)
        self._got += n

    def time_left(self, now: float) -> float | None:
        """Seconds a read may wait before the meter must judge again; None before the first bytes."""
        if self._opened is None:
            return None
        end = self._opened + self.window
        return (end if self._got < self.min_bytes else end + self.window) - now


# This thread's `TransferMeter` for the reply being read (`Session` sets a fresh one per hop); None
# judges no rate.
METER: ContextVar[TransferMeter | None] = ContextVar("registry_transfer_meter", default=None)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads and writes stop at `DEADLINE`, and whose reads stop when they fall
    under `METER`'s rate (`SlowTransfer` both)."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    @staticmethod
    def _timeout(timeout: float | None) -> float | None:
        deadline = DEADLINE.get()
        if deadline is None:
            return timeout
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SlowTransfer("reply not complete within the total time limit")
        return remaining if timeout is None else min(timeout, remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        meter = METER.get()
        timeout = self._timeout(timeout)
        if meter is not None:
            now = time.monotonic()
            meter.check(now)
            left = meter.time_left(now)
            if left is not None:  # > 0 after `check`
                timeout = left if timeout is None else min(timeout, left)
        try:
            data = self._stream.read(max_bytes, timeout)
        except httpcore.ReadTimeout:
            # Cut at a window's end or at the deadline (a socket timeout fires about on time): say so.
            now = time.monotonic() + _TIMER_SLACK
            if meter is not None:
                meter.check(now)
            deadline = DEADLINE.get()
            if deadline is not None and now >= deadline:
                raise SlowTransfer("reply not complete within the total time limit") from None
            raise
        if meter is not None:
            meter.count(len(data), time.monotonic())
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._timeout(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, self._timeout(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """An httpcore network backend that resolves once, checks every address, connects to a checked one."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to `host:port` through an address the policy allows; raise `PolicyError` otherwise."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
        for address in addresses:
            self.policy.check_address(address, host=host)
        last: Exception | None = None
        for address in addresses:
            try:
                stream = super().connect_tcp(address, port, timeout, local_address, socket_options)
                return DeadlineStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host} resolved to no address")


class GuardedTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` whose connections go through `GuardedBackend` (see the module docstring)."""

    def __init__(
        self,
        *,
        policy: NetworkPolicy,
        verify: bool | ssl.SSLContext = True,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits()
        super().__init__(verify=verify, limits=limits, trust_env=False)
        ssl_context = (
            verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        )
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )
