"""Benchmark: every GET endpoint of the API and every page under /ui/, timed one by one, then a load run.

    .venv/bin/python -m bench.sweep --database layerlens_bench_scale [--runs 5] [--load-seconds 30]
        [--connections 16] [--json out.json] [--also PATH ...] [--seed-missing] [--load-only]

Against a database made by `bench.generate` (or any Layerlens database), on loopback:

1. The web as the product serves it: gunicorn with config/gunicorn_conf.py (gthread, 2 workers of
   WEB_THREADS threads; `harness.web.gunicorn_argv`), DEBUG off, JSON logs, its cache and rate counts in
   a Redis database of its own (`--redis`, default db 11). The request rates are set generously through
   the environment (LAYERLENS_THROTTLE_USER, _ANON, _EXPENSIVE and _LOGIN at 1000000/min): a sweep and
   a load run from one user would otherwise meet the 1200/min user rate and the 20/min expensive one.
   The counting itself still runs on every request, as in production.
2. A staff user `bench-sweep` (its password reset each run) with an API token made for the run and
   revoked at its end; the pages are read with that user's session, from the real login form.
3. What is requested: every GET path of the OpenAPI schema (`/api/schema/`, read from the server),
   first page, default ordering, and again with `?registry=<id>` where the schema lists a `registry`
   query parameter; every URL pattern of analytics/web/urls.py, again with `?registry=<id>` on the pages
   that read one (`UI_REGISTRY_PAGES`). Path parameters come from the data, chosen with SQL
   (`pick`): the largest registry and repository, the image with the most layers (then tags), the
   base image of the hottest layer (fewest layers among its holders) for `derived/`, the hottest layer
   (most images), the tag with the most events, the newest tag event, the scan with the most errors,
   the engine with the most images and its newest scan. A path parameter the sweep does not know is an
   error, so a new kind of endpoint cannot be skipped silently; a kind the database has no row of
   (a generated database has no scans or engines) is listed as not visited, unless `--seed-missing`
   adds one finished scan with an error, one engine (never contacted) with one scan and one finished
   what-if job of the sweep's user (a job is read by its owner only).
   `/ui/login/` is read without a session; `/ui/logout/` is POSTed (its only method) with a session
   logged in for it, and its 302 is its success.
4. Each request once to warm, then `--runs` rounds over all of them (round robin, so noise spreads over
   every endpoint): status, bytes, median, p99 (nearest rank: with fewer than 100 runs, the slowest
   run but one at most) and max. Slowest first; `SLOW` over 200 ms median or 500 ms p99; any status
   other than 2xx (or the expected 302 of logout) is an error and makes the exit status 1.
5. Load: `wrk` with `--connections` connections (2 threads) for `--load-seconds` on each of
   `summary/`, `images/`, `layers/`, `tags/` with the API token: requests/s, p50, p99, max, errors
   (socket errors, and statuses of 400 and over, which wrk counts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/11"
GENEROUS_RATE = "1000000/min"
SLOW_MEDIAN_MS = 200.0
SLOW_P99_MS = 500.0
LOAD_PATHS = ("/api/v1/summary/", "/api/v1/images/", "/api/v1/layers/", "/api/v1/tags/")
USERNAME = "bench-sweep"
TOKEN_NAME = "bench-sweep"

# Which picked row fills a path parameter, by the schema path it appears in (first match wins).
API_PICKS: tuple[tuple[str, str], ...] = (
    (r"^/api/v1/images/\{id\}/derived/$", "base_image"),
    (r"^/api/v1/images/\{id\}/", "image"),
    (r"^/api/v1/tags/\{id\}/", "tag"),
    (r"^/api/v1/tag-events/\{id\}/", "tag_event"),
    (r"^/api/v1/registries/\{id\}/", "registry"),
    (r"^/api/v1/repositories/\{id\}/", "repository"),
    (r"^/api/v1/scans/\{id\}/", "scan"),
    (r"^/api/v1/engines/\{id\}/", "engine"),
    (r"^/api/v1/engine-scans/\{id\}/", "engine_scan"),
    (r"^/api/v1/layers/\{digest\}/", "layer"),
    (r"^/api/v1/whatif/jobs/\{id\}/", "whatif_job"),
    (r"^/api/v1/policies/\{id\}/", "policy"),
)
# The same for the pages' URL patterns (the route as written in analytics/web/urls.py).
UI_PICKS: dict[str, str] = {"images/<int:pk>/": "image"}
# Pages that read `?registry=` (analytics/web/views.py `_registry`); the others are swept once.
UI_REGISTRY_PAGES = frozenset({"", "layers/", "lineage/", "whatif/"})
# Which picked value fills a query parameter the schema marks required.
QUERY_PICKS: dict[str, str] = {"registry": "registry", "start": "start", "end": "end"}
# A GET whose bare form is a 400 by design, with no parameter marked required (what-if needs one of
# several rules), gets the least it needs: {path: {param: pick}}.
REQUIRED_QUERY: dict[str, dict[str, str]] = {"/api/v1/whatif/": {"repository": "repository_name"}}


@dataclass
class Picks:
    registry: int | None = None
    repository: int | None = None
    repository_name: str | None = None
    image: int | None = None
    base_image: int | None = None
    layer: str | None = None
    tag: int | None = None
    tag_event: int | None = None
    scan: int | None = None
    engine: int | None = None
    engine_scan: int | None = None
    whatif_job: int | None = None
    policy: int | None = None
    start: str | None = None
    end: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    template: str  # the schema path or /ui/ route, with `?registry=` when it is that variant
    url: str  # what is requested
    face: str  # "api" (token) or "ui" (session; "anon" for the login page)
    method: str = "GET"
    expect: int | None = None  # a non-2xx status that is this request's success (logout's 302)
    statuses: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)

    def ok(self, status: int) -> bool:
        return 200 <= status < 300 or status == self.expect


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# --- what to request --------------------------------------------------------------------------------------


def pick(dsn: str) -> Picks:
    """The rows that fill path parameters: the busiest of each kind, read with SQL."""
    import psycopg

    p = Picks()
    with psycopg.connect(dsn) as conn:

        def one(sql: str, *args):
            row = conn.execute(sql, args).fetchone()
            return row if row else (None,) * 8

        p.registry, n = one(
            "SELECT r.id, count(p.id) FROM analytics_registry r LEFT JOIN analytics_repository p "
            "ON p.registry_id = r.id GROUP BY r.id ORDER BY count(p.id) DESC, r.id LIMIT 1"
        )[:2]
        p.notes["registry"] = f"most repositories ({n})"
        p.repository, p.repository_name, n = one(
            "SELECT p.id, p.name, count(*) FROM analytics_repositorymanifest h "
            "JOIN analytics_repository p ON p.id = h.repository_id "
            "JOIN analytics_manifest m ON m.id = h.manifest_id AND m.kind = 'image' "
            "WHERE h.present GROUP BY p.id ORDER BY count(*) DESC, p.id LIMIT 1"
        )[:3]
        p.notes["repository"] = f"most images ({n})"
        p.image, layers, tags = one(
            "SELECT h.id, m.layer_count, (SELECT count(*) FROM analytics_tag t WHERE t.repository_id = "
            "h.repository_id AND t.manifest_id = h.manifest_id AND t.removed_at IS NULL) AS tags "
            "FROM analytics_repositorymanifest h JOIN analytics_manifest m ON m.id = h.manifest_id "
            "WHERE h.present AND m.kind = 'image' ORDER BY m.layer_count DESC, tags DESC, h.id LIMIT 1"
        )[:3]
        p.notes["image"] = f"most layers ({layers}), then tags ({tags})"
        p.layer, images, blob = one(
            "SELECT b.digest, rb.images, b.id FROM analytics_registryblob rb "
            "JOIN analytics_blob b ON b.id = rb.blob_id WHERE rb.registry_id = %s AND rb.layer_refs > 0 "
            "ORDER BY rb.images DESC, b.id LIMIT 1",
            p.registry,
        )[:3]
        p.notes["layer"] = f"most images ({images})"
        p.base_image, layers = one(
            "SELECT h.id, m.layer_count FROM analytics_manifestlayer ml "
            "JOIN analytics_manifest m ON m.id = ml.manifest_id AND m.kind = 'image' "
            "JOIN analytics_repositorymanifest h ON h.manifest_id = m.id AND h.present "
            "WHERE ml.blob_id = %s ORDER BY m.layer_count, h.id LIMIT 1",
            blob,
        )[:2]
        p.notes["base_image"] = f"fewest layers ({layers}) among the hottest layer's images"
        p.tag, n = one(
            "SELECT tag_id, count(*) FROM analytics_tagevent GROUP BY tag_id "
            "ORDER BY count(*) DESC, tag_id LIMIT 1"
        )[:2]
        p.notes["tag"] = f"most events ({n})"
        if p.tag is None:
            p.tag = one("SELECT id FROM analytics_tag ORDER BY id LIMIT 1")[0]
            p.notes["tag"] = "the first (no tag events)"
        p.tag_event = one("SELECT id FROM analytics_tagevent ORDER BY seen_at DESC, id DESC LIMIT 1")[0]
        p.notes["tag_event"] = "the newest"
        p.scan, n = one(
            "SELECT s.id, count(e.id) FROM analytics_scan s LEFT JOIN analytics_scanerror e "
            "ON e.scan_id = s.id GROUP BY s.id ORDER BY count(e.id) DESC, s.id DESC LIMIT 1"
        )[:2]
        p.notes["scan"] = f"most errors ({n})"
        p.engine, n = one(
            "SELECT e.id, count(i.id) FROM analytics_engine e LEFT JOIN analytics_engineimage i "
            "ON i.engine_id = e.id GROUP BY e.id ORDER BY count(i.id) DESC, e.id LIMIT 1"
        )[:2]
        p.notes["engine"] = f"most images ({n})"
        p.engine_scan = (
            one(
                "SELECT id FROM analytics_enginescan WHERE engine_id = %s ORDER BY created_at DESC, id DESC "
                "LIMIT 1",
                p.engine,
            )[0]
            or one("SELECT id FROM analytics_enginescan ORDER BY created_at DESC, id DESC LIMIT 1")[0]
        )
        p.notes["engine_scan"] = "the engine's newest"
        # a job is read by its owner only: the sweep's user's newest
        p.whatif_job = one(
            "SELECT j.id FROM analytics_whatifjob j JOIN auth_user u ON j.owner = 'user:' || u.id "
            "WHERE u.username = %s ORDER BY j.id DESC LIMIT 1",
            USERNAME,
        )[0]
        p.notes["whatif_job"] = "the sweep user's newest"
        p.policy, n = one(
            "SELECT p.id, count(e.id) FROM analytics_cleanuppolicy p LEFT JOIN analytics_policyevaluation e "
            "ON e.policy_id = p.id GROUP BY p.id ORDER BY count(e.id) DESC, p.id LIMIT 1"
        )[:2]
        p.notes["policy"] = f"most evaluations ({n})"
        start, end = one(
            "SELECT min(taken_at), max(taken_at) FROM analytics_summarysnapshot WHERE repository_id = %s",
            p.repository,
        )[:2]
        if start is None:
            start, end = one("SELECT min(first_seen), now() FROM analytics_repository")[:2]
        p.start, p.end = (v.isoformat() if v else None for v in (start, end))
        p.notes["start"] = p.notes["end"] = "the repository's first and last snapshots"
    return p


def api_requests(schema: dict, picks: Picks) -> tuple[list[Request], list[tuple[str, str]]]:
    """Every GET path of `schema`: the first page, and the `?registry=` variant where one is accepted;
    with the paths that could not be filled for want of a row (template, reason)."""
    requests: list[Request] = []
    skipped: list[tuple[str, str]] = []
    for template, operations in schema["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        parameters = [*operations.get("parameters", []), *get.get("parameters", [])]
        path_names = [p["name"] for p in parameters if p["in"] == "path"]
        url = template
        missing = None
        if path_names:
            kind = next((k for pattern, k in API_PICKS if re.search(pattern, template)), None)
            if kind is None or len(path_names) != 1:
                raise LookupError(f"no row picked for {path_names} of {template}: add it to API_PICKS")
            value = getattr(picks, kind)
            if value is None:
                missing = f"no {kind.replace('_', ' ')} in the database"
            url = template.replace("{" + path_names[0] + "}", str(value))
        if missing:
            skipped.append((template, missing))
            continue
        wanted = dict(REQUIRED_QUERY.get(template, {}))
        for p in parameters:
            if p["in"] == "query" and p.get("required"):
                if p["name"] not in QUERY_PICKS:
                    raise LookupError(f"no value for {p['name']} of {template}: add it to QUERY_PICKS")
                wanted[p["name"]] = QUERY_PICKS[p["name"]]
        query = {name: str(getattr(picks, kind)) for name, kind in wanted.items()}
        shown = template + ("?" + "&".join(f"{name}=" for name in query) if query else "")
        requests.append(Request(shown, url + (f"?{urlencode(query)}" if query else ""), "api"))
        accepts = any(p["name"] == "registry" and p["in"] == "query" for p in parameters)
        if accepts and "registry" not in query and picks.registry:
            requests.append(
                Request(f"{template}?registry=", f"{url}?{urlencode({'registry': picks.registry})}", "api")
            )
    return requests, skipped


def ui_routes() -> list[str]:
    """The routes of analytics/web/urls.py, as written there (relative to /ui/)."""
    from analytics.web.urls import urlpatterns

    return [str(p.pattern) for p in urlpatterns]


def ui_requests(routes: list[str], picks: Picks) -> tuple[list[Request], list[tuple[str, str]]]:
    requests: list[Request] = []
    skipped: list[tuple[str, str]] = []
    for route in routes:
        template = f"/ui/{route}"
        url = template
        for param in re.findall(r"<(?:\w+:)?(\w+)>", route):
            kind = UI_PICKS.get(route)
            if kind is None:
                raise LookupError(f"no row picked for {param} of {template}: add it to UI_PICKS")
            value = getattr(picks, kind)
            if value is None:
                skipped.append((template, f"no {kind} in the database"))
                break
            url = re.sub(r"<(?:\w+:)?" + param + ">", str(value), url)
        else:
            if route == "login/":
                requests.append(Request(template, url, "anon"))
            elif route == "logout/":
                requests.append(Request(template, url, "logout", method="POST", expect=302))
            else:
                requests.append(Request(template, url, "ui"))
                if route in UI_REGISTRY_PAGES and picks.registry:
                    variant = f"{url}?registry={picks.registry}"
                    requests.append(Request(f"{template}?registry=", variant, "ui"))
    return requests, skipped


# --- the database's side: the user, the token, the rows a generated database lacks ------------------------


def _setup_django(database: str, redis_url: str) -> None:
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)  # under pytest: the test settings, not these
    os.environ["CELERY_BROKER_URL"] = redis_url
    os.environ["LAYERLENS_REDIS_URL"] = redis_url
    from bench.generate import _setup_django as setup

    setup(database)


def make_user() -> tuple[str, str]:
    """The sweep's staff user (created once, its password new each run) and a new token: (password, token)."""
    from django.contrib.auth import get_user_model

    from analytics.errors import NotFound
    from analytics.tokens import token_create, token_revoke

    user, _ = get_user_model().objects.get_or_create(username=USERNAME, defaults={"is_staff": True})
    password = secrets.token_urlsafe(16)
    user.is_staff = True
    user.is_active = True
    user.set_password(password)
    user.save()
    with contextlib.suppress(NotFound):
        token_revoke(user=user, name=TOKEN_NAME)  # a run that died before revoking its own
    return password, token_create(user=user, name=TOKEN_NAME)[1]


