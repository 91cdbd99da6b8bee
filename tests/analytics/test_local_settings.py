"""`local_settings`: statements in the block run with the settings; after it, whether it ended or raised,
the caller's transaction (every test holds one) has its own values back."""

from __future__ import annotations

import pytest
from django.db import connection

from analytics.infra.statements import local_settings

pytestmark = pytest.mark.django_db


def _shown() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('work_mem'), current_setting('enable_nestloop')")
        return tuple(cursor.fetchone())


def test_settings_hold_inside_the_block_and_the_callers_come_back_after_it():
    before = _shown()
    assert before != ("77MB", "off")
    with local_settings({"work_mem": "77MB", "enable_nestloop": "off"}) as cursor:
        cursor.execute("SHOW work_mem")
        assert cursor.fetchone()[0] == "77MB"
        assert _shown() == ("77MB", "off")
    assert connection.in_atomic_block  # still the test's transaction, where set_config(true) would last
    assert _shown() == before


def test_an_error_in_the_block_leaves_the_callers_settings():
    before = _shown()
    with pytest.raises(ZeroDivisionError):
        with local_settings({"work_mem": "77MB", "enable_nestloop": "off"}) as cursor:
            cursor.execute("SELECT 1")
            1 / 0  # noqa: B018
    assert _shown() == before
