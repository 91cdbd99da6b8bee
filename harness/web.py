"""The web server as `make run` starts it, for the demo and the benchmarks that load it."""

from __future__ import annotations


def gunicorn_argv(port: int, *, workers: int = 2, threads: int = 4) -> list[str]:
    """`python -m` arguments for gunicorn on 127.0.0.1:`port`: threaded workers, since a whole-list
    CSV download streams past a sync worker's `--timeout`."""
    return [
        "gunicorn",
        "config.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--access-logfile",
        "-",
    ]
