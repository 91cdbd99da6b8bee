"""Structured logs: one JSON object per line, carrying the scan and repository being worked on.

The scan services bind `scan_id`, `registry_id` and `repository_id` with `log_context(...)`; every log
record made inside, by any module (the registry client included, which knows nothing of this), is
stamped with them by `ContextFilter`. Context variables do not follow work into new threads, so lines
logged from the registry client's own thread pool carry the registry but not the scan.

`LOG_FORMAT=json` (the default when DEBUG is off) selects `JsonFormatter`; `plain` is for people.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_context: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "layerlens_log_context", default=None
)
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# Set true in a request's WSGI environ by an entry point whose answer needs no access line (the events
# receiver's accepted events: each is a row of the inbox already); the web server's access log
# (config/gunicorn_logger.py) leaves that request out.
ACCESS_UNLOGGED = "layerlens.access_unlogged"


def current_context() -> dict[str, object]:
    return dict(_context.get() or {})


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add `fields` to every log record made inside the block (nested blocks add to the outer ones)."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record, where both formatters can use them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", ...bound and `extra` fields, "exc"}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """The usual one-line format, with the bound ids appended when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{k}={getattr(record, k)}"
            for k in ("scan_id", "registry_id", "repository_id")
            if getattr(record, k, None) is not None
        )
        return f"{line} [{ids}]" if ids else line
