"""How SQL statements run. Settings for one transaction (`local_settings`). The web's bound on one
statement: PostgreSQL's `statement_timeout`, set on each connection a web process opens. `config/wsgi.py`
and `config/asgi.py` install it; Celery workers and management commands never load them, so their long
ingests and reports run unbounded. A statement it cancels raises
QueryCanceled, which the API and the pages answer with a 503 (`timeout_detail`).

The same connections compile no query to machine code (`jit` off): a web request's statements are
index probes whose cost the planner often overestimates, and JIT then spends more than the query (150 ms
of a 160 ms lineage page at a million images); the long statements of workers keep it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg.errors
from django.db import OperationalError, connection, transaction
from django.db.backends.signals import connection_created
from django.db.backends.utils import CursorWrapper

_UID = "layerlens-web-statement-timeout"


def _settings_set(cursor: CursorWrapper, settings: Mapping[str, str]) -> None:
    # set_config, not SET: the values are parameters; true: for the transaction only
    cursor.execute(
        "SELECT " + ", ".join(["set_config(%s, %s, true)"] * len(settings)),
        [x for pair in settings.items() for x in pair],
    )


@contextmanager
def local_settings(settings: Mapping[str, str]) -> Iterator[CursorWrapper]:
    """A transaction (a savepoint, should the caller hold one) whose statements run with `settings`; its
    cursor. A transaction-local setting lasts to the end of the outermost transaction, so on leaving the
    block the values before are set back; a savepoint rolled back by an error undoes them by itself."""
    names = list(settings)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(["current_setting(%s)"] * len(names)), names)
        before = dict(zip(names, cursor.fetchone(), strict=True))
        _settings_set(cursor, settings)
        yield cursor
        _settings_set(cursor, before)


def web_statement_timeout_install(seconds: float) -> None:
    """Every database connection this process opens from now on cancels a statement after `seconds`
    (0: no bound) and compiles no query (`jit` off)."""
    connection_created.disconnect(dispatch_uid=_UID)
    milliseconds = max(1, round(seconds * 1000)) if seconds > 0 else 0  # 0: PostgreSQL's "no bound"

    def bound(sender, connection, **kwargs) -> None:
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            # set_config, not SET: the value is a parameter (server-side binding cannot bind SET's)
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false), set_config('jit', 'off', false)",
                [f"{milliseconds}ms"],
            )

    connection_created.connect(bound, weak=False, dispatch_uid=_UID)


def is_statement_timeout(exc: BaseException) -> bool:
    """The database cancelled the statement (`statement_timeout`, or an operator's pg_cancel_backend)."""
    return isinstance(exc, OperationalError) and isinstance(exc.__cause__, psycopg.errors.QueryCanceled)


def timeout_detail(seconds: float) -> str:
    return (
        f"the question took longer than the {seconds:g} s a web request may spend on one database "
        "statement (WEB_STATEMENT_TIMEOUT_SECONDS) and was cancelled; narrow it (a registry, namespace or "
        "repository, a filter, a smaller page_size) or ask a management command, which has no time limit"
    )
