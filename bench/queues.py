"""Benchmark: one tenant's registry crawl against everyone else (README "Queues").

In one run, on loopback:

1. The other tenant: a real CNCF registry with three one-tag repositories. The crawl: a catalog server
   (harness/catalog_registry.py) listing `--repos` repositories (100,000), each one tag of an
   image of its own.
2. Real workers in the `make run` layout: one taking every queue (`--concurrency` processes), one
   taking control and interactive (one process).
3. Idle: `--samples` one-tag scans of the other registry (creation to finish) and as many sends of
   beat's two tasks (send to run; harness/queue_probe.py), so the figures below have their
   baseline from the same run.
4. The crawl starts; once it has created `--under-way` children, the same samples again every
   `--every` seconds, at least `--samples` and until the catalog is listed, each with the crawl's
   progress, the bulk queue's length and the children waiting for the crawl's window (what a single
   FIFO queue would hold instead).
5. Medians and maxima, idle and during the crawl; the crawl is not waited for (its rate is printed).

    .venv/bin/python -m bench.queues                                  # 100,000 repositories
    .venv/bin/python -m bench.queues --repos 20000 --samples 5 --every 5
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
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/layerlens_bench_queues"
)
os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Both registries listen on loopback, which the SSRF policy refuses unless allowed.
os.environ.setdefault("LAYERLENS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=100_000, help="repositories the crawled registry lists")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="processes of the worker taking every queue"
    )
    parser.add_argument("--samples", type=int, default=10, help="one-tag scans and control sends, each phase")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples during the crawl")
    parser.add_argument("--under-way", type=int, default=2000, help="children created before sampling starts")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    dbname = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    fresh_database(dbname)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    from analytics.infra.politeness import shared_redis
    from analytics.models import Scan
    from analytics.scans.start import scan_start
    from config.celery import app
    from harness.catalog_registry import catalog_registry
    from harness.celery_worker import CeleryWorker
    from harness.pusher import Pusher
    from harness.queue_probe import control_delays, one_tag_scan
    from harness.registry import RegistryServer

    call_command("migrate", "--noinput", verbosity=0)
    app.control.purge()
    redis = shared_redis(settings.CELERY_BROKER_URL)
    load = os.getloadavg()
    production = {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "LOG_FORMAT": "json"}
    started: list[CeleryWorker] = []
    samples: dict[str, list[dict]] = {"idle": [], "crawl": []}
    with RegistryServer() as other, catalog_registry(repositories=args.repos) as catalog:
        with Pusher(other.url) as push:
            for name in ("one", "two", "three"):
                push.image(f"other/{name}", "v1", seed=f"bench-queues-{name}")
        tag = f"{other.host}/other/one:v1"
        due, stuck = f"{other.host}/other/two", f"{other.host}/other/three"
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

            def sample(phase: str, crawl: Scan | None) -> None:
                backlog = redis.llen(settings.QUEUE_BULK)
                scan, latency = one_tag_scan(tag)
                delays = control_delays(due=due, stuck=stuck)
                row = {
                    "one_tag_seconds": round(latency, 3),
                    "one_tag_status": scan.status,
                    "enqueue_due_scans_delay": round(delays.enqueue_due_scans, 3),
                    "requeue_stuck_scans_delay": round(delays.requeue_stuck_scans, 3),
                    "bulk_queue_tasks": backlog,
                }
                if crawl is not None:
                    crawl.refresh_from_db()
                    row |= {
                        "listed": crawl.repositories_total == args.repos,
                        "crawl_children": Scan.objects.filter(parent=crawl).count(),
                        "crawl_done": crawl.repositories_done,
                        "waiting_for_the_window": Scan.objects.filter(
                            parent=crawl, status=Scan.Status.QUEUED, enqueued_at__isnull=True
                        ).count(),
                    }
                samples[phase].append(row)
                print(phase, json.dumps(row), file=sys.stderr, flush=True)

            for _ in range(args.samples):
                sample("idle", None)
            crawl = scan_start(target=catalog.url)
            t0 = time.monotonic()
            while Scan.objects.filter(parent=crawl).count() < min(args.under_way, args.repos):
                time.sleep(0.5)
            crawl.refresh_from_db()
            done_at_start, t_start = crawl.repositories_done, time.monotonic()
            # While the catalog is listed (one bulk process busy with it) and after.
            while len(samples["crawl"]) < args.samples or not samples["crawl"][-1]["listed"]:
                if samples["crawl"]:
                    time.sleep(args.every)
                sample("crawl", crawl)
            # Beat's tasks ran to their end each time (the delays above time what they wrote first).
            logs = "".join(worker.log_text() for worker in started)
            control_errors = sum(
                "raised unexpected" in line and ("enqueue_due_scans" in line or "requeue_stuck_scans" in line)
                for line in logs.splitlines()
            )
            crawl.refresh_from_db()
            crawl_rate = (crawl.repositories_done - done_at_start) / (time.monotonic() - t_start)
            crawl_state = {
                "status": crawl.status,
                "repositories_done": crawl.repositories_done,
                "children_created": Scan.objects.filter(parent=crawl).count(),
                "seconds_since_start": round(time.monotonic() - t0, 1),
            }
        finally:
            for worker in started:
                worker.stop()
            app.control.purge()
    connections.close_all()
    if not args.keep:
        drop_database(dbname)

    def figures(phase: str) -> dict:
        rows = samples[phase]
        return {
            "one_tag_seconds": summary([r["one_tag_seconds"] for r in rows]),
            "enqueue_due_scans_delay": summary([r["enqueue_due_scans_delay"] for r in rows]),
            "requeue_stuck_scans_delay": summary([r["requeue_stuck_scans_delay"] for r in rows]),
            "bulk_queue_tasks_max": max(r["bulk_queue_tasks"] for r in rows),
        }

    result = {
        "repositories": args.repos,
        "workers": f"{args.concurrency} processes on every queue + 1 on control and interactive",
        "crawl_window": f"{settings.SCAN_CRAWL_WINDOW} batches of {settings.SCAN_TASK_BATCH}",
        "idle": figures("idle"),
        "during_crawl": figures("crawl"),
        "waiting_for_the_window_max": max(r["waiting_for_the_window"] for r in samples["crawl"]),
        "control_task_errors": control_errors,
        "one_tag_scans_failed": sum(
            r["one_tag_status"] != Scan.Status.SUCCEEDED for p in samples.values() for r in p
        ),
        "crawl": crawl_state,
        "crawl_repositories_per_second": round(crawl_rate, 1),
        "load_average_at_start": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
