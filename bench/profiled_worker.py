"""A Celery worker whose pool processes profile every thread with cProfile, in CPU time (`time.thread_time`).

    LAYERLENS_PROFILE_DIR=DIR python -m bench.profiled_worker -A config worker ...   # as celery

Each pool process profiles its main thread and every thread started after it (reader threads, the
registry client's request threads, heartbeats), one profiler per thread, and writes them when it stops
(`worker_process_shutdown`) as `<pid>-<n>-<thread name>.prof` (marshalled stats, read by `pstats`) in
`LAYERLENS_PROFILE_DIR`. CPU time, not wall time: a thread waiting on the registry or the database costs
nothing here, as in /proc. The profiler's own overhead inflates what is measured (about twice, for the
many small calls of a scan), so compare entries with each other, never with an unprofiled run.
"""

from __future__ import annotations

import cProfile
import marshal
import os
import re
import threading
import time
from pathlib import Path

from celery.signals import worker_process_init, worker_process_shutdown

_PROFILERS: list[tuple[str, cProfile.Profile]] = []
_LOCK = threading.Lock()
_THREAD_RUN = threading.Thread.run


def _profile_this_thread() -> None:
    profiler = cProfile.Profile(time.thread_time)
    with _LOCK:
        _PROFILERS.append((threading.current_thread().name, profiler))
    profiler.enable()


def _run_profiled(self: threading.Thread) -> None:
    _profile_this_thread()
    _THREAD_RUN(self)


@worker_process_init.connect
def _start(**_: object) -> None:
    threading.Thread.run = _run_profiled  # type: ignore[method-assign]
    _profile_this_thread()


@worker_process_shutdown.connect
def _dump(**_: object) -> None:
    out = Path(os.environ["LAYERLENS_PROFILE_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    with _LOCK:
        profilers = list(_PROFILERS)
    for n, (name, profiler) in enumerate(profilers):
        profiler.snapshot_stats()  # read without disabling: other threads' profilers are theirs to stop
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        with open(out / f"{os.getpid()}-{n}-{safe}.prof", "wb") as f:
            marshal.dump(profiler.stats, f)  # type: ignore[attr-defined]


if __name__ == "__main__":
    from celery.__main__ import main

    main()
