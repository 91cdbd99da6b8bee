"""Settings for the test suite: development defaults, before the shared settings read the environment."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")

from config.settings import *  # noqa: E402,F403
