"""Which registries' materialized answers (`RegistryStaleBase`, `RegistryMissedSaving`) are current.

An answer is current while the registry's content version (`ScopeFigures.content_version`, moved in the
transaction of every write the answer reads) and, for missed savings, the diff-id epoch (`DiffIdEpoch`)
still equal what its rows were computed at (`RegistryAnswer`). `analytics.ingest.answers` recomputes
the others; a selector reading an answer that is not current computes it instead, so it is exact either
way.
"""

from __future__ import annotations

from django.db import connection

from analytics.models import RegistryAnswer

STALE_BASES = RegistryAnswer.Kind.STALE_BASES.value
MISSED_SAVINGS = RegistryAnswer.Kind.MISSED_SAVINGS.value

# What each registry's answer would be computed at now: its content version and the diff-id epoch
# (null before the registry's first ingest: never current, and computing nothing is cheap).
_CURRENT_SQL = """
SELECT reg.id, f.content_version, (SELECT e.value FROM analytics_diffidepoch e WHERE e.id = 1)
FROM unnest(%s::bigint[]) AS reg(id)
LEFT JOIN analytics_scopefigures f ON f.registry_id = reg.id AND f.repository_id IS NULL
ORDER BY reg.id
"""

_STALE_SQL = f"""
SELECT c.id FROM ({_CURRENT_SQL}) c(id, version, epoch)
LEFT JOIN analytics_registryanswer a ON a.registry_id = c.id AND a.answer = %s
WHERE c.version IS NULL OR a.content_version IS DISTINCT FROM c.version
    OR (a.answer = '{MISSED_SAVINGS}' AND a.diff_epoch IS DISTINCT FROM c.epoch)
ORDER BY c.id
"""


def answer_inputs(*, registry_ids: list[int]) -> dict[int, tuple[int | None, int | None]]:
    """(content version, diff-id epoch) per registry, as an answer computed now would record them."""
    with connection.cursor() as cursor:
        cursor.execute(_CURRENT_SQL, [registry_ids])
        return {r: (v, e) for r, v, e in cursor.fetchall()}


def answers_stale(*, registry_ids: list[int], answer: str) -> list[int]:
    """The registries (of these) whose materialized `answer` is not current (or was never computed)."""
    with connection.cursor() as cursor:
        cursor.execute(_STALE_SQL, [registry_ids, answer])
        return [row[0] for row in cursor.fetchall()]
