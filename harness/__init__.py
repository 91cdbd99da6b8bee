"""The real parts the project runs beside itself: local services, a registry server, a Docker daemon,
a Celery worker, image builders and pushers, hand-made registry records.

Tests, benchmarks and the demo scripts use them; the product never does. Nothing is imported here, so
`python -m harness.services` runs on the standard library alone, before the virtualenv exists.
"""
