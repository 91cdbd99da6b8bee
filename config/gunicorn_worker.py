"""gunicorn's threaded worker, recycled when its memory has grown, without dropping a request.

A long-lived Python process keeps the memory its largest answers needed. This worker is replaced once
its resident memory passes `WEB_MAX_RSS_MB` (read from /proc every `RSS_CHECK_EVERY` requests), or, if
set, after `max_requests` (`WEB_MAX_REQUESTS`; 0, the default, is no count). Recycling on a count
replaced busy workers every few tens of seconds under load, and each replacement's first requests (a
new database connection, caches filled again) made the slowest answers several times slower.

gunicorn's own stop closes the connections a worker still holds (kept alive between requests, or
accepted and not read yet) without an answer, so a client that had just sent a request on one gets a
reset (`requests` raises, wrk counts a read error). This worker drains first: from the moment it is to
go (over memory, or its last `WEB_RECYCLE_DRAIN` requests) it accepts no new connection (its siblings
take them), answers each request on the ones it holds with `Connection: close`, and goes once none is
left.
"""

from __future__ import annotations

import os

from gunicorn.workers.gthread import ThreadWorker

DRAIN = int(os.environ.get("WEB_RECYCLE_DRAIN", "200"))
MAX_RSS_BYTES = int(float(os.environ.get("WEB_MAX_RSS_MB", "768")) * 1024 * 1024)
RSS_CHECK_EVERY = 50
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident memory (0 where /proc cannot tell)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


class RecyclingThreadWorker(ThreadWorker):
    over_memory = False

    def draining(self) -> bool:
        return self.over_memory or self.nr >= self.max_requests - DRAIN

    def accept(self, server, listener):
        if self.draining():
            with self._lock:
                try:
                    self.poller.unregister(listener)  # the siblings accept from now on
                except (KeyError, ValueError):
                    pass
            return
        super().accept(server, listener)

    def handle_request(self, req, conn):
        if MAX_RSS_BYTES and not self.over_memory and (self.nr + 1) % RSS_CHECK_EVERY == 0:
            resident = resident_bytes()
            if resident > MAX_RSS_BYTES:
                self.over_memory = True
                self.log.info(
                    "Recycling worker: resident memory %d MB is past WEB_MAX_RSS_MB.", resident >> 20
                )
        if self.draining():
            req.must_close = True  # the answer says Connection: close, and the connection ends
        return super().handle_request(req, conn)

    def murder_keepalived(self):
        super().murder_keepalived()  # idle connections past the keep-alive timeout are closed here
        if self.alive and self.draining() and self.nr_conns == 0:
            self.log.info("Recycling worker: its connections are done.")
            self.alive = False
