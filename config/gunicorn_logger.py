"""gunicorn's logger, leaving out the access line of a registry event the receiver accepted.

A registry sends one request per event (distribution 2.8 does), thousands a minute in a burst; each
accepted one is already a row of the inbox (`RegistryEvent`: the registry, the event's key, `received_at`)
and counted in the metrics (`layerlens_events_received_total`), and its access line cost about a tenth of
the web's CPU for the request (bench/README.md, "Following a registry by its events"). The receiver marks
those requests (`ACCESS_UNLOGGED` in the environ, set only with a 202); every other request is logged as
before, the receiver's refusals and failures (401, 429, 400, 413, 503, 500) included, which are what an
operator looks for. `WEB_ACCESS_LOG_EVENTS=1` logs the accepted events too.
"""

from __future__ import annotations

from gunicorn.glogging import Logger

from analytics.infra.logs import ACCESS_UNLOGGED
from config.settings import env_bool

LOG_ACCEPTED_EVENTS = env_bool("WEB_ACCESS_LOG_EVENTS")


class AccessLogger(Logger):
    def access(self, resp, req, environ, request_time):
        if environ.get(ACCESS_UNLOGGED) and not LOG_ACCEPTED_EVENTS:
            return
        super().access(resp, req, environ, request_time)
