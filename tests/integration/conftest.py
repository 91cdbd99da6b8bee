import pytest
from django.conf import settings

from config.celery import app
from harness.celery_worker import CeleryWorker


@pytest.fixture
def celery_worker(transactional_db):
    """A real worker on the test broker database, reading and writing the test database."""
    app.control.purge()  # leftovers of an earlier, interrupted run
    worker = CeleryWorker(
        database_name=settings.DATABASES["default"]["NAME"], broker_url=settings.CELERY_BROKER_URL
    ).start()
    try:
        yield worker
    finally:
        worker.stop()
