"""Where a scan's worker CPU goes: `make bench`'s full scan and unchanged rescan under cProfile.

The same registry as `bench.scan_registry` (`--repos` x `--tags`, kept in `--workdir` and built only
when that is empty, so runs after the first skip the pushes), a fresh database, then a full scan and
an unchanged rescan, each through its own profiled Celery worker (`bench.profiled_worker`: every
thread of every pool process, in CPU time). Prints the top entries of each, by own time and by
cumulative time, and the CPU per image of the workers, PostgreSQL and the registry (from /proc; the
profiler inflates the workers' figure, so take ratios from `bench.scan_registry`, not from here).

    .venv/bin/python -m bench.scan_profile --workdir /tmp/scan-profile --out /tmp/scan-profile/prof
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import shutil
import sys
import time
from pathlib import Path

from bench.scan_registry import build  # sets the database and broker from BENCH_* first


def top(directory: Path, n: int) -> str:
    files = sorted(directory.glob("*.prof"))
    if not files:
        return f"(no profiles in {directory})\n"
    stats = pstats.Stats(str(files[0]), stream=(out := io.StringIO()))
    for f in files[1:]:
        stats.add(str(f))
    stats.files = []  # type: ignore[attr-defined]  # not the list of every thread's file
    stats.strip_dirs()
    stats.sort_stats("tottime").print_stats(n)
    stats.sort_stats("cumulative").print_stats(n)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument(
        "--workdir", type=Path, required=True, help="the registry's storage, kept between runs"
    )
    parser.add_argument("--out", type=Path, required=True, help="profiles go to OUT/full and OUT/rescan")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()

    import subprocess

    dbname = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", dbname], capture_output=True)
    import django

    django.setup()
    from django.core.management import call_command

    from analytics.models import Scan
    from analytics.scans.start import scan_start
    from config.celery import app
    from harness.celery_worker import CeleryWorker
    from harness.proc import cpu_seconds, cpu_spent, postgres_pids, process_tree
    from harness.registry import RegistryServer

    call_command("migrate", "--noinput", verbosity=0)
    call_command("flush", "--noinput", verbosity=0)
    app.control.purge()
    shutil.rmtree(args.out, ignore_errors=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    built = args.workdir / f"built-{args.repos}x{args.tags}"
    with RegistryServer(workdir=args.workdir) as registry:
        if not built.exists():
            build(registry.url, args.repos, args.tags)
            built.touch()
        images = args.repos * args.tags
        for run in ("full", "rescan"):
            worker = CeleryWorker(
                database_name=dbname,
                broker_url=os.environ["CELERY_BROKER_URL"],
                concurrency=args.concurrency,
                env={
                    "DEBUG": "0",
                    "SECRET_KEY": "x" * 50,
                    "LOG_FORMAT": "json",
                    "LAYERLENS_PROFILE_DIR": str(args.out / run),
                },
                module="bench.profiled_worker",
            )
            worker.start()
            try:
                assert worker.proc is not None and registry.proc is not None
                pids = {"registry": [registry.proc.pid], "workers": process_tree(worker.proc.pid)}
                before = {k: cpu_seconds(v) for k, v in pids.items()} | {
                    "postgres": cpu_seconds(postgres_pids(dbname))
                }
                scan = scan_start(target=registry.url)
                t = time.monotonic()
                while not Scan.objects.get(id=scan.id).is_finished:
                    if time.monotonic() - t > 1800:
                        raise RuntimeError("scan did not finish:\n" + worker.log_text()[-3000:])
                    time.sleep(0.1)
                after = {
                    k: cpu_seconds(process_tree(worker.proc.pid) if k == "workers" else v)
                    for k, v in pids.items()
                }
                after["postgres"] = cpu_seconds(postgres_pids(dbname))
                spent = {k: round(1000 * cpu_spent(before[k], after[k]) / images, 2) for k in after}
                print(
                    f"== {run}: {time.monotonic() - t:.1f} s, CPU ms per image (profiled) {spent}", flush=True
                )
            finally:
                worker.stop()
            print(top(args.out / run, args.top), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
