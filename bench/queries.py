"""Latency of each question on the synthetic registry (`bench.generate`), and of ingesting into it.

    .venv/bin/python -m bench.queries [--database layerlens_bench_scale] [--runs 7] [--ingest 10000]
        [--only "build history, namespace" ...]

Each question runs once to warm the cache, then `--runs` times; the median and p95 are reported next
to its target (`TARGETS_MS`). `--ingest N` then ingests N new images through the real `snapshot_ingest`, in
repository-sized batches (50 images), and runs every question again. The ingested rows stay (the
database is a benchmark's scratch copy: regenerate it with `bench.generate`).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable

TARGETS_MS = {
    "registry summary": 1000,
    "namespace summary": 200,
    "repository summary": 200,
    "image shared/unique bytes": 50,
    "lineage": 50,
    "layer images, first page": 50,
    "what-if deletion of 10,000 images": 2000,
}


# `v3`, `v30`-`v39`, `v300`-`v399`, ...: 12% of the current tags at a million images (`v{n}`, `latest`)
TAG_GLOB = "v3*"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def questions() -> dict[str, Callable[[], object]]:
    """The questions, bound to the biggest namespace and repository and the hottest layer."""
    from django.db import connection

    from analytics.models import Registry, RegistryBlob, RepositoryManifest, ScopeFigures, Tag
    from analytics.selectors import content, whatif
    from analytics.selectors.images import image_sizes
    from analytics.selectors.layers import layer_counts, layer_holders, layer_repositories, layer_top
    from analytics.selectors.lineage import image_lineage
    from analytics.selectors.scope import Scope
    from analytics.selectors.summary import dedup_summary
    from analytics.selectors.trends import snapshot_series

    registry = Registry.objects.order_by("id").only("id").first()  # a database generated before a new column
    assert registry is not None, "generate the database first (bench.generate)"
    reg = registry.id
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT split_part(r.name, '/', 1), sum(f.images) FROM analytics_scopefigures f
               JOIN analytics_repository r ON r.id = f.repository_id WHERE r.registry_id = %s
               GROUP BY 1 ORDER BY 2 DESC LIMIT 1""",
            [reg],
        )
        namespace = cursor.fetchone()[0]
    repo_id = (
        ScopeFigures.objects.filter(registry_id=reg, repository__isnull=False)
        .order_by("-images")
        .values_list("repository_id", flat=True)
        .first()
    )
    hot = RegistryBlob.objects.filter(registry_id=reg).order_by("-images").first()
    assert hot is not None
    holders, _ = layer_holders(blob_id=hot.blob_id, registry_id=reg, limit=1)
    holding = RepositoryManifest.objects.select_related("repository").get(id=holders[0])
    tag_ids = list(
        Tag.objects.filter(repository__registry_id=reg, removed_at=None)
        .order_by("id")
        .values_list("id", flat=True)[:10000]
    )
    scope = Scope(registry_id=reg)
    # scopes the maintained registry rows do not answer: the largest namespace (its maintained rows),
    # a tag glob (its own holdings) and the largest repository
    scoped = {
        "namespace": Scope(registry_id=reg, namespace=namespace),
        f"tag glob {TAG_GLOB}": Scope(registry_id=reg, tag_glob=TAG_GLOB),
        "repository": Scope(repository_id=repo_id),
    }

    def layer_page() -> object:
        ids, _ = layer_holders(blob_id=hot.blob_id, registry_id=reg, limit=50)
        return image_sizes(holding_ids=ids), layer_counts(blob_id=hot.blob_id, registry_id=reg)

    return {
        "registry summary": lambda: dedup_summary(scope=scope),
        "namespace summary": lambda: dedup_summary(scope=Scope(registry_id=reg, namespace=namespace)),
        "repository summary": lambda: dedup_summary(scope=Scope(repository_id=repo_id)),
        f"summary, tag glob {TAG_GLOB}": lambda: dedup_summary(scope=scoped[f"tag glob {TAG_GLOB}"]),
        "image shared/unique bytes": lambda: image_sizes(holding_ids=[holding.id]),
        "lineage": lambda: image_lineage(holding=holding),
        "layer images, first page": layer_page,
        "what-if deletion of 10,000 images": lambda: whatif.deletion_impact(tag_ids=tag_ids, details=False),
        "layer ranking, first page": lambda: layer_top(registry_id=reg, limit=50),
        "layer ranking by bytes saved": lambda: layer_top(registry_id=reg, order="saved_bytes", limit=50),
        "layer repositories, first page": lambda: layer_repositories(blob_id=hot.blob_id, limit=50),
        "missed savings": lambda: content.missed_savings(scope=scope, limit=50),
        "build history": lambda: content.bytes_by_instruction(scope=scope, limit=50),
        "largest layers": lambda: content.largest_layers(scope=scope, limit=50),
        "trends": lambda: list(snapshot_series(registry_id=reg)),
        **{
            f"{question}, {name}": functools.partial(fn, scope=sc, limit=50)
            for name, sc in scoped.items()
            for question, fn in (
                ("build history", content.bytes_by_instruction),
                ("largest layers", content.largest_layers),
            )
        },
    }


def measure(runs: int, log=print, only: set[str] | None = None) -> dict[str, tuple[float, float]]:
    out = {}
    for name, fn in questions().items():
        if only and name not in only:
            continue
        fn()  # warm
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
        med, p95 = statistics.median(times), _p95(times)
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else ("ok" if p95 <= target else f"MISSED (target {target} ms)")
        log(f"{name:40s} median {med:9.1f} ms   p95 {p95:9.1f} ms   {verdict}")
        out[name] = (med, p95)
    return out


def ingest_new_images(count: int, *, batch: int = 50, log=print) -> float:
    """Ingest `count` new images (on the hottest base and a new layer each) through `snapshot_ingest`."""
    from analytics.ingest.snapshot import snapshot_ingest
    from analytics.models import Registry, Repository
    from harness.records import image, layer, snapshot

    registry = Registry.objects.order_by("id").first()
    stamp = str(time.time_ns())
    base = [layer("bench-base-slim", 28_000_000)]
    repos = [
        Repository.objects.create(registry=registry, name=f"ingest{stamp}/app{i}")
        for i in range((count + batch - 1) // batch)
    ]
    start = time.perf_counter()
    for i, repo in enumerate(repos):
        n = min(batch, count - i * batch)
        tags = {
            f"v{j}": image(f"{stamp}:{i}:{j}", [*base, layer(f"{stamp}:{i}:{j}", 1000 + j)]) for j in range(n)
        }
        snapshot_ingest(repository=repo, snapshot=snapshot(repo.name, tags))
    seconds = time.perf_counter() - start
    log(f"ingested {count} images in {len(repos)} repositories in {seconds:.1f} s")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="layerlens_bench_scale")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--ingest", type=int, default=0)
    parser.add_argument("--only", action="append", help="a question's name (repeatable); default all")
    args = parser.parse_args(argv)
    from bench.generate import _setup_django

    _setup_django(args.database)
    only = set(args.only) if args.only else None
    measure(args.runs, only=only)
    if args.ingest:
        ingest_new_images(args.ingest)
        print("after ingest:")
        measure(args.runs, only=only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
