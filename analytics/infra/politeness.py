"""Per-registry limits shared by every worker on every machine, kept in Redis.

A registry sees one client however many workers scan it: at most `concurrency` requests in flight and
at most `rate` requests per second (a token bucket with `burst` tokens). Both live in Redis under the
registry's id, changed by one Lua script so that checking and taking are one step:

* the slots are a sorted set of holders scored by expiry: a worker killed while holding a slot leaks
  it only until `slot_ttl` passes (the client's request timeout, twice, and a margin);
* the bucket is a hash (tokens, last refill in ms), refilled from Redis's own clock (`TIME`), so
  the machines' clocks need not agree.

A batch of requests (a snapshot's manifest GETs or HEADs) takes its slots in one step and gives them
back in one (`admit_many`), when only concurrency is limited: two round trips a batch, not a request.

The registry client only sees the `RequestGate` protocol (workers/registry/transport.py). When Redis
cannot be reached the gate lets requests through and says so in the log: politeness is worth less than
a scan that cannot run at all, and the broker being down stops the workers anyway.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from workers.registry.errors import TransportError

log = logging.getLogger(__name__)

# Returns 0 when admitted, -1 when every slot is taken, or the milliseconds until a token is due.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= limit then
    return -1
  end
end
local rate = tonumber(ARGV[4])
if rate > 0 then
  local burst = tonumber(ARGV[5])
  local state = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
  local tokens = tonumber(state[1]) or burst
  local ts = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  if tokens < 1 then
    redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', now)
    redis.call('PEXPIRE', KEYS[2], 60000)
    return math.max(1, math.ceil((1 - tokens) * 1000 / rate))
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'ts', now)
  redis.call('PEXPIRE', KEYS[2], 60000)
end
if limit > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 0
"""


# A batch's slots: returns how many of ARGV[4] wanted were taken (members ARGV[1]:1..n), 0 when none
# is free. Concurrency only: a gate with a rate admits each request on its own.
_ADMIT_MANY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = math.min(tonumber(ARGV[4]), limit - redis.call('ZCARD', KEYS[1]))
if n <= 0 then
  return 0
end
for i = 1, n do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], ttl)
return n
"""

# A batch's slots held on: each member's expiry moved to now + ttl (those still there).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 0
"""


@functools.lru_cache(maxsize=4)
def shared_redis(url: str) -> redis.Redis:
    """One connection pool per Redis URL and process (redis-py clients are thread-safe)."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)


class RedisGate:
    """A `RequestGate` for one registry: a shared concurrency cap and request rate (see the module doc).

    `concurrency` or `rate` of 0 turns that limit off. `max_wait` bounds the wait for admission; past
    it a transient `TransportError` goes up and the scan is retried later.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        key: str,
        concurrency: int,
        rate: float,
        burst: int | None = None,
        slot_ttl: float = 65.0,
        max_wait: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.redis = client
        self.slots_key = f"layerlens:gate:{key}:slots"
        self.bucket_key = f"layerlens:gate:{key}:bucket"
        self.concurrency = max(0, int(concurrency))
        self.rate = max(0.0, float(rate))
        self.burst = max(1, int(burst if burst is not None else max(1.0, self.rate)))
        self.slot_ttl_ms = int(slot_ttl * 1000)
        self.max_wait = max_wait
        self.sleep = sleep
        self._script = client.register_script(_ADMIT)
        self._many = client.register_script(_ADMIT_MANY)
        self._renew = client.register_script(_RENEW)
        self.waited = 0.0  # seconds this gate spent waiting, for tests and logs

    @property
    def enabled(self) -> bool:
        return bool(self.concurrency or self.rate)

    def _try(self, token: str) -> int:
        args = [token, self.concurrency, self.slot_ttl_ms, self.rate, self.burst]
        return int(self._script(keys=[self.slots_key, self.bucket_key], args=args))

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Wait for a slot and a token; hold the slot until the block exits."""
        if not self.enabled:
            yield
            return
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.max_wait
        poll = 0.01
        try:
            while True:
                wait_ms = self._try(token)
                if wait_ms == 0:
                    break
                if time.monotonic() >= deadline:
                    raise TransportError(
                        f"no request slot for this registry within {self.max_wait:g}s "
                        f"(limits: {self.concurrency} at once, {self.rate:g}/s, shared by all workers)"
                    )
                # Slots free up when a reply ends: poll with jitter; a token is due at a known time.
                pause = wait_ms / 1000 if wait_ms > 0 else poll * (0.5 + random.random())
                poll = min(poll * 2, 0.2)
                self.waited += pause
                self.sleep(pause)
        except redis.RedisError as exc:
            log.warning("registry limits unavailable (%s); sending without them", exc)
            yield
            return
        try:
            yield
        finally:
            if self.concurrency:
                try:
                    self.redis.zrem(self.slots_key, token)
                except redis.RedisError:
                    pass  # the slot expires by itself

    @contextmanager
    def admit_many(self, n: int) -> Iterator[_Batch | None]:
        """Wait for at least one slot, take up to `n`; hold them until the block exits (the registry
        client's `BatchGate`). Yields None for a gate with a request rate: each request is admitted
        on its own, for its token."""
        if self.rate or not self.concurrency:
            yield None
            return
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.max_wait
        poll = 0.01
        try:
            while True:
                got = int(
                    self._many(keys=[self.slots_key], args=[token, self.concurrency, self.slot_ttl_ms, n])
                )
                if got > 0:
                    break
                if time.monotonic() >= deadline:
                    raise TransportError(
                        f"no request slot for this registry within {self.max_wait:g}s "
                        f"(limits: {self.concurrency} at once, shared by all workers)"
                    )
                pause = poll * (0.5 + random.random())
                poll = min(poll * 2, 0.2)
                self.waited += pause
                self.sleep(pause)
        except redis.RedisError as exc:
            log.warning("registry limits unavailable (%s); sending without them", exc)
            yield _Batch(self, [], n)
            return
        batch = _Batch(self, [f"{token}:{i}" for i in range(1, got + 1)], got)
        try:
            yield batch
        finally:
            try:
                self.redis.zrem(self.slots_key, *batch.members)
            except redis.RedisError:
                pass  # the slots expire by themselves

    def in_flight(self) -> int:
        """Slots held now (for tests and the readiness page)."""
        now_ms = int(time.time() * 1000)
        return int(self.redis.zcount(self.slots_key, now_ms, "+inf"))


class _Batch:
    """Slots held for a batch (`RedisGate.admit_many`): `count` requests at once; `renew` keeps them
    past their time to live, at most once a third of it."""

    def __init__(self, gate: RedisGate, members: list[str], count: int) -> None:
        self.gate, self.members, self.count = gate, members, count
        self._renewed = time.monotonic()
        self._lock = threading.Lock()

    def renew(self) -> None:
        every = self.gate.slot_ttl_ms / 3000
        if not self.members or time.monotonic() - self._renewed < every:
            return
        with self._lock:
            if time.monotonic() - self._renewed < every:
                return
            self._renewed = time.monotonic()
        try:
            self.gate._renew(keys=[self.gate.slots_key], args=[self.gate.slot_ttl_ms, *self.members])
        except redis.RedisError as exc:
            log.warning("registry limits unavailable (%s); slots not renewed", exc)
