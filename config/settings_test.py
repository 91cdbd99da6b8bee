"""Settings for the test suite: development defaults, before the shared settings read the environment."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
# The test registries listen on loopback: allowed explicitly, as an operator would.
os.environ.setdefault("LAYERLENS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
os.environ.setdefault("REGISTRY_RETRY_BASE_SECONDS", "0.05")
# Tests make many requests a minute from one address; the throttle tests set their own rates.
for _scope in ("ANON", "USER", "EXPENSIVE"):
    os.environ.setdefault(f"LAYERLENS_THROTTLE_{_scope}", "100000/min")

from config.settings import *  # noqa: E402,F403

# Counters (throttles, login failures) in this process's memory, emptied before each test
# (tests/support/fixtures.py), so one test's failed logins never lock out the next; the tests of the
# shared Redis cache configure it themselves.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
