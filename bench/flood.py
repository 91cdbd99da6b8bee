"""Benchmark: one reader floods the API for 30 s; how fast are another reader's `summary/` requests?

    .venv/bin/python -m bench.flood [--images 20000] [--seconds 30] [--attackers 8]

In one run, on loopback:

1. A database of `--images` images (`bench.generate`) and two readers with API tokens: the victim
   and the attacker.
2. The web as `make run` serves it (gunicorn, DEBUG off, the production limits, rates and login
   lockout), counting rates in a Redis database of its own (db 8, flushed first).
3. Baseline: the victim asks `summary/?registry=1` at a dashboard's pace (`--victim-rate` requests/s
   over 4 threads) for `--baseline` seconds.
4. Flood: for `--seconds`, the attacker's threads (`--attackers`, in a process of their own at
   `--attacker-nice`, so neither its GIL nor its CPU is the victim's) send, round robin, what cost
   most before the limits existed: what-if deletions of 1,000 enumerated tags and of the whole
   registry (POST), whole-list CSV exports of every image, 2 MB request bodies, and wrong passwords
   at the admin login (with its CSRF token); the victim goes on as in 3.
5. Prints the victim's p50 / p95 / p99 in both phases, the attacker's replies by status, and the CPU
   seconds the web, PostgreSQL, the victim's client and the attacker's spent during the flood,
   read from /proc (`of`: what two cores offer in that time).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "layerlens_bench_flood"
REDIS_DB = "redis://127.0.0.1:6379/8"
TARGET_P99_MS = 500.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _readers() -> dict[str, str]:
    """The victim's and the attacker's tokens (readers, not staff), made in the benchmark database."""
    from django.contrib.auth import get_user_model

    from analytics.tokens import token_create

    tokens = {}
    for name in ("victim", "attacker"):
        user = get_user_model().objects.create_user(name, password=secrets.token_urlsafe(12))
        tokens[name] = token_create(user=user, name="bench")[1]
    return tokens


def _server_env(port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        "CELERY_BROKER_URL": REDIS_DB,
        "LAYERLENS_REDIS_URL": REDIS_DB,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
    }


class Victim(threading.Thread):
    """One of the victim's threads: `summary/` at a steady pace, latencies kept per phase."""

    def __init__(
        self, base: str, token: str, registry: str, interval: float, latencies: dict[str, list[float]]
    ):
        super().__init__(daemon=True)
        self.base, self.token, self.registry = base, token, registry
        self.interval, self.latencies = interval, latencies
        self.phase = "baseline"
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}) as client:
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    status = client.get(
                        "/api/v1/summary/", params={"registry": self.registry}, timeout=30
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                took = time.perf_counter() - start
                self.statuses[status] += 1
                if status == 200:
                    self.latencies.setdefault(self.phase, []).append(took * 1000)
                self.stop.wait(max(0.0, self.interval - took))


class Attacker(threading.Thread):
    """One of the attacker's threads: the expensive and the forbidden, as fast as the server answers."""

    KINDS = ("whatif_tags", "whatif_registry", "csv", "huge_body", "login")

    def __init__(self, base: str, token: str, registry: str, tags: list[str], seed: int, kinds: list[str]):
        super().__init__(daemon=True)
        self.base, self.token, self.registry, self.tags, self.seed = base, token, registry, tags, seed
        self.kinds = [getattr(self, f"_{kind}") for kind in kinds]
        self.stop = threading.Event()
        self.statuses: Counter[str] = Counter()

    def run(self) -> None:
        import httpx

        auth = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base, timeout=60) as client:
            kinds = self.kinds
            i = self.seed
            while not self.stop.is_set():
                kind = kinds[i % len(kinds)]
                i += 1
                try:
                    status = kind(client, auth)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.statuses[f"{kind.__name__.strip('_')} {status}"] += 1

    def _whatif_tags(self, client, auth) -> int:
        return client.post("/api/v1/whatif/", json={"tags": self.tags}, headers=auth).status_code

    def _whatif_registry(self, client, auth) -> int:
        return client.post("/api/v1/whatif/", json={"registry": self.registry}, headers=auth).status_code

    def _csv(self, client, auth) -> int:
        with client.stream("GET", "/api/v1/images/", params={"format": "csv"}, headers=auth) as reply:
            for _ in reply.iter_bytes():
                pass
            return reply.status_code

    def _huge_body(self, client, auth) -> int:
        body = json.dumps({"tags": ["x" * 1000] * 2000})
        headers = {**auth, "Content-Type": "application/json"}
        return client.post("/api/v1/whatif/", content=body, headers=headers).status_code

    def _login(self, client, auth) -> int:
        page = client.get("/admin/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        data = {"username": "admin", "password": secrets.token_hex(8), "next": "/admin/"}
        if csrf:
            data["csrfmiddlewaretoken"] = csrf.group(1)
        return client.post(
            "/admin/login/", data=data, headers={"Referer": self.base + "/admin/login/"}
        ).status_code


def _attack(base: str, token: str, registry: str, tags: list[str], args, out) -> None:
    """The attacker's process: its threads for `args.seconds`, then their replies by status on `out`."""
    os.nice(args.attacker_nice)
    attackers = [
        Attacker(base, token, registry, tags, seed=i, kinds=args.kinds.split(","))
        for i in range(args.attackers)
    ]
    for a in attackers:
        a.start()
    time.sleep(args.seconds)
    for a in attackers:
        a.stop.set()
    replies: Counter[str] = Counter()
    for a in attackers:
        a.join(timeout=90)
        replies.update(a.statuses)
    out.put(replies)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--baseline", type=float, default=15)
    parser.add_argument("--attackers", type=int, default=8)
    parser.add_argument("--victim-rate", type=float, default=8, help="victim requests per second")
    parser.add_argument(
        "--kinds",
        default=",".join(Attacker.KINDS),
        help=f"what the attacker sends, comma-separated (default all: {', '.join(Attacker.KINDS)})",
    )
    parser.add_argument(
        "--attacker-nice",
        type=int,
        default=10,
        help="the attacker process's nice value (default 10: its client's CPU, which on this shared "
        "machine is taken from the server's, comes after the server's, as if it ran elsewhere)",
    )
    args = parser.parse_args()

    from bench.generate import generate
    from harness.proc import cpu_seconds, cpu_spent, postgres_pids, process_tree
    from harness.tools import free_loopback_port
    from harness.web import gunicorn_argv

    t0 = time.monotonic()
    generate(images=args.images, seed=1, database=DATABASE, log=lambda *a: None)
    print(f"database of {args.images:,} images in {time.monotonic() - t0:.0f} s", flush=True)
    from analytics.models import Registry, Tag

    tokens = _readers()
    registry = str(Registry.objects.get().id)
    tags = [
        f"{repo}:{tag}"
        for repo, tag in Tag.objects.filter(removed_at=None)
        .order_by("id")
        .values_list("repository__name", "name")[:1000]
    ]
    subprocess.run(["redis-cli", "-u", REDIS_DB, "FLUSHDB"], check=True, capture_output=True)

    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    (ROOT / "var").mkdir(exist_ok=True)
    log = open(ROOT / "var" / "bench-flood-web.log", "wb")  # noqa: SIM115 - the server keeps it
    server = subprocess.Popen(
        [sys.executable, "-m", *gunicorn_argv(port)], cwd=ROOT, env=_server_env(port), stdout=log, stderr=log
    )
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the web server did not start; see var/bench-flood-web.log")
            time.sleep(0.5)

        latencies: dict[str, list[float]] = {}
        victims = [
            Victim(base, tokens["victim"], registry, 4 / args.victim_rate, latencies) for _ in range(4)
        ]
        for v in victims:
            v.start()
        time.sleep(args.baseline)
        for v in victims:
            v.phase = "flood"

        def readings() -> dict[str, dict[int, float]]:
            return {
                "web": cpu_seconds(process_tree(server.pid)),
                "postgres": cpu_seconds(postgres_pids(DATABASE)),
                "victim client": cpu_seconds([os.getpid()]),
            }

        replies_queue = multiprocessing.get_context("fork").SimpleQueue()
        attacker = multiprocessing.get_context("fork").Process(
            target=_attack,
            args=(base, tokens["attacker"], registry, tags, args, replies_queue),
            daemon=True,
        )
        before = readings()
        attacker.start()
        before["attacker client"] = cpu_seconds([attacker.pid])
        time.sleep(args.seconds)
        after = {**readings(), "attacker client": cpu_seconds([attacker.pid])}
        replies = replies_queue.get()
        attacker.join(timeout=90)
        for v in victims:
            v.stop.set()
        for v in victims:
            v.join(timeout=90)
    finally:
        server.terminate()
        server.wait(timeout=30)

    victim_statuses: Counter[int] = Counter()
    for v in victims:
        victim_statuses.update(v.statuses)
    phases = {
        phase: {
            "requests": len(values),
            "p50_ms": round(statistics.median(values), 1) if values else None,
            "p95_ms": round(_percentile(values, 0.95), 1),
            "p99_ms": round(_percentile(values, 0.99), 1),
            "max_ms": round(max(values), 1) if values else None,
        }
        for phase, values in latencies.items()
    }
    cpu = {name: round(cpu_spent(before[name], after[name]), 1) for name in after}
    result = {
        "images": args.images,
        "cpu_seconds_during_flood": {**cpu, "of": round(2 * args.seconds, 1)},
        "seconds": args.seconds,
        "attacker_threads": args.attackers,
        "attacker_nice": args.attacker_nice,
        "victim": phases,
        "victim_statuses": dict(victim_statuses),
        "attacker_replies": dict(sorted(replies.items())),
        "target_flood_p99_ms": TARGET_P99_MS,
        "target_met": phases.get("flood", {}).get("p99_ms", float("inf")) < TARGET_P99_MS,
        "load_average_at_end": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
