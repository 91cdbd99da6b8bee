"""Settings for the test suite: development defaults, before the shared settings read the environment."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
# The test registries listen on loopback: allowed explicitly, as an operator would.
os.environ.setdefault("LAYERLENS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
os.environ.setdefault("REGISTRY_RETRY_BASE_SECONDS", "0.05")

from config.settings import *  # noqa: E402,F403
