"""gunicorn's threaded worker, recycled without dropping a request.

gunicorn replaces a worker after `max_requests`: the worker stops, and the connections it still holds
(kept alive between requests, or accepted and not read yet) are closed without an answer, so a client
that had just sent a request on one gets a reset (`requests` raises, wrk counts a read error). This
worker drains first: for its last `WEB_RECYCLE_DRAIN` requests it accepts no new connection (its
siblings take them), answers each request on the ones it holds with `Connection: close`, and goes once
none is left.
"""

from __future__ import annotations

import os

from gunicorn.workers.gthread import ThreadWorker

DRAIN = int(os.environ.get("WEB_RECYCLE_DRAIN", "200"))


class RecyclingThreadWorker(ThreadWorker):
    def draining(self) -> bool:
        return self.nr >= self.max_requests - DRAIN

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
        if self.draining():
            req.must_close = True  # the answer says Connection: close, and the connection ends
        return super().handle_request(req, conn)

    def murder_keepalived(self):
        super().murder_keepalived()  # idle connections past the keep-alive timeout are closed here
        if self.alive and self.draining() and self.nr_conns == 0:
            self.log.info("Recycling worker: its connections are done.")
            self.alive = False