def revoke_token() -> None:
    from django.contrib.auth import get_user_model

    from analytics.tokens import token_revoke

    token_revoke(user=get_user_model().objects.get(username=USERNAME), name=TOKEN_NAME)


def seed_missing() -> list[str]:
    """One finished registry scan with an error, one engine (an address never contacted) with one
    scan, one finished what-if job of the sweep's user, and one saved cleanup policy with one point (a
    refusal, so no figure is made up), where the database has none: so every endpoint has a row to read."""
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from analytics import jobs
    from analytics.models import (
        CleanupPolicy,
        Engine,
        EngineScan,
        PolicyEvaluation,
        Registry,
        Scan,
        ScanError,
        WhatIfJob,
    )
    from analytics.policies.saved import policy_text_check
    from analytics.selectors import whatif

    added = []
    now = timezone.now()
    registry = Registry.objects.order_by("id").first()
    if registry is not None and not Scan.objects.exists():
        scan = Scan.objects.create(
            kind=Scan.Kind.REGISTRY,
            registry=registry,
            status=Scan.Status.PARTIAL,
            trigger="cli",
            started_at=now,
            finished_at=now,
            errors_count=1,
        )
        ScanError.objects.create(
            scan=scan, repository="sweep/seed", reference="latest", kind="manifest", message="seeded"
        )
        added.append(f"scan {scan.id}")
    if not Engine.objects.exists():
        engine = Engine.objects.create(name="bench-sweep-seed", endpoint="tcp://192.0.2.1:2376")
        EngineScan.objects.create(
            engine=engine, status=Scan.Status.SUCCEEDED, started_at=now, finished_at=now
        )
        added.append(f"engine {engine.id}")
    user, _ = get_user_model().objects.get_or_create(username=USERNAME, defaults={"is_staff": True})
    owner = f"user:{user.pk}"
    if registry is not None and not WhatIfJob.objects.filter(owner=owner).exists():
        impact = whatif.registry_whole_impact(registry_id=registry.id, limit=settings.WHATIF_JOB_DETAILS)
        job = WhatIfJob.objects.create(
            key="bench-sweep-seed",
            owner=owner,
            rule=jobs.rule_data(whatif.TagRule(registry_id=registry.id)),
            status=WhatIfJob.Status.SUCCEEDED,
            phase="done",
            steps_done=3,
            tags_selected=impact.tags,
            result=jobs.impact_data(impact),
            created_at=now,
            started_at=now,
            finished_at=now,
            expires_at=now + timedelta(days=3650),
        )
        added.append(f"what-if job {job.id}")
    if registry is not None and not CleanupPolicy.objects.exists():
        text = json.dumps({"rules": [SEED_POLICY_RULE]})
        policy_text_check(text=text, format="ecr")  # the seed is a policy the service would save
        policy = CleanupPolicy.objects.create(
            registry=registry, name="bench-sweep-seed", format="ecr", text=text, enabled=False
        )
        PolicyEvaluation.objects.create(
            policy=policy, at=now, revision=policy.revision, content_version=0, error="seeded by the sweep"
        )
        added.append(f"cleanup policy {policy.id}")
    return added


