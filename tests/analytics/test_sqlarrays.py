"""Array literals (`analytics.infra.sqlarrays`) read back by PostgreSQL as the values they were made of."""

from datetime import UTC, datetime

import pytest
from django.db import connection

from analytics.infra.sqlarrays import array_literal, int_array

TEXTS = [
    "",
    "plain",
    'a "quoted" word',
    "back\\slash",
    "NULL",
    "null",
    "x,y",
    "{braces}",
    " spaced ",
    "ünï",
    "\t",
]


@pytest.mark.django_db
def test_text_values_come_back_exactly_whatever_they_hold():
    with connection.cursor() as cursor:
        cursor.execute("SELECT unnest(%s::text[])", [array_literal([*TEXTS, None])])
        assert [row[0] for row in cursor.fetchall()] == [*TEXTS, None]


@pytest.mark.django_db
def test_numbers_booleans_and_times_come_back_as_their_types():
    at = datetime(2026, 12, 7, 15, 30, 1, 123456, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM unnest(%s::bigint[], %s::boolean[], %s::timestamptz[], %s::bigint[])",
            [
                array_literal([2**40, None]),
                array_literal([True, False]),
                array_literal([at, None]),
                int_array([7, -1]),
            ],
        )
        assert cursor.fetchall() == [(2**40, True, at, 7), (None, False, None, -1)]
