"""The harness leaves nothing in the temporary directory: a stopped worker's folder is removed, and its
log is still there to read (tests print it when an assertion fails)."""

from __future__ import annotations

import pytest
from django.conf import settings

from harness.celery_worker import CeleryWorker

pytestmark = pytest.mark.integration


def test_a_worker_never_started_leaves_no_folder():
    worker = CeleryWorker(database_name="unused", broker_url="redis://127.0.0.1:6379/15")
    assert worker.queue_names() and not worker.log_path.parent.exists()


def test_a_stopped_worker_removes_its_folder_and_keeps_its_log(transactional_db):
    worker = CeleryWorker(
        database_name=settings.DATABASES["default"]["NAME"], broker_url=settings.CELERY_BROKER_URL
    ).start()
    folder = worker.log_path.parent
    try:
        assert folder.is_dir()
        worker.stop()
        assert not folder.exists()
        assert "ready." in worker.log_text()
        worker.start()  # started again: its log goes on where it stopped
        assert worker.log_text().count("ready.") == 2
    finally:
        worker.stop()  # a failed assertion leaves no worker running
    assert not folder.exists()
