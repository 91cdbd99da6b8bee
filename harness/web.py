"""The web server as `make run` starts it, for the demo and the benchmarks that load it."""

from __future__ import annotations


def gunicorn_argv(port: int, *, workers: int = 2) -> list[str]:
    """`python -m` arguments for gunicorn on 127.0.0.1:`port` with the project's configuration
    (config/gunicorn_conf.py: threaded workers, recycled after about 10,000 requests, drained first)."""
    return [
        "gunicorn",
        "--config",
        "config/gunicorn_conf.py",
        "config.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
    ]
