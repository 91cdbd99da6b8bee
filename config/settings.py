"""Layerlens settings: everything that differs between machines comes from the environment."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_rate(name: str, default: str) -> str:
    """A request rate, checked at start-up rather than on the first request that meets it."""
    value = os.environ.get(name, default).strip()
    if value.lower() not in ("", "0", "off", "none") and not re.fullmatch(r"\d+/[smhd][a-z]*", value.lower()):
        raise RuntimeError(f"{name} must be N/s, N/min, N/hour or N/day (or 0 for none), not {value!r}")
    return value


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "layerlens-insecure-development-key"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Comma-separated Fernet keys for registry credentials, newest first; derived from SECRET_KEY if unset.
FERNET_KEYS = env_list("LAYERLENS_FERNET_KEYS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "analytics",
]

MIDDLEWARE = [
    # the body's size, NUL bytes, parameter length; a cancelled statement is a 503 (README "Limits")
    "config.middleware.RequestBounds",
    # the login forms at most LAYERLENS_THROTTLE_LOGIN per address, before a session or a template
    "config.middleware.LoginRate",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # last: turns a login form's lockout into the lockout page (429)
    "axes.middleware.AxesMiddleware",
]

# Every password check (the admin's and the pages' login forms, API Basic auth) goes through django-axes
# first: after LAYERLENS_LOGIN_FAILURE_LIMIT failures from one address, or for one user name, logins
# from there or as that user are refused for LAYERLENS_LOGIN_LOCKOUT_SECONDS, before any password is
# hashed. Failures are counted in the shared cache (CACHES, below), so every instance sees them.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = int(os.environ.get("LAYERLENS_LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(seconds=int(os.environ.get("LAYERLENS_LOGIN_LOCKOUT_SECONDS", "900")))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_CLIENT_IP_CALLABLE = "analytics.infra.addresses.client_address"
# A success does not wipe the count: one known password must not buy an address more guesses at others.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_TEMPLATE = "web/locked_out.html"
# The database log of attempts is not written by the cache handler: no empty pages in the admin.
AXES_ENABLE_ADMIN = False
# --- What one web request may cost (README "Limits") ---------------------------------------------------
# A larger request body is refused (413) before anything reads it: JSON, forms and uploads alike. The
# largest body the API needs (a registry with its CA bundle and Docker config) is far below it.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("DATA_UPLOAD_MAX_MEMORY_SIZE", str(1024 * 1024)))
DATA_UPLOAD_MAX_NUMBER_FIELDS = int(os.environ.get("DATA_UPLOAD_MAX_NUMBER_FIELDS", "1000"))
DATA_UPLOAD_MAX_NUMBER_FILES = 10  # nothing here takes a file
# One SQL statement of a web request is cancelled after this (503); 0 lifts the bound. Set on the web's
# connections only (config/wsgi.py, config/asgi.py): Celery workers and commands run long ingests.
WEB_STATEMENT_TIMEOUT_SECONDS = float(os.environ.get("WEB_STATEMENT_TIMEOUT_SECONDS", "30"))
# What-if (README "What-if"): a request computes a selection whose scope holds at most this many
# holdings (about 0.1 s per 1,000 on two busy cores: the 200 ms target); a larger one is a 422
# pointing at the jobs, which a worker runs on the interactive queue, at most WHATIF_JOBS_PER_OWNER
# unfinished per user (or address), each statement within WHATIF_JOB_TIMEOUT_SECONDS, the result kept
# WHATIF_JOB_KEEP_SECONDS with at most WHATIF_JOB_DETAILS lost manifests and deleted tags.
WHATIF_SYNC_HOLDINGS = int(os.environ.get("WHATIF_SYNC_HOLDINGS", "2000"))
# A policy preview in a request reads its scope's every image and tag (analytics/policies/rows.py): at most
# this many holdings, a 422 past it (the command has no bound). bench/policies.py at a million images: 29,000
# holdings cost 2.5-3.5 s of CPU; the whole registry's rows alone 20 s.
POLICY_PREVIEW_MAX_HOLDINGS = int(os.environ.get("POLICY_PREVIEW_MAX_HOLDINGS", "50000"))
WHATIF_JOBS_PER_OWNER = int(os.environ.get("WHATIF_JOBS_PER_OWNER", "3"))
WHATIF_JOB_TIMEOUT_SECONDS = int(os.environ.get("WHATIF_JOB_TIMEOUT_SECONDS", "1800"))
WHATIF_JOB_KEEP_SECONDS = int(os.environ.get("WHATIF_JOB_KEEP_SECONDS", "86400"))
WHATIF_JOB_DETAILS = int(os.environ.get("WHATIF_JOB_DETAILS", "1000"))
# A what-if deleting at least WHATIF_COLUMNS_TAGS tags of one registry is judged over the registry's columns
# (analytics.selectors.columns), kept per content version in WHATIF_COLUMNS_DIR (0: never).
WHATIF_COLUMNS_TAGS = int(os.environ.get("WHATIF_COLUMNS_TAGS", "50000"))
WHATIF_COLUMNS_DIR = Path(os.environ.get("WHATIF_COLUMNS_DIR", BASE_DIR / "var" / "columns"))
# A saved cleanup policy is evaluated by the worker after each scan or batch of events that changed its
# registry (analytics/policies/evaluate.py): each policy within this many seconds (every statement under
# it, none started past it), else its point records that it took too long; the scan stands either way.
POLICY_EVALUATION_SECONDS = float(os.environ.get("POLICY_EVALUATION_SECONDS", "60"))
# Points kept per saved policy (one per change of its registry): years of hourly changes.
POLICY_SERIES_KEEP = int(os.environ.get("POLICY_SERIES_KEEP", "20000"))

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/layerlens"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        # a kept connection that died while idle (database restart, failover) is replaced before
        # the next request or task uses it, instead of failing it
        conn_health_checks=True,
    )
}
# Server-side parameter binding, and statements a connection runs 5 times prepared once: a scan runs the
# same few dozen statements per repository, so PostgreSQL stops re-planning them. Behind a pooler in
# transaction mode (pgbouncer), set DB_PREPARE_THRESHOLD=0 (off).
_DB_OPTIONS = DATABASES["default"].setdefault("OPTIONS", {})
_DB_OPTIONS["server_side_binding"] = env_bool("DB_SERVER_SIDE_BINDING", True)
if int(os.environ.get("DB_PREPARE_THRESHOLD", "5")) > 0:
    _DB_OPTIONS["prepare_threshold"] = int(os.environ.get("DB_PREPARE_THRESHOLD", "5"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "var" / "static"))
try:  # WhiteNoise warns on every request when the directory is missing
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
except OSError:
    pass
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Reverse proxies in front of the web that append the client's address to X-Forwarded-For (0: none,
# the peer's address is the client's). Throttles and login lockouts count per client address
# (analytics/infra/addresses.py); a forwarded address from anyone else is a free way round them.
LAYERLENS_TRUSTED_PROXIES = int(os.environ.get("LAYERLENS_TRUSTED_PROXIES", "0"))

REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ["analytics.api.permissions.ReadAnyWriteStaff"],
    # The first names the challenge of a 401 (analytics/api/auth.py).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "analytics.api.auth.TokenAuthentication",
        "analytics.api.auth.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "analytics.api.paging.OffsetPage",
    # Every list also exports as CSV (`?format=csv` or `Accept: text/csv`).
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
        "analytics.api.csv.CSVRenderer",
    ],
    # JSON with a bound on nesting; forms for the browsable API
    "DEFAULT_PARSER_CLASSES": [
        "analytics.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "analytics.api.errors.exception_handler",
    # analytics/api/throttles.py: rates from LAYERLENS_THROTTLE_RATES, counted in the shared cache
    "DEFAULT_THROTTLE_CLASSES": [
        "analytics.api.throttles.AnonThrottle",
        "analytics.api.throttles.UserThrottle",
        "analytics.api.throttles.ExpensiveThrottle",
    ],
}
# Requests per caller and window ("N/s", "N/min", "N/hour", "N/day"; empty or 0 for no limit): anonymous
# callers by address, users by account, and whole-list CSV exports and what-if per caller on top.
# Costly requests (what-if, whole-list exports) running at once: per caller across every web instance,
# and per web process, so one caller's never hold the threads other readers need (README "Rates").
LAYERLENS_COSTLY_PER_CALLER = int(os.environ.get("LAYERLENS_COSTLY_PER_CALLER", "1"))
LAYERLENS_COSTLY_PER_PROCESS = int(
    os.environ.get("LAYERLENS_COSTLY_PER_PROCESS", str(max(1, int(os.environ.get("WEB_THREADS", "4")) // 2)))
)
LAYERLENS_THROTTLE_RATES = {
    "anon": env_rate("LAYERLENS_THROTTLE_ANON", "60/min"),
    "user": env_rate("LAYERLENS_THROTTLE_USER", "1200/min"),
    "expensive": env_rate("LAYERLENS_THROTTLE_EXPENSIVE", "20/min"),
    # the login forms, GET and POST, per client address: a person needs two requests a login
    "login": env_rate("LAYERLENS_THROTTLE_LOGIN", "10/min"),
    # the events receiver's refusals (no or a wrong secret) per address, past which they are 429s; a
    # registry sending its secret is never throttled (it would retry until a 2xx anyway)
    "events_refused": env_rate("LAYERLENS_THROTTLE_EVENTS_REFUSED", "60/min"),
}
# A user name and password on every API request: off by default, since each costs a password hash
# (~0.35 s of CPU); scripts use tokens. When on, failures count towards the login lockout.
LAYERLENS_API_BASIC_AUTH = env_bool("LAYERLENS_API_BASIC_AUTH", False)
# API tokens (django-rest-knox, analytics/models/accounts.py): `Authorization: Bearer layerlens_...`,
# stored as digests, named, several per user; made by `manage.py token` or the admin, never expiring
# unless made with an expiry.
KNOX_TOKEN_MODEL = "analytics.ApiToken"
# knox's migrations would create its own token table although its model is swapped for ours.
MIGRATION_MODULES = {"knox": None}
REST_KNOX = {"AUTH_HEADER_PREFIX": "Bearer", "TOKEN_PREFIX": "layerlens_", "TOKEN_TTL": None}
# Anonymous reads of scanned data; off by default, since image names and build commands can be private.
LAYERLENS_ANONYMOUS_READ = env_bool("LAYERLENS_ANONYMOUS_READ", False)

SPECTACULAR_SETTINGS = {
    "TITLE": "Layerlens API",
    "DESCRIPTION": "Registry-wide container-image layer analytics: sharing, sizes and deduplication.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI served from this host: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two models' `status` choices differ: each enum named for its model.
    "ENUM_NAME_OVERRIDES": {
        "ScanStatusEnum": "analytics.models.scans.Scan.Status",
        "WhatIfJobStatusEnum": "analytics.models.jobs.WhatIfJob.Status",
    },
}

# --- Celery -----------------------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
# Results are read by `manage.py scan` only through Scan rows, so no result backend is needed.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Scans are idempotent, so a task is acknowledged after it ran: a worker dying mid-scan loses nothing.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One scan at a time per worker process; scans are long and uneven, prefetching would starve peers.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# With acks_late on Redis, an unacked task is redelivered after this; it must exceed the longest scan.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "7200"))
}
# A repository scan that runs this long is stuck; the hard limit frees the worker for other scans.
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("SCAN_SOFT_TIME_LIMIT", "3000"))
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 120
# Three queues, so that no kind of work waits behind another (README "Queues"): beat's own tasks
# (control), work someone is waiting for (interactive) and registry crawls (bulk, thousands of batches).
# Their names start with one prefix per deployment, so two installs can share a Redis without
# stealing tasks. Workers pick theirs with `-Q`; a worker given no `-Q` takes all three.
QUEUE_PREFIX = os.environ.get("CELERY_QUEUE", "layerlens")
QUEUE_CONTROL = f"{QUEUE_PREFIX}.control"
QUEUE_INTERACTIVE = f"{QUEUE_PREFIX}.interactive"
QUEUE_BULK = f"{QUEUE_PREFIX}.bulk"
# Each bound by its own name (unnamed, all three would share the default exchange's one binding).
CELERY_TASK_QUEUES = [
    Queue(q, Exchange(q), routing_key=q) for q in (QUEUE_CONTROL, QUEUE_INTERACTIVE, QUEUE_BULK)
]
# A task routed nowhere below is small until shown otherwise.
CELERY_TASK_DEFAULT_QUEUE = QUEUE_INTERACTIVE
CELERY_TASK_ROUTES = {
    # Beat's enqueuer and sweeper: short, and every scan's timeliness and recovery depend on them.
    "workers.tasks.enqueue_due_scans": {"queue": QUEUE_CONTROL},
    "workers.tasks.requeue_stuck_scans": {"queue": QUEUE_CONTROL},
    "workers.tasks.sweep_registry_events": {"queue": QUEUE_CONTROL},
    # A registry crawl: its listing and its batches of child repositories.
    "workers.tasks.scan_registry": {"queue": QUEUE_BULK},
    "workers.tasks.scan_repositories": {"queue": QUEUE_BULK},
    # One repository or one tag (user-started or a tracked repository's schedule) and engine scans.
    # A crawl's child sent alone (a retry, the sweeper) is sent to bulk instead, at send time
    # (`analytics.scans.start.scan_enqueue`, `workers.tasks.scan_repositories`).
    "workers.tasks.scan_repository": {"queue": QUEUE_INTERACTIVE},
    "workers.tasks.scan_engine": {"queue": QUEUE_INTERACTIVE},
    # A what-if too large for a request: someone is polling for it.
    "workers.tasks.whatif_job": {"queue": QUEUE_INTERACTIVE},
    # Registry events: a push someone waits to see, a few tags read; never behind a crawl.
    "workers.tasks.apply_registry_events": {"queue": QUEUE_INTERACTIVE},
    # A cleanup policy just saved: its first point, which whoever saved it is looking for.
    "workers.tasks.evaluate_cleanup_policy": {"queue": QUEUE_INTERACTIVE},
}
# JSON only: task arguments are ids and strings, never pickled objects.
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Due scans are found by the database (next_scan_at), so beat only needs to look often. The same
# tick requeues scans whose worker died (expired lease) or whose task the broker lost.
CELERY_BEAT_SCHEDULE = {
    "enqueue-due-scans": {
        "task": "workers.tasks.enqueue_due_scans",
        "schedule": timedelta(seconds=int(os.environ.get("SCHEDULE_TICK_SECONDS", "30"))),
    },
    "requeue-stuck-scans": {
        "task": "workers.tasks.requeue_stuck_scans",
        "schedule": timedelta(seconds=int(os.environ.get("SCHEDULE_TICK_SECONDS", "30"))),
    },
    # registry events nobody is applying, and applied ones past EVENTS_KEEP_DAYS
    "sweep-registry-events": {
        "task": "workers.tasks.sweep_registry_events",
        "schedule": timedelta(seconds=int(os.environ.get("EVENTS_SWEEP_SECONDS", "5"))),
    },
}
# Workers log through Django's LOGGING (JSON lines in production), not Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Tests run tasks in-process when set; the integration tests start a real worker instead.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# --- Registry client --------------------------------------------------------------------------------------
REGISTRY_TIMEOUT_SECONDS = float(os.environ.get("REGISTRY_TIMEOUT_SECONDS", "30"))
# One response from request to last byte; a reply trickling in under the read timeout still ends.
REGISTRY_TOTAL_TIMEOUT_SECONDS = float(os.environ.get("REGISTRY_TOTAL_TIMEOUT_SECONDS", "300"))
# The slowest a reply may come once its first bytes are in: at least REGISTRY_MIN_TRANSFER_BYTES (1 KiB)
# in each REGISTRY_MIN_TRANSFER_WINDOW_SECONDS (10 s); 0 turns the check off. A reply cut by this or by
# the total time limit (a drip) fails its scan at once: it is not retried (workers/registry/errors.py
# SlowReplyError); refused or reset connections and read timeouts keep their retries.
REGISTRY_MIN_TRANSFER_BYTES = int(os.environ.get("REGISTRY_MIN_TRANSFER_BYTES", "1024"))
REGISTRY_MIN_TRANSFER_WINDOW_SECONDS = float(os.environ.get("REGISTRY_MIN_TRANSFER_WINDOW_SECONDS", "10"))
REGISTRY_PAGE_SIZE = int(os.environ.get("REGISTRY_PAGE_SIZE", "100"))
# Networks (CIDRs, comma-separated) registries may live in although internal: loopback, private and
# link-local addresses are refused otherwise (SSRF policy, workers/registry/policy.py).
LAYERLENS_ALLOWED_NETWORKS = env_list("LAYERLENS_ALLOWED_NETWORKS")
# Retries inside the registry client before a transient error goes up to Celery's own retry.
REGISTRY_RETRIES = int(os.environ.get("REGISTRY_RETRIES", "3"))
REGISTRY_RETRY_BASE_SECONDS = float(os.environ.get("REGISTRY_RETRY_BASE_SECONDS", "0.5"))
# Requests one repository scan keeps in flight (threads over one kept-alive client per registry and
# worker process), and the connections that client keeps to the registry, which the process's reader
# threads share: 8 saturates a local registry on two cores; the Redis gate below caps the total.
REGISTRY_SCAN_CONCURRENCY = int(os.environ.get("REGISTRY_SCAN_CONCURRENCY", "8"))
# A registry scan's children go to the workers SCAN_TASK_BATCH repositories per task (bookkeeping and
# task overhead paid per batch), and a worker process reads up to SCAN_READ_AHEAD of them at once while
# it ingests the ones already read (requests in flight stay bounded by REGISTRY_SCAN_CONCURRENCY).
SCAN_TASK_BATCH = int(os.environ.get("SCAN_TASK_BATCH", "10"))
SCAN_READ_AHEAD = int(os.environ.get("SCAN_READ_AHEAD", "4"))
# The repositories of a batch that changed are ingested together, one transaction (and one statement per
# table) for up to SCAN_INGEST_BATCH_ROWS manifests and tags read: the figures and bookkeeping are paid
# per transaction, not per repository.
SCAN_INGEST_BATCH_ROWS = int(os.environ.get("SCAN_INGEST_BATCH_ROWS", "2000"))
# A registry crawl keeps at most SCAN_CRAWL_WINDOW of its batches out (sent and not finished), and each
# batch that ends sends the next (analytics/scans/crawl.py): the bulk queue holds a few batches per
# crawl, so crawls of several registries take turns whatever their sizes. Keep it at least the number
# of worker processes taking bulk, or a crawl running alone leaves some of them idle.
SCAN_CRAWL_WINDOW = int(os.environ.get("SCAN_CRAWL_WINDOW", "8"))
# A running scan's lease, renewed by its worker every third of it (a heartbeat): when a worker dies,
# another may take the repository (and the sweeper requeues the scan) this long after the last beat.
SCAN_LEASE_SECONDS = int(os.environ.get("SCAN_LEASE_SECONDS", "300"))
# A scan that met a transient registry error is retried after about this, doubling each time (jitter).
SCAN_RETRY_BACKOFF_SECONDS = int(os.environ.get("SCAN_RETRY_BACKOFF_SECONDS", "5"))
# A repository being scanned by another worker is tried again after this many seconds.
SCAN_BUSY_RETRY_SECONDS = int(os.environ.get("SCAN_BUSY_RETRY_SECONDS", "30"))
# A scan claimed this many times without finishing (its workers keep dying) is failed, with the reason.
SCAN_MAX_ATTEMPTS = int(os.environ.get("SCAN_MAX_ATTEMPTS", "3"))
# A scan still queued this long after it was sent was lost by the broker (e.g. Redis restarted without
# persistence): the sweeper sends it again. Longer than the longest retry countdown (RETRY in tasks).
SCAN_REQUEUE_AFTER_SECONDS = int(os.environ.get("SCAN_REQUEUE_AFTER_SECONDS", "1800"))
# Registry events (analytics/events/): the receiver's body cap, below DATA_UPLOAD_MAX_MEMORY_SIZE's (a
# distribution envelope holds one event, ~1 KiB; a cap stops a caller holding a thread with a huge one).
EVENTS_MAX_BODY_BYTES = int(os.environ.get("EVENTS_MAX_BODY_BYTES", str(1024 * 1024)))
# Events of one repository applied per transaction: bounds a transaction's tags read and rows written.
EVENTS_APPLY_BATCH = int(os.environ.get("EVENTS_APPLY_BATCH", "500"))
# A sent apply task is trusted to start within this, and a running one to end a round of applying
# within it (each round renews it); after it, the next event sends another.
EVENTS_TASK_PENDING_SECONDS = int(os.environ.get("EVENTS_TASK_PENDING_SECONDS", "30"))
# A running apply task keeps its registry's key at least this long after each round starts, and says so
# in the key: a web process that read it sends nothing for the registry until then (less a margin for
# the hosts' clocks), so a burst's requests cost no Redis round trip each (analytics/events/inbox.py).
EVENTS_TASK_HOLD_SECONDS = float(os.environ.get("EVENTS_TASK_HOLD_SECONDS", "1"))
# A registry's events whose repository another worker (or a scan) holds are tried again this soon: the
# holder takes what arrives while it applies, so this is for the moments between its last look and its
# release, and for scans.
EVENTS_BUSY_RETRY_SECONDS = float(os.environ.get("EVENTS_BUSY_RETRY_SECONDS", "2"))
# A pushed tag not found when its event is applied is read again once this long after the event came:
# distribution notifies a manifest push before it links the tag (analytics/events/apply.py _settled).
EVENTS_PUSH_SETTLE_SECONDS = float(os.environ.get("EVENTS_PUSH_SETTLE_SECONDS", "0.25"))
# A tag whose read fails with what may pass (a 5xx, a timeout) keeps its events pending, tried again
# with the tasks' backoff, for this long after the oldest of them came; then they fail with the error.
EVENTS_TRANSIENT_RETRY_SECONDS = int(os.environ.get("EVENTS_TRANSIENT_RETRY_SECONDS", "900"))
# Trend points from events: at most one per registry and per repository in this window; changes within
# it update the window's point (a scan's points are never updated).
EVENTS_TREND_INTERVAL_SECONDS = int(os.environ.get("EVENTS_TREND_INTERVAL_SECONDS", "300"))
# An apply task goes on applying while events keep coming (a burst is one task) for about this long,
# then sends itself again, behind the other registries' tasks and scans waiting on its queue.
EVENTS_APPLY_ROUND_SECONDS = float(os.environ.get("EVENTS_APPLY_ROUND_SECONDS", "10"))
# Beat looks this often for events pending longer than EVENTS_SWEEP_AFTER_SECONDS (a lost task, a
# killed worker, a busy repository) and sends their registries again; a few seconds, since pushes wait.
EVENTS_SWEEP_SECONDS = int(os.environ.get("EVENTS_SWEEP_SECONDS", "5"))
EVENTS_SWEEP_AFTER_SECONDS = int(os.environ.get("EVENTS_SWEEP_AFTER_SECONDS", "10"))
# Applied events are kept this long: the record of what was done, and the window within which a
# redelivered event is known as a duplicate.
EVENTS_KEEP_DAYS = int(os.environ.get("EVENTS_KEEP_DAYS", "7"))
# Politeness, per registry, shared by all workers through Redis (analytics/infra/politeness.py): requests in
# flight at once, and requests per second (0: no rate limit).
REGISTRY_CONCURRENCY_LIMIT = int(os.environ.get("REGISTRY_CONCURRENCY_LIMIT", "16"))
REGISTRY_RATE_LIMIT = float(os.environ.get("REGISTRY_RATE_LIMIT", "0"))
# Where the shared limits and the workers' metric counters live; the broker's Redis unless set.
LAYERLENS_REDIS_URL = os.environ.get(
    "LAYERLENS_REDIS_URL",
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "",
)
# The cache every web instance shares: request throttles and login failures are counted in it, so a
# limit holds across instances. The shared Redis when there is one (keys under the queue's name, as two
# installs may share a Redis); one process's memory otherwise, which is right for one instance only.
if LAYERLENS_REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "analytics.infra.cache.FailOpenRedisCache",
            "LOCATION": LAYERLENS_REDIS_URL,
            "KEY_PREFIX": f"{CELERY_TASK_DEFAULT_QUEUE}:cache",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Read answers cached per database snapshot (analytics/api/caching.py): exact, since any commit changes
# the snapshot; this bounds how long an unread entry lingers and how large one may be. 0 turns it off.
READ_CACHE_SECONDS = int(os.environ.get("READ_CACHE_SECONDS", "300"))
READ_CACHE_MAX_BYTES = int(os.environ.get("READ_CACHE_MAX_BYTES", str(512 * 1024)))
# What /metrics and /readyz say about registries (their names are hosts) and failed checks is for callers
# with `Authorization: Bearer <this token>` (or a staff login). Without a token set, /metrics still answers
# anyone, summed over registries; with one set, it answers only with it (analytics/api/ops.py).
LAYERLENS_METRICS_TOKEN = os.environ.get("LAYERLENS_METRICS_TOKEN", "")
# /readyz answers 503 when a tracked registry's last successful scan is older than twice its interval
# only when this is on: a remote registry being down is no reason to take the web out of service.
LAYERLENS_READY_REQUIRES_FRESH_SCANS = env_bool("LAYERLENS_READY_REQUIRES_FRESH_SCANS", False)
# /readyz answers 503 when an event a registry sent has waited longer than this to be applied (the events
# workers are down or behind); 0 turns the check off. Five minutes: far above the seconds an event takes.
EVENTS_READY_MAX_AGE_SECONDS = int(os.environ.get("EVENTS_READY_MAX_AGE_SECONDS", "300"))
# The address registries reach this server at (a path prefix behind a proxy included): `manage.py registry
# events-config` points their notifications and webhooks under it. Unset: the web `make run` serves.
LAYERLENS_PUBLIC_URL = os.environ.get(
    "LAYERLENS_PUBLIC_URL", f"http://127.0.0.1:{os.environ.get('LAYERLENS_PORT', '8000')}"
)

# One JSON object per line in production (analytics/infra/logs.py), with the scan and repository ids bound.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "analytics.infra.logs.ContextFilter"}},
    "formatters": {
        "plain": {
            "()": "analytics.infra.logs.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "analytics.infra.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # httpx logs every request at INFO: too much for a registry-wide scan.
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "axes.apps": {"level": "WARNING"},  # its banner on every start, commands included
    },
}