SEED_POLICY_RULE = {
    "rulePriority": 1,
    "selection": {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 30,
    },
    "action": {"type": "expire"},
}


# --- the server ---------------------------------------------------------------------------------------------


def server_env(database: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
            "CELERY_BROKER_URL": redis_url,
            "LAYERLENS_REDIS_URL": redis_url,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
            # generous, still counted: see the docstring
            "LAYERLENS_THROTTLE_USER": GENEROUS_RATE,
            "LAYERLENS_THROTTLE_ANON": GENEROUS_RATE,
            "LAYERLENS_THROTTLE_EXPENSIVE": GENEROUS_RATE,
            "LAYERLENS_THROTTLE_LOGIN": GENEROUS_RATE,
        }
    )
    return env


def start_server(database: str, redis_url: str, port: int, log_path: Path) -> subprocess.Popen:
    import httpx

    from harness.web import gunicorn_argv

    log_path.parent.mkdir(exist_ok=True)
    log = open(log_path, "wb")  # noqa: SIM115 - the server keeps it
    server = subprocess.Popen(
        [sys.executable, "-m", *gunicorn_argv(port)],
        cwd=ROOT,
        env=server_env(database, redis_url),
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit(f"the web server did not start; see {log_path}")
        time.sleep(0.5)


def login(base: str, password: str):
    """A client holding a session of the sweep's user, from the real login form."""
    import httpx

    client = httpx.Client(base_url=base, timeout=120)
    page = client.get("/ui/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    done = client.post(
        "/ui/login/",
        data={
            "username": USERNAME,
            "password": password,
            "csrfmiddlewaretoken": csrf.group(1) if csrf else "",
        },
    )
    if done.status_code != 302 or "sessionid" not in client.cookies:
        raise SystemExit(f"could not log in to /ui/login/: {done.status_code} {done.text[:300]}")
    return client


# --- measuring ----------------------------------------------------------------------------------------------


def sweep(base: str, requests: list[Request], *, token: str, password: str, runs: int, log=print) -> None:
    import httpx

    api = httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"})
    ui = login(base, password)
    anon = httpx.Client(base_url=base, timeout=120)
    try:

        def send(req: Request) -> tuple[int, int, float]:
            if req.face == "logout":
                client = login(base, password)  # a session to end (not timed)
                data = {"csrfmiddlewaretoken": client.cookies.get("csrftoken", "")}
                start = time.perf_counter()
                reply = client.post(req.url, data=data)
                took = time.perf_counter() - start
                client.close()
                return reply.status_code, len(reply.content), took * 1000
            client = {"api": api, "ui": ui, "anon": anon}[req.face]
            start = time.perf_counter()
            try:
                reply = client.request(req.method, req.url)
                status, size = reply.status_code, len(reply.content)
            except httpx.HTTPError:
                status, size = 0, 0
            return status, size, (time.perf_counter() - start) * 1000

        log(f"warming {len(requests)} requests", flush=True)
        for req in requests:
            send(req)
        for run in range(runs):
            started = time.monotonic()
            for req in requests:
                status, size, ms = send(req)
                req.statuses.append(status)
                req.sizes.append(size)
                req.ms.append(ms)
            log(f"run {run + 1}/{runs}: {time.monotonic() - started:.1f} s", flush=True)
    finally:
        for client in (api, ui, anon):
            client.close()


WRK_ERRORS = ("connect", "read", "write", "status", "timeout")
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'SWEEP {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "bytes": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, summary.bytes))
end
"""


def _cluster_writes() -> int:
    """Transaction ids the PostgreSQL cluster has handed out (the snapshot's xmax): every writing
    transaction, in any database, takes one and so changes `pg_current_snapshot()`, the read cache's key."""
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        return int(conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()[0])


def _cache_stats(redis_url: str) -> tuple[int, int]:
    """The Redis server's key hits and misses (server-wide: other clients count too)."""
    import redis

    info = redis.Redis.from_url(redis_url).info("stats")
    return int(info["keyspace_hits"]), int(info["keyspace_misses"])


class _TreeCPU:
    """CPU seconds a process tree spends while the context runs, sampled every quarter second so a worker
    that leaves meanwhile (gunicorn recycles them) still counts, up to its last sample."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.seen: dict[int, float] = {}
        self.start: dict[int, float] = {}
        self._stop = threading.Event()

    def _sample(self) -> None:
        from harness.proc import cpu_seconds, process_tree

        with contextlib.suppress(OSError):
            self.seen.update(cpu_seconds(process_tree(self.pid)))

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def __enter__(self) -> _TreeCPU:
        if self.pid:
            self._sample()
            self.start = dict(self.seen)
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pid:
            self._stop.set()
            self._thread.join()
            self._sample()

    @property
    def seconds(self) -> float:
        return sum(t - self.start.get(p, 0.0) for p, t in self.seen.items())


def load(
    base: str,
    token: str,
    *,
    seconds: float,
    connections: int,
    server_pid: int | None = None,
    redis_url: str = REDIS_URL,
    log=print,
) -> list[dict]:
    """wrk on each of LOAD_PATHS; besides its latencies, what each request cost, read from /proc (the
    server's processes and wrk's), and what went on meanwhile: the cluster's writing transactions (each
    one makes the next read-cache look-ups miss) and the Redis server's key hits and misses."""
    import resource

    from harness.tools import require_tool

    wrk = require_tool("wrk")
    results = []
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        for path in LOAD_PATHS:
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            writes_before = _cluster_writes()
            hits_before, misses_before = _cache_stats(redis_url)
            with _TreeCPU(server_pid) as server_cpu:
                done = subprocess.run(
                    [
                        wrk,
                        f"-t{min(2, connections)}",
                        f"-c{connections}",
                        f"-d{max(1, round(seconds))}s",
                        "--timeout",
                        "60s",
                        "-H",
                        f"Authorization: Bearer {token}",
                        "-s",
                        script.name,
                        base + path,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=seconds + 120,
                    check=False,
                )
            found = re.search(r"^SWEEP (\{.*\})$", done.stdout, re.M)
            if done.returncode != 0 or not found:
                raise RuntimeError(f"wrk failed on {path}:\n{done.stdout}\n{done.stderr}")
            raw = json.loads(found.group(1))
            children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            wrk_cpu = (children_after.ru_utime + children_after.ru_stime) - (
                children_before.ru_utime + children_before.ru_stime
            )
            hits_after, misses_after = _cache_stats(redis_url)
            writes = _cluster_writes() - writes_before
            errors = sum(raw[k] for k in WRK_ERRORS)
            result = {
                "path": path,
                "connections": connections,
                "seconds": round(raw["duration_us"] / 1e6, 1),
                "requests": raw["requests"],
                "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
                "p50_ms": round(raw["p50_us"] / 1000, 1),
                "p99_ms": round(raw["p99_us"] / 1000, 1),
                "max_ms": round(raw["max_us"] / 1000, 1),
                "errors": errors,
                "error_kinds": {k: raw[k] for k in WRK_ERRORS if raw[k]},
                "server_cpu_ms_per_request": round(server_cpu.seconds * 1000 / max(1, raw["requests"]), 2),
                "wrk_cpu_ms_per_request": round(wrk_cpu * 1000 / max(1, raw["requests"]), 3),
                "cluster_writes": writes,
                "cache_hits": hits_after - hits_before,
                "cache_misses": misses_after - misses_before,
                "bytes_per_request": round(raw.get("bytes", 0) / max(1, raw["requests"])),
            }
            results.append(result)
            log(f"load {path}: {result['rps']} req/s", flush=True)
    finally:
        os.unlink(script.name)
    return results


# --- reporting ----------------------------------------------------------------------------------------------


def summarise(req: Request) -> dict:
    errors = sorted({s for s in req.statuses if not req.ok(s)})
    return {
        "request": req.template,
        "url": req.url,
        "method": req.method,
        "status": "/".join(str(s) for s in sorted(set(req.statuses))),
        "bytes": int(statistics.median(req.sizes)) if req.sizes else 0,
        "median_ms": round(statistics.median(req.ms), 1) if req.ms else None,
        "p99_ms": round(_percentile(req.ms, 0.99), 1),
        "max_ms": round(max(req.ms), 1) if req.ms else None,
        "error_statuses": errors,
        "slow": bool(req.ms)
        and (statistics.median(req.ms) > SLOW_MEDIAN_MS or _percentile(req.ms, 0.99) > SLOW_P99_MS),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| request | status | bytes | median ms | p99 ms | max ms | |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -(r["median_ms"] or 0)):
        flag = " ".join(f for f in ("ERROR" if r["error_statuses"] else "", "SLOW" if r["slow"] else "") if f)
        method = "" if r["method"] == "GET" else f"{r['method']} "
        lines.append(
            f"| {method}`{r['request']}` | {r['status']} | {r['bytes']:,} | {r['median_ms']:,.1f} | "
            f"{r['p99_ms']:,.1f} | {r['max_ms']:,.1f} | {flag} |"
        )
    return "\n".join(lines)


def load_table(rows: list[dict]) -> str:
    lines = [
        "| path | req/s | p50 ms | p99 ms | max ms | errors | server CPU ms/req | wrk CPU ms/req | bytes/req "
        "| cache hits / misses | cluster writes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in r["error_kinds"].items())
        lines.append(
            f"| `{r['path']}` | {r['rps']:,.1f} | {r['p50_ms']:,.1f} | {r['p99_ms']:,.1f} | "
            f"{r['max_ms']:,.1f} | {r['errors']}{f' ({kinds})' if kinds else ''} | "
            f"{r['server_cpu_ms_per_request']:.2f} | {r['wrk_cpu_ms_per_request']:.3f} | "
            f"{r['bytes_per_request']:,} | {r['cache_hits']:,} / {r['cache_misses']:,} | "
            f"{r['cluster_writes']:,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="layerlens_bench_scale")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--load-seconds", type=float, default=30, help="per load path; 0 for no load run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", REDIS_URL))
    parser.add_argument(
        "--also", action="append", default=[], help="another API path to time (GET, token), repeatable"
    )
    parser.add_argument("--seed-missing", action="store_true", help="add a scan and an engine if none exist")
    parser.add_argument("--load-only", action="store_true", help="only the load run, no sweep")
    args = parser.parse_args(argv)

    import httpx

    from harness.tools import free_loopback_port

    _setup_django(args.database, args.redis)
    seeded = seed_missing() if args.seed_missing else []
    picks = pick(f"postgresql://postgres@127.0.0.1:5432/{args.database}")
    print(f"picked: {json.dumps({k: v for k, v in asdict(picks).items() if k != 'notes'})}", flush=True)
    password, token = make_user()
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()
    server = start_server(args.database, args.redis, port, ROOT / "var" / "bench-sweep-web.log")
    try:
        schema = httpx.get(
            base + "/api/schema/",
            params={"format": "json"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        schema.raise_for_status()
        api, api_skipped = api_requests(schema.json(), picks)
        ui, ui_skipped = ui_requests(ui_routes(), picks)
        extra = [Request(path, path, "api") for path in args.also]
        requests = [] if args.load_only else [*api, *ui, *extra]
        sweep(base, requests, token=token, password=password, runs=args.runs)
        loaded = (
            load(
                base,
                token,
                seconds=args.load_seconds,
                connections=args.connections,
                server_pid=server.pid,
                redis_url=args.redis,
            )
            if args.load_seconds > 0
            else []
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        revoke_token()

    rows = [summarise(r) for r in requests]
    skipped = [*api_skipped, *ui_skipped]
    errors = [r for r in rows if r["error_statuses"]]
    load_errors = [r for r in loaded if r["errors"]]
    print()
    print(f"## {args.database}: {len(rows)} requests, {args.runs} runs each (p99 = nearest rank)")
    print()
    print(table(rows))
    if skipped:
        print()
        print("not visited: " + "; ".join(f"`{t}` ({why})" for t, why in skipped))
    print()
    listed = ", ".join(f"{r['request']} {r['status']}" for r in errors)
    print(f"errors (non-2xx): {listed or 'none'}")
    slow = [r["request"] for r in rows if r["slow"]]
    print(f"SLOW (median > {SLOW_MEDIAN_MS:.0f} ms or p99 > {SLOW_P99_MS:.0f} ms): {len(slow)}")
    if loaded:
        print()
        print(f"## load: {args.connections} connections, {args.load_seconds:g} s per path (wrk, API token)")
        print()
        print(load_table(loaded))
    load_after = os.getloadavg()
    print()
    print(f"load average at start {load_before[0]:.2f}, at end {load_after[0]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "database": args.database,
                    "runs": args.runs,
                    "picks": asdict(picks),
                    "seeded": seeded,
                    "rates": GENEROUS_RATE,
                    "requests": rows,
                    "visited": sorted({r.template.split("?")[0] for r in requests}),
                    "skipped": [{"request": t, "reason": why} for t, why in skipped],
                    "errors": [r["request"] for r in errors],
                    "load": loaded,
                    "load_average": {"start": load_before, "end": load_after},
                },
                indent=2,
            )
        )
    return 1 if errors or load_errors else 0


if __name__ == "__main__":
    sys.exit(main())
