"""gunicorn's settings for the web, read wherever it is started (`make run`, the Dockerfile, compose):
`gunicorn --config config/gunicorn_conf.py config.wsgi:application --bind ... --workers N`.

Threads (gthread): a whole-list CSV download streams for minutes, past a sync worker's `--timeout`.
Recycling: a worker is replaced once its resident memory passes `WEB_MAX_RSS_MB` (768), so the memory
large answers leave in a long-lived Python process is returned to the system; `WEB_MAX_REQUESTS` (0: no
count; the jitter staggers the workers when set) replaces it after a number of requests too. Either way
the worker drains first (config/gunicorn_worker.py, `WEB_RECYCLE_DRAIN`), so no request is dropped. The app
is loaded before the workers fork (`preload_app`), so a replacement serves at once instead of importing
Django while its sibling carries the load alone.
"""

import os

worker_class = "config.gunicorn_worker.RecyclingThreadWorker"  # gthread, drained before recycling
threads = int(os.environ.get("WEB_THREADS", "4"))
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("WEB_MAX_REQUESTS_JITTER", "2000"))
accesslog = "-"
logger_class = "config.gunicorn_logger.AccessLogger"  # no line for each accepted registry event
preload_app = True
