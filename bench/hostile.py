"""Benchmark: a hostile registry's crawl against everyone else (README "Hostile registry").

In one run, on loopback:

1. The other tenant: a real CNCF registry with one one-tag repository. The crawl: the catalog registry
   (harness/catalog_registry.py, `hostile=True`) listing `--repos` repositories (100,000) of one tag
   each, beside its hostile ones: a tag list of 1,000,000 tags by `Link`, a manifest of 25,000 layers
   (and one of 1,024), a tag list and a manifest dripping 4 bytes a second, and catalog names the
   distribution grammar refuses (300 characters, a NUL, ...). The hostile names sort first: they are in
   the crawl's first batch.
2. Real workers in the `make run` layout: one taking every queue (`--concurrency` processes), one taking
   control and interactive (one process); production settings, but for the total time limit of one
   reply (`--total-timeout`, 30 s instead of 300 s, so the drips spend their retries within the run).
3. Idle: `--samples` one-tag scans of the other registry (creation to finish).
4. The crawl starts; a one-tag scan every `--every` seconds, at least `--samples`, until every hostile
   repository's scan has finished and the catalog is listed (with `--until-done`: until the crawl has
   finished), each with the hostile repositories still unfinished and the crawl's progress.
5. Medians and maxima; how each hostile repository ended (`harness.queue_probe.hostile_problems`: [] when
   each ended as its cap says); CPU seconds from /proc of the workers, PostgreSQL and this process (the
   catalog server and the probes) over the crawl phase.

    .venv/bin/python -m bench.hostile                                 # 100,000 repositories
    .venv/bin/python -m bench.hostile --repos 5000 --until-done       # and the crawl's end
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time

from harness.services import drop_database, fresh_database

os.environ.setdefault("DEBUG", "1")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/layerlens_bench_hostile"
)
os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Both registries listen on loopback, which the SSRF policy refuses unless allowed.
os.environ.setdefault("LAYERLENS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3), "n": len(values)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=100_000, help="ordinary repositories the catalog lists")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="processes of the worker taking every queue"
    )
    parser.add_argument("--samples", type=int, default=10, help="one-tag scans idle; at least as many after")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between one-tag scans after")
    parser.add_argument(
        "--total-timeout", type=float, default=30.0, help="REGISTRY_TOTAL_TIMEOUT_SECONDS of the workers"
    )
    parser.add_argument("--until-done", action="store_true", help="sample until the whole crawl finished")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    dbname = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    fresh_database(dbname)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    from analytics.models import Scan
    from analytics.scans.start import scan_start
    from config.celery import app
    from harness.catalog_registry import HOSTILE_REPOSITORIES, catalog_registry
    from harness.celery_worker import CeleryWorker
    from harness.proc import cpu_seconds, cpu_spent, postgres_pids, process_tree
    from harness.pusher import Pusher
    from harness.queue_probe import hostile_children, hostile_problems, one_tag_scan
    from harness.registry import RegistryServer

    call_command("migrate", "--noinput", verbosity=0)
    app.control.purge()
    load = os.getloadavg()
    production = {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LOG_FORMAT": "json",
        "REGISTRY_TOTAL_TIMEOUT_SECONDS": str(args.total_timeout),
    }
    started: list[CeleryWorker] = []
    samples: dict[str, list[dict]] = {"idle": [], "crawl": []}
    with RegistryServer() as other, catalog_registry(repositories=args.repos, hostile=True) as catalog:
        with Pusher(other.url) as push:
            push.image("tenant/app", "v1", seed="bench-hostile-tenant")
        tag = f"{other.host}/tenant/app:v1"
        try:
            for concurrency, queues in (
                (args.concurrency, ("control", "interactive", "bulk")),
                (1, ("control", "interactive")),
            ):
                started.append(
                    CeleryWorker(
                        database_name=dbname,
                        broker_url=settings.CELERY_BROKER_URL,
                        concurrency=concurrency,
                        queues=queues,
                        env=production,
                    ).start()
                )

            def processes() -> dict[str, list[int]]:
                return {
                    "workers": [p for w in started if w.proc for p in process_tree(w.proc.pid)],
                    "postgresql": postgres_pids(dbname),
                    "bench_process": [os.getpid()],
                }

            def sample(phase: str, crawl: Scan | None, t0: float) -> None:
                scan, latency = one_tag_scan(tag)
                row = {"one_tag_seconds": round(latency, 3), "one_tag_status": scan.status}
                if crawl is not None:
                    crawl.refresh_from_db()
                    row |= {
                        "at": round(time.monotonic() - t0, 1),
                        "hostile_unfinished": sorted(
                            name for name, c in hostile_children(crawl).items() if c.finished_at is None
                        ),
                        "listed": crawl.lease_until is None and crawl.repositories_total > 0,
                        "crawl_done": crawl.repositories_done,
                        "crawl_finished": crawl.finished_at is not None,
                    }
                samples[phase].append(row)
                print(phase, json.dumps(row), file=sys.stderr, flush=True)

            t0 = time.monotonic()
            for _ in range(args.samples):
                sample("idle", None, t0)
            before = {k: cpu_seconds(v) for k, v in processes().items()}
            crawl = scan_start(target=catalog.url)
            t0 = time.monotonic()

            def more() -> bool:
                rows = samples["crawl"]
                if len(rows) < args.samples:
                    return True
                last = rows[-1]
                if args.until_done:
                    return not last["crawl_finished"]
                return bool(last["hostile_unfinished"]) or not last["listed"]

            while more():
                if samples["crawl"]:
                    time.sleep(args.every)
                sample("crawl", crawl, t0)
            elapsed = time.monotonic() - t0
            after = {k: cpu_seconds(v) for k, v in processes().items()}
            cpu = {k: round(cpu_spent(before[k], after[k]), 1) for k in after}
            crawl.refresh_from_db()
            problems = hostile_problems(crawl)
            hostile = {
                name: {
                    "status": child.status,
                    "seconds": round((child.finished_at - child.created_at).total_seconds(), 1)
                    if child.finished_at
                    else None,
                    "message": child.message[:160],
                }
                for name, child in sorted(hostile_children(crawl).items())
            }
            crawl_state = {
                "status": crawl.status,
                "repositories_done": crawl.repositories_done,
                "repositories_total": crawl.repositories_total,
                "seconds": round(elapsed, 1),
                "repositories_per_second": round(crawl.repositories_done / elapsed, 1),
            }
            logs = "".join(worker.log_text() for worker in started)
            unexpected = sum("raised unexpected" in line for line in logs.splitlines())
        finally:
            for worker in started:
                worker.stop()
            app.control.purge()
    connections.close_all()
    if not args.keep:
        drop_database(dbname)

    result = {
        "repositories": args.repos,
        "hostile_repositories": list(HOSTILE_REPOSITORIES),
        "workers": f"{args.concurrency} processes on every queue + 1 on control and interactive",
        "total_timeout_seconds": args.total_timeout,
        "one_tag_seconds": {
            "idle": summary([r["one_tag_seconds"] for r in samples["idle"]]),
            "during_crawl": summary([r["one_tag_seconds"] for r in samples["crawl"]]),
            "during_crawl_with_hostile_unfinished": summary(
                [r["one_tag_seconds"] for r in samples["crawl"] if r["hostile_unfinished"]] or [0.0]
            ),
        },
        "one_tag_scans_failed": sum(
            r["one_tag_status"] != Scan.Status.SUCCEEDED for p in samples.values() for r in p
        ),
        "hostile": hostile,
        "hostile_problems": problems,
        "crawl": crawl_state,
        "cpu_seconds_during_crawl": cpu,
        "tasks_raised_unexpected": unexpected,
        "load_average_at_start": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
