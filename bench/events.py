"""Benchmark: following a registry by its events, on loopback with one Celery worker.

    .venv/bin/python -m bench.events [--pushes 200] [--burst 10000] [--connections 16] [--json out.json]
        [--database layerlens_bench_events] [--redis redis://127.0.0.1:6379/12]

What it starts (the product's parts, as it runs them):

- a fresh database `--database` (dropped and created at the start, left for inspection); the broker, the
  web's cache and rate counts and the apply task's pending key in the Redis database `--redis`;
- the web as the product serves it (gunicorn, config/gunicorn_conf.py, DEBUG off, JSON logs:
  `bench.sweep.start_server`), with request rates set generously (the latency poller reads the API
  many times a second from one user);
- one Celery worker (harness/celery_worker.py), one process, every queue, production settings;
- a real docker-registry (harness/registry.py) whose `notifications:` endpoint is the web's receiver for
  a registry row with an events secret (`Authorization: Bearer <secret>`).

What it measures:

1. Push-to-visible latency: `--pushes` images pushed one after another over the registry API
   (harness/pusher.py) into 10 repositories, each push new content (a layer and a config of its own),
   two in three over one of three shared bases (uploaded once, then mounted: reused layers). From the
   moment the manifest PUT is answered, the API (`GET /api/v1/tags/?registry=&name=`, an API token) is
   polled every 20 ms until it shows the tag on the pushed digest: p50, p99 (nearest rank) and max.
   Then the followed registry is compared with a fresh full scan of the same registry (through a
   loopback proxy, so another registry row): every current tag and its digest, and the stored bytes,
   which must also equal the registry's blob store on disk. A bench that lost events would fail here.
2. Inbox acceptance: `--burst` distribution envelopes (one event a request, as distribution 2.8
   sends; the shape of tests/fixtures/events/distribution_pull_manifest.json, each with its own id),
   pulls of one manifest pushed in step 1, sent by `wrk` with `--connections` connections (2 threads)
   and a Lua script writing each body. Accepted events/s: the events stored over the span between
   the first and the last one's `received_at` (the server's clock), and over the client's wall clock
   (wrk's start to the moment every event is stored, polled every 0.25 s: an upper bound). Then every
   event is stored (rows counted), every one applied (none pending, none failed) and the manifest's
   pull count equals the burst; how long applying took after the last was stored; how many apply
   tasks the worker ran for the burst (its own count, `inspect stats`).
3. CPU per event from /proc (harness/proc.py), sampled every 0.5 s so a process that leaves
   meanwhile still counts: the web server's processes, the worker's, PostgreSQL's (the benchmark
   database's backends and the server's own processes), wrk's and this process's; per accepted event
   while the burst is received, per applied event over the burst's receiving and applying. The same
   per push for step 1 (where a push is several events: blobs, mounts, the manifest). Per accepted
   event also by process group: gunicorn's master and workers; PostgreSQL's backends serving the web
   (told by their client ports, the web workers' sockets), the database's other backends and the
   server's own processes; the Redis server (the last two shared with whatever else runs).

The exit status is 1 when the followed registry differs from the full scan, an event is lost or
failed, or a request of the burst was not a 202; the targets (p99 < 2 s, >= 1,000 events/s) are printed
as met or missed, and do not change it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/12"
USERNAME = "bench-events"
TOKEN_NAME = "bench-events"
REPOSITORIES = 10
POLL_SECONDS = 0.02
VISIBLE_TIMEOUT = 60.0
TARGET_P99_SECONDS = 2.0
TARGET_EVENTS_PER_SECOND = 1000.0
BURST_REPOSITORY = "bench/app00"
STALL_SECONDS = 30

# One distribution envelope a request, each with its own id (`run-thread-counter`). A thread stops
# itself once every one of its events is answered; a connection with nothing left to send sends an
# empty request, i.e. nothing, and waits (wrk cannot stop a connection), so no filler load follows
# the burst. wrk's main thread sleeps its whole `-d`: the benchmark interrupts it (SIGINT, which wrk
# handles by printing its summary) once every event is stored.
WRK_SCRIPT = r"""
local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  threads[#threads + 1] = thread
end

local quota = tonumber(os.getenv("BURST_QUOTA"))
local template = os.getenv("BURST_TEMPLATE")
local run = os.getenv("BURST_RUN")
local headers = {
  ["Content-Type"] = "application/vnd.docker.distribution.events.v1+json",
  ["Authorization"] = "Bearer " .. os.getenv("BURST_SECRET"),
}
sent, accepted, refused = 0, 0, 0
local first = true

function request()
  -- wrk calls the first thread's request() once before any connection to check it, and sends
  -- nothing: each thread's first request is therefore a health check, not counted, never an event
  if first then
    first = false
    return wrk.format("GET", "/healthz")
  end
  if sent >= quota then
    return ""
  end
  sent = sent + 1
  local id = string.format("%s-%d-%07d", run, tid, sent)
  return wrk.format("POST", os.getenv("BURST_PATH"), headers, string.gsub(template, "EVENT_ID", id))
end

function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 elseif status ~= 200 then refused = refused + 1 end
  if accepted + refused >= quota then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local a, r, s = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted"); r = r + t:get("refused"); s = s + t:get("sent")
  end
  io.write(string.format(
    'BURST {"sent": %d, "accepted": %d, "refused": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"socket_errors": %d}\n', s, a, r, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Meter:
    """CPU seconds of a set of processes (`pids()`, asked again at each sample, so new ones count
    from zero and one that leaves counts up to its last sample), between start() and stop()."""

    def __init__(self, pids: Callable[[], list[int]], *, every: float = 0.5) -> None:
        self.pids = pids
        self.every = every
        self.first: dict[int, float] = {}
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        from harness.proc import cpu_seconds

        with contextlib.suppress(OSError):
            for pid, seconds in cpu_seconds(self.pids()).items():
                self.first.setdefault(pid, 0.0 if self._thread else seconds)
                self.seen[pid] = seconds

    def start(self) -> Meter:
        self._sample()  # the processes running now count from here, later ones from zero
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return self.seconds

    @property
    def seconds(self) -> float:
        return sum(t - self.first.get(p, 0.0) for p, t in self.seen.items())


class Meters:
    """One Meter per component, started and stopped together; wrk's CPU (a child waited for) from
    getrusage, this process's from its own."""

    def __init__(self, components: dict[str, Callable[[], list[int]]]) -> None:
        self.meters = {name: Meter(pids) for name, pids in components.items()}

    def __enter__(self) -> Meters:
        self.children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.own = time.process_time()
        for meter in self.meters.values():
            meter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.result = {name: meter.stop() for name, meter in self.meters.items()}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.result["wrk"] = (children.ru_utime + children.ru_stime) - (
            self.children.ru_utime + self.children.ru_stime
        )
        self.result["bench process"] = time.process_time() - self.own


# --- setting up ---


def _setup(database: str, redis_url: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    # the registry listens on loopback, which the SSRF policy refuses unless allowed (the worker and the
    # reference scan in this process read it)
    os.environ["LAYERLENS_ALLOWED_NETWORKS"] = "127.0.0.0/8,::1/128"
    # one key for the events secret in this process, the web and the worker (each has its own SECRET_KEY)
    from cryptography.fernet import Fernet

    os.environ["LAYERLENS_FERNET_KEYS"] = Fernet.generate_key().decode()
    from bench.sweep import _setup_django

    _setup_django(database, redis_url)
    from django.core.management import call_command

    from config.celery import app

    call_command("migrate", verbosity=0)
    app.control.purge()


def _token() -> str:
    from django.contrib.auth import get_user_model

    from analytics.tokens import token_create

    user, _ = get_user_model().objects.get_or_create(username=USERNAME, defaults={"is_staff": True})
    return token_create(user=user, name=TOKEN_NAME)[1]


def _followed_registry(url: str) -> tuple[int, str]:
    from analytics.registries import registry_upsert

    row = registry_upsert(url=url, name="followed")
    secret = secrets.token_urlsafe(24)
    row.set_events_secret(secret)
    row.save()
    return row.id, secret


# --- 1. push to visible ---


def push_latency(*, pushes: int, registry_url: str, api, registry_id: int, log=print) -> dict:
    """Push `pushes` images one after another; for each, seconds from the manifest PUT's answer until
    the API shows the tag on its digest."""
    from harness.pusher import Pusher, make_base

    bases = [make_base(f"events-bench-{i}", layers=2, size=16384 + 4096 * i) for i in range(3)]
    latencies: list[float] = []
    polls = 0
    pushed = []
    with Pusher(registry_url) as push:
        for i in range(pushes):
            repository = f"bench/app{i % REPOSITORIES:02d}"
            tag = f"v{i:04d}"
            base = bases[i % 3] if i % 3 else None  # two in three on a shared base
            image = push.image(repository, tag, seed=f"events-bench-{i}", base=base)
            done = time.perf_counter()
            while True:
                polls += 1
                reply = api.get("/api/v1/tags/", params={"registry": registry_id, "name": tag})
                reply.raise_for_status()
                rows = reply.json()["results"]
                if any(r["repository_name"] == repository and r["digest"] == image.digest for r in rows):
                    latencies.append(time.perf_counter() - done)
                    break
                if time.perf_counter() - done > VISIBLE_TIMEOUT:
                    raise SystemExit(f"{repository}:{tag} not visible after {VISIBLE_TIMEOUT:g} s")
                time.sleep(POLL_SECONDS)
            pushed.append(image)
            if (i + 1) % 50 == 0:
                log(f"pushed {i + 1}/{pushes}, last visible after {latencies[-1] * 1000:.0f} ms", flush=True)
    return {
        "pushes": pushes,
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(_percentile(latencies, 0.99), 3),
        "max_s": round(max(latencies), 3),
        "mean_s": round(statistics.fmean(latencies), 3),
        "polls": polls,
        "latencies_s": [round(x, 4) for x in latencies],
        "images": pushed,
    }


def _pending(registry_id: int) -> int:
    from analytics.models import RegistryEvent

    return RegistryEvent.objects.filter(registry_id=registry_id, applied_at__isnull=True).count()


def _wait(condition: Callable[[], bool], *, timeout: float, what: str, every: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def _current_tags(registry_id: int) -> dict[str, str]:
    from analytics.models import Tag

    rows = Tag.objects.filter(
        repository__registry_id=registry_id, removed_at__isnull=True, manifest__isnull=False
    ).values_list("repository__name", "name", "manifest__digest")
    return {f"{repo}:{tag}": digest for repo, tag, digest in rows}


def compare_with_full_scan(*, registry_id: int, server) -> dict:
    """The followed registry against a fresh full scan of the same registry into another row (through
    a loopback proxy, so its own URL), and the stored bytes against the blob store on disk."""
    from analytics.models import Registry, Scan
    from analytics.scans.start import scan_start_inline
    from analytics.selectors.scope import Scope
    from analytics.selectors.summary import dedup_summary
    from tests.support.slow_proxy import SlowProxy

    proxy = SlowProxy(server.url, delay=0).start()
    try:
        Registry.objects.filter(url=proxy.url).delete()
        scan = scan_start_inline(target=proxy.url.split("://", 1)[1])
    finally:
        proxy.stop()
    ours, theirs = _current_tags(registry_id), _current_tags(scan.registry_id)
    followed = dedup_summary(scope=Scope(registry_id=registry_id))
    scanned = dedup_summary(scope=Scope(registry_id=scan.registry_id))
    disk = server.blobstore_bytes()
    return {
        "scan_status": scan.status,
        "tags_followed": len(ours),
        "tags_scanned": len(theirs),
        "tags_equal": ours == theirs,
        "tags_only_followed": sorted(set(ours.items()) - set(theirs.items()))[:10],
        "tags_only_scanned": sorted(set(theirs.items()) - set(ours.items()))[:10],
        "stored_bytes_followed": followed.stored_bytes,
        "stored_bytes_scanned": scanned.stored_bytes,
        "blobstore_bytes": disk,
        "images_followed": followed.images,
        "images_scanned": scanned.images,
        "followed_scans": Scan.objects.filter(registry_id=registry_id).count(),  # 0: events alone
        "equal": scan.status == Scan.Status.SUCCEEDED
        and ours == theirs
        and followed.stored_bytes == scanned.stored_bytes == disk
        and followed.images == scanned.images,
    }


# --- 2. the burst ---


def burst_template(*, registry_host: str, repository: str, image) -> str:
    """A distribution 2.8 pull envelope of `image` (tests/fixtures/events/distribution_pull_manifest.json's
    shape), its id `EVENT_ID`."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    envelope = {
        "events": [
            {
                "id": "EVENT_ID",
                "timestamp": now,
                "action": "pull",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": len(image.manifest),
                    "digest": image.digest,
                    "length": len(image.manifest),
                    "repository": repository,
                    "url": f"http://{registry_host}/v2/{repository}/manifests/{image.digest}",
                    "tag": image.tag,
                },
                "request": {
                    "id": "7f1c2b9e-0a53-4c1e-9a0e-2d6d3c1f4b21",
                    "addr": "127.0.0.1:36446",
                    "host": registry_host,
                    "method": "GET",
                    "useragent": "containerd/v1.7.24",
                },
                "actor": {},
                "source": {"addr": "vm:5000", "instanceID": "d4c3438f-77a6-4da0-8fd4-a22a0e7e73b7"},
            }
        ]
    }
    return json.dumps(envelope, indent=2)


def burst(
    *,
    base: str,
    registry_id: int,
    secret: str,
    events: int,
    connections: int,
    template: str,
    components: dict[str, Callable[[], list[int]]],
    log=print,
) -> dict:
    import psycopg
    from django.db import connection

    from analytics.models import RegistryEvent
    from harness.tools import require_tool

    wrk = require_tool("wrk")
    threads = min(2, connections)
    if events % threads:
        raise SystemExit(f"--burst must be a multiple of the {threads} wrk threads")
    run = f"burst-{secrets.token_hex(4)}"
    key_prefix = f"distribution:{run}-"
    table = RegistryEvent._meta.db_table
    dsn = "postgresql://postgres@127.0.0.1:5432/" + connection.settings_dict["NAME"]

    def stored(conn) -> int:
        return conn.execute(
            f"SELECT count(*) FROM {table} WHERE registry_id = %s AND key LIKE %s",
            [registry_id, key_prefix + "%"],
        ).fetchone()[0]

    with tempfile.TemporaryDirectory() as tmp, psycopg.connect(dsn, autocommit=True) as conn:
        script = Path(tmp, "burst.lua")
        script.write_text(WRK_SCRIPT)
        env = {
            **os.environ,
            "BURST_QUOTA": str(events // threads),
            "BURST_TEMPLATE": template,
            "BURST_RUN": run,
            "BURST_SECRET": secret,
            "BURST_PATH": f"/api/v1/registries/{registry_id}/events/",
        }
        tasks_before = apply_tasks_run()
        with Meters(components) as receiving:
            started = time.monotonic()
            proc = subprocess.Popen(
                [
                    wrk,
                    f"-t{threads}",
                    f"-c{connections}",
                    "-d600s",
                    "--timeout",
                    "30s",
                    "-s",
                    str(script),
                    base,
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                # until every event is stored, wrk has died, or nothing came in for STALL_SECONDS (an
                # event lost on the way: reported below, not waited for)
                count, progress = 0, time.monotonic()
                while count < events and proc.poll() is None:
                    time.sleep(0.25)
                    now, count_before, count = time.monotonic(), count, stored(conn)
                    if count != count_before:
                        progress = now
                    elif now - progress > STALL_SECONDS:
                        log(f"no event stored for {STALL_SECONDS} s: {count:,} of {events:,}", flush=True)
                        break
                all_stored = time.monotonic()
            finally:
                proc.send_signal(signal.SIGINT)  # wrk prints its summary and done() on SIGINT
                out, err = proc.communicate(timeout=60)
        log(f"burst stored in {all_stored - started:.1f} s (wall, polled)", flush=True)
        with Meters(components) as applying:
            _wait(lambda: _pending(registry_id) == 0, timeout=900, what="the burst to be applied")
            applied_wall = time.monotonic()
        tasks_after = apply_tasks_run()
        row = conn.execute(
            f"""SELECT count(*), count(applied_at), count(*) FILTER (WHERE outcome = 'failed'),
                       min(received_at), max(received_at), max(applied_at)
                FROM {table} WHERE registry_id = %s AND key LIKE %s""",
            [registry_id, key_prefix + "%"],
        ).fetchone()
    found = [line for line in out.splitlines() if line.startswith("BURST ")]
    if not found:
        raise SystemExit(f"wrk printed no summary:\n{out}\n{err}")
    client = json.loads(found[0].removeprefix("BURST "))
    count, applied, failed, first, last, last_applied = row
    span = (last - first).total_seconds()
    return {
        "events": events,
        "connections": connections,
        "wrk": client,
        "stored": count,
        "applied": applied,
        "failed": failed,
        "receive_span_s": round(span, 3),
        "accepted_per_s": round((count - 1) / span, 1) if span > 0 else None,
        "wall_s": round(all_stored - started, 3),
        "accepted_per_s_wall": round(count / (all_stored - started), 1),
        "applied_after_last_stored_s": round((last_applied - last).total_seconds(), 3),
        "apply_wall_s": round(applied_wall - all_stored, 3),
        "cpu_receiving_s": {k: round(v, 3) for k, v in receiving.result.items()},
        "cpu_applying_s": {k: round(v, 3) for k, v in applying.result.items()},
        "apply_tasks": tasks_after - tasks_before if None not in (tasks_before, tasks_after) else None,
    }


def apply_tasks_run() -> int | None:
    """The apply tasks the worker has run since it started (its own count, `inspect stats`): how many a
    burst cost is the difference. None when the worker does not answer."""
    from config.celery import app

    replies = app.control.inspect(timeout=5).stats() or {}
    if not replies:
        return None
    return sum(r.get("total", {}).get("workers.tasks.apply_registry_events", 0) for r in replies.values())


def _pulls(registry_id: int, repository: str, digest: str) -> int:
    from analytics.models import ManifestPulls

    row = ManifestPulls.objects.filter(
        repository__registry_id=registry_id, repository__name=repository, digest=digest
    ).first()
    return row.pulls if row else 0


def _process_groups(web: int, database: str) -> dict[str, Callable[[], list[int]]]:
    """The same CPU finer (GROUPS): gunicorn's master and its workers; PostgreSQL's backends of the web,
    the database's others (the worker's, this process's) and the server's own processes (shared with
    every database on it, as is Redis's server)."""
    from harness.proc import named_pids, postgres_groups, process_tree

    kept: dict[str, object] = {"at": 0.0, "groups": {}}

    def groups() -> dict[str, list[int]]:
        if time.monotonic() - kept["at"] > 0.25:  # type: ignore[operator]
            workers = [p for p in process_tree(web) if p != web]
            kept.update(at=time.monotonic(), groups=postgres_groups(database, workers))
        return kept["groups"]  # type: ignore[return-value]

    return {
        "web master": lambda: [web],
        "web workers": lambda: [p for p in process_tree(web) if p != web],
        "postgres, the web's backends": lambda: groups()["clients"],
        "postgres, other backends": lambda: groups()["others"],
        "postgres, the server's own": lambda: groups()["server"],
        "redis server": lambda: named_pids("redis-server"),
    }


GROUPS = (
    "web master",
    "web workers",
    "postgres, the web's backends",
    "postgres, other backends",
    "postgres, the server's own",
    "redis server",
)


# --- reporting ---


def _ms_per(seconds: dict[str, float], n: int) -> dict[str, float]:
    return {k: round(1000 * v / max(1, n), 3) for k, v in seconds.items()}


def report(result: dict) -> str:
    lat, ref, b = result["latency"], result["full_scan"], result["burst"]
    lines = [
        f"## push to visible: {lat['pushes']} pushes, one after another (API polled every "
        f"{POLL_SECONDS * 1000:.0f} ms)",
        "",
        "| p50 | p99 | max | mean | target p99 |",
        "|---|---|---|---|---|",
        f"| {lat['p50_s'] * 1000:,.0f} ms | {lat['p99_s'] * 1000:,.0f} ms | {lat['max_s'] * 1000:,.0f} ms | "
        f"{lat['mean_s'] * 1000:,.0f} ms | < {TARGET_P99_SECONDS:g} s: "
        f"{'met' if lat['p99_s'] < TARGET_P99_SECONDS else 'MISSED'} |",
        "",
        f"events of the pushes: {lat['events']:,} stored ({lat['events_per_push']:.1f} a push: blobs, "
        f"mounts, the manifest), {lat['events_failed']} failed",
        "",
        f"followed registry against a full scan: tags {ref['tags_followed']} / {ref['tags_scanned']}, "
        f"stored bytes {ref['stored_bytes_followed']:,} / {ref['stored_bytes_scanned']:,} (blob store "
        f"{ref['blobstore_bytes']:,}), images {ref['images_followed']} / {ref['images_scanned']}, scans of "
        f"the followed registry {ref['followed_scans']}: **{'equal' if ref['equal'] else 'DIFFERENT'}**",
        "",
        f"## inbox: a burst of {b['events']:,} pull events, one a request, {b['connections']} connections "
        "(wrk)",
        "",
        "| accepted events/s (server span) | (client wall) | wrk p50 / p99 / max | stored | applied | failed "
        "| pull count | applied after the last stored | target |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {b['accepted_per_s']:,.0f} ({b['receive_span_s']:.2f} s) | {b['accepted_per_s_wall']:,.0f} "
        f"({b['wall_s']:.2f} s) | {b['wrk']['p50_us'] / 1000:.1f} / {b['wrk']['p99_us'] / 1000:.1f} / "
        f"{b['wrk']['max_us'] / 1000:.1f} ms | {b['stored']:,} | {b['applied']:,} | {b['failed']} | "
        f"{b['pull_count']:,} | {b['applied_after_last_stored_s']:.2f} s | "
        f">= {TARGET_EVENTS_PER_SECOND:,.0f}/s: "
        f"{'met' if b['accepted_per_s'] and b['accepted_per_s'] >= TARGET_EVENTS_PER_SECOND else 'MISSED'} |",
        "",
        f"apply tasks the worker ran for the burst: {b.get('apply_tasks')}",
        "",
        "## CPU per event (ms, from /proc)",
        "",
        "| | web | worker | PostgreSQL | registry | wrk | bench process |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, cpu in (
        ("per push (step 1, its several events)", result["cpu_ms_per_push"]),
        ("per accepted event, while receiving", result["cpu_ms_per_accepted_event"]),
        ("per applied event, receiving and applying", result["cpu_ms_per_applied_event"]),
    ):
        lines.append(
            f"| {label} | {cpu.get('web', 0):.3f} | {cpu.get('worker', 0):.3f} | "
            f"{cpu.get('postgres', 0):.3f} | "
            f"{cpu.get('registry', 0):.3f} | {cpu.get('wrk', 0):.3f} | {cpu.get('bench process', 0):.3f} |"
        )
    cpu = result["cpu_ms_per_accepted_event"]
    lines += [
        "",
        "Per accepted event, by process group (ms; the PostgreSQL server's own processes and Redis's server "
        "serve every database and client on the machine):",
        "",
        "| " + " | ".join(GROUPS) + " | worker | wrk |",
        "|" + "---|" * (len(GROUPS) + 2),
        "| "
        + " | ".join(f"{cpu.get(g, 0):.3f}" for g in GROUPS)
        + f" | {cpu.get('worker', 0):.3f} | {cpu.get('wrk', 0):.3f} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--burst", type=int, default=10_000, help="events in the burst (a multiple of 2)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE", "layerlens_bench_events"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", REDIS_URL))
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.pushes < 1 or args.burst < 2:
        parser.error("--pushes at least 1, --burst at least 2")

    import httpx

    _setup(args.database, args.redis)
    from analytics.models import RegistryEvent
    from bench.sweep import start_server
    from harness.celery_worker import CeleryWorker
    from harness.proc import postgres_pids, process_tree
    from harness.registry import Notify, RegistryServer
    from harness.tools import free_loopback_port

    token = _token()
    registry_port = free_loopback_port()
    registry_id, secret = _followed_registry(f"http://127.0.0.1:{registry_port}")
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()
    server = start_server(args.database, args.redis, port, ROOT / "var" / "bench-events-web.log")
    production = {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "LAYERLENS_REDIS_URL": args.redis,
    }
    worker = CeleryWorker(database_name=args.database, broker_url=args.redis, concurrency=1, env=production)
    notify = Notify(
        f"{base}/api/v1/registries/{registry_id}/events/",
        headers={"Authorization": f"Bearer {secret}"},
        backoff="500ms",
    )
    api = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"})
    try:
        worker.start()
        with RegistryServer(port=registry_port, notify=notify) as registry:
            assert worker.proc is not None and registry.proc is not None
            components: dict[str, Callable[[], list[int]]] = {
                "web": lambda: process_tree(server.pid),
                "worker": lambda: process_tree(worker.proc.pid),  # type: ignore[union-attr]
                "postgres": lambda: postgres_pids(args.database),
                "registry": lambda: [registry.proc.pid],  # type: ignore[union-attr]
                **_process_groups(server.pid, args.database),
            }
            with Meters(components) as pushing:
                latency = push_latency(
                    pushes=args.pushes, registry_url=registry.url, api=api, registry_id=registry_id
                )
                # the last blob and pull events of the pushes, in flight a moment after the manifest's
                time.sleep(1)
                _wait(lambda: _pending(registry_id) == 0, timeout=120, what="the pushes' last events")
            events = RegistryEvent.objects.filter(registry_id=registry_id)
            latency["events"] = events.count()
            latency["events_per_push"] = latency["events"] / args.pushes
            latency["events_failed"] = events.filter(outcome=RegistryEvent.Outcome.FAILED).count()
            print("comparing with a full scan", flush=True)
            full_scan = compare_with_full_scan(registry_id=registry_id, server=registry)

            known = next(i for i in latency["images"] if i.repository == BURST_REPOSITORY)
            template = burst_template(registry_host=registry.host, repository=BURST_REPOSITORY, image=known)
            pulls_before = _pulls(registry_id, BURST_REPOSITORY, known.digest)
            del components["registry"]  # the burst never reaches it (pulls are counted, not read)
            burst_result = burst(
                base=base,
                registry_id=registry_id,
                secret=secret,
                events=args.burst,
                connections=args.connections,
                template=template,
                components=components,
            )
            burst_result["pull_count"] = _pulls(registry_id, BURST_REPOSITORY, known.digest) - pulls_before
    finally:
        api.close()
        worker.stop()
        # what the worker did (a late event's retry shows here), beside the web's log
        (ROOT / "var" / "bench-events-worker.log").write_text(worker.log_text())
        server.terminate()
        server.wait(timeout=30)
    load_after = os.getloadavg()

    b = burst_result
    receiving, applying = b["cpu_receiving_s"], b["cpu_applying_s"]
    both = {k: receiving.get(k, 0) + applying.get(k, 0) for k in receiving}
    del latency["images"]
    result = {
        "latency": latency,
        "full_scan": full_scan,
        "burst": b,
        "cpu_ms_per_push": _ms_per(pushing.result, args.pushes),
        "cpu_ms_per_accepted_event": _ms_per(receiving, b["stored"]),
        "cpu_ms_per_applied_event": _ms_per(both, b["applied"]),
        "targets_met": {
            "push_to_visible_p99_under_2s": latency["p99_s"] < TARGET_P99_SECONDS,
            "accepted_at_least_1000_per_s": bool(b["accepted_per_s"])
            and b["accepted_per_s"] >= TARGET_EVENTS_PER_SECOND,
        },
        "load_average": {"start": load_before, "end": load_after},
        "cpus": os.cpu_count(),
    }
    print()
    print(report(result))
    print()
    print(f"load average at start {load_before[0]:.2f}, at end {load_after[0]:.2f}; {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    lost = (
        not full_scan["equal"]
        or latency["events_failed"]
        or b["stored"] != args.burst
        or b["applied"] != args.burst
        or b["failed"]
        or b["pull_count"] != args.burst
        or b["wrk"]["accepted"] != args.burst
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
