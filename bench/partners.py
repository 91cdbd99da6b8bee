"""Partners of an image on the hottest base: the full computation against the bounded one, in-process.

    .venv/bin/python -m bench.partners --database layerlens_bench_scale --runs 7

Picks, in the largest registry, images holding its most-held layer (the hottest base) and, among a
few of them, the one with the most partners (holdings sharing any part, counted by SQL); also an image
on no shared base. Times `partner_rows_full` and `partner_rows` (same rows, checked) for a few limits,
registry scope as the API and the image page ask, after one warm-up run each. Read-only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

PARTNER_COUNT_SQL = """
SELECT count(DISTINCT rm.id) - 1 FROM (
    SELECT ml.blob_id FROM analytics_manifestlayer ml WHERE ml.manifest_id = %(m)s
    UNION SELECT config_id FROM analytics_manifest WHERE id = %(m)s
) p
JOIN analytics_manifestlayer ml2 ON ml2.blob_id = p.blob_id
JOIN analytics_repositorymanifest rm ON rm.manifest_id = ml2.manifest_id AND rm.present
JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %(r)s
"""

HOT_IMAGES_SQL = """
SELECT rm.id, rm.manifest_id FROM analytics_manifestlayer ml
JOIN analytics_repositorymanifest rm ON rm.manifest_id = ml.manifest_id AND rm.present
JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
JOIN analytics_manifest m ON m.id = rm.manifest_id AND m.kind = 'image'
WHERE ml.blob_id = %s ORDER BY m.layer_count DESC, rm.id LIMIT %s
"""

# a seeded sample of images holding some layer of at least `hot` holdings
SAMPLE_SQL = """
SELECT rm.id, rm.manifest_id FROM analytics_repositorymanifest rm
JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
JOIN analytics_manifest m ON m.id = rm.manifest_id AND m.kind = 'image'
WHERE rm.present AND EXISTS (
    SELECT 1 FROM analytics_manifestlayer ml JOIN analytics_registryblob rb
        ON rb.blob_id = ml.blob_id AND rb.registry_id = r.registry_id AND rb.refs >= %s
    WHERE ml.manifest_id = rm.manifest_id
)
ORDER BY md5(%s || rm.id::text) LIMIT %s
"""

LONE_IMAGE_SQL = """
SELECT rm.id, rm.manifest_id FROM analytics_repositorymanifest rm
JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
JOIN analytics_manifest m ON m.id = rm.manifest_id AND m.kind = 'image'
WHERE rm.present AND NOT EXISTS (
    SELECT 1 FROM analytics_manifestlayer ml JOIN analytics_registryblob rb
        ON rb.blob_id = ml.blob_id AND rb.registry_id = r.registry_id AND rb.refs > 50
    WHERE ml.manifest_id = rm.manifest_id
)
ORDER BY rm.id LIMIT 1
"""


def _timed(fn, runs: int) -> tuple[list[float], object]:
    result = fn()  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="layerlens_bench_scale")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--limits", default="10,100,1000")
    parser.add_argument("--sample", type=int, default=20, help="images on the hottest base to count")
    parser.add_argument("--spread", type=int, default=100, help="images on hot bases, timed once each")
    parser.add_argument("--hot", type=int, default=1000, help="holdings of a layer to call it hot")
    parser.add_argument("--holdings", default="", help="more holding ids to time, comma-separated")
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection

    from analytics.selectors.partners import partner_rows, partner_rows_full
    from analytics.selectors.scope import Scope

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT registry_id, blob_id, refs FROM analytics_registryblob ORDER BY refs DESC, blob_id"
            " LIMIT 1"
        )
        registry_id, blob_id, refs = cursor.fetchone()
        cursor.execute(HOT_IMAGES_SQL, [registry_id, blob_id, args.sample])
        hot = cursor.fetchall()
        counted = []
        for holding, manifest in hot:
            cursor.execute(PARTNER_COUNT_SQL, {"m": manifest, "r": registry_id})
            counted.append((cursor.fetchone()[0], holding, manifest))
        cursor.execute(SAMPLE_SQL, [registry_id, args.hot, "partners", args.spread])
        spread = cursor.fetchall()
        cursor.execute(LONE_IMAGE_SQL, [registry_id])
        lone = cursor.fetchone()
        cursor.execute(PARTNER_COUNT_SQL, {"m": lone[1], "r": registry_id})
        lone_partners = cursor.fetchone()[0]
    partners, holding, manifest = max(counted, key=lambda c: (c[0], -c[1]))
    print(f"hottest layer {blob_id}: {refs} holdings; registry {registry_id}")
    scope = Scope(registry_id=registry_id)
    subjects = [("hottest base", (holding, manifest, partners)), ("no shared base", (*lone, lone_partners))]
    with connection.cursor() as cursor:
        for extra in (int(x) for x in args.holdings.split(",") if x):
            cursor.execute("SELECT manifest_id FROM analytics_repositorymanifest WHERE id = %s", [extra])
            extra_manifest = cursor.fetchone()[0]
            cursor.execute(PARTNER_COUNT_SQL, {"m": extra_manifest, "r": registry_id})
            subjects.append(("asked", (extra, extra_manifest, cursor.fetchone()[0])))
    for label, (h, m, n) in subjects:
        print(f"{label}: holding {h}, {n} partners")
        for limit in (int(x) for x in args.limits.split(",")):
            kwargs = {"holding_id": h, "manifest_id": m, "scope": scope, "limit": limit}
            full_times, full = _timed(lambda kw=kwargs: partner_rows_full(**kw), args.runs)
            new_times, new = _timed(lambda kw=kwargs: partner_rows(**kw), args.runs)
            assert full == new, (label, limit)
            for name, times in (("full", full_times), ("bounded", new_times)):
                print(
                    f"  limit {limit:>4} {name:>7}: median {statistics.median(times):7.1f} ms, "
                    f"min {times[0]:7.1f}, max {times[-1]:7.1f} ({args.runs} runs)"
                )

    if not spread:
        return
    print(f"{len(spread)} images holding a layer of >= {args.hot} holdings, limit 10, each timed once warm:")
    for name, fn in (("full", partner_rows_full), ("bounded", partner_rows)):
        times = []
        for h, m in spread:
            kwargs = {"holding_id": h, "manifest_id": m, "scope": scope, "limit": 10}
            fn(**kwargs)
            started = time.perf_counter()
            rows = fn(**kwargs)
            times.append((time.perf_counter() - started) * 1000)
            if name == "bounded":
                assert rows == partner_rows_full(**kwargs), h
        times.sort()
        p90, p99 = (times[round(q * (len(times) - 1))] for q in (0.9, 0.99))
        print(
            f"  {name:>7}: median {statistics.median(times):7.1f} ms, p90 {p90:7.1f}, p99 {p99:7.1f}, "
            f"max {times[-1]:7.1f}"
        )


if __name__ == "__main__":
    main()
