"""Cleanup policy previews on the synthetic registry (`bench.generate`): wall time and CPU per preview.

    .venv/bin/python -m bench.policies [--database layerlens_bench_scale] [--runs 5] [--only NAME ...]
        [--selection-only | --totals] [--columns-unkept]

Each case (a policy over a scope: the largest namespace, the largest repository, the whole registry)
runs once to warm the cache, then `--runs` times; the median and spread (min, max) of the wall time are
printed with the CPU this process and the database's backends spent per run (read from /proc, since the
machine's cores are shared) and where the time went: reading the scope (`rows.scope_read`: the registry
and the scope's repository names), the format's selection (its statements over the scope, tag names matched
in Python), the what-if statement, the 2.8 collector's trap. The session is read-only
(`default_transaction_read_only`): the benchmark never writes the database it reads; and it compiles no
query (`jit` off), as the web's connections, which answer `POST /api/v1/policies/preview/`.
`--selection-only` times the scope's read and the format's selection alone (a whole registry's what-if is
the other part's cost); `--totals` times `policy_totals`, what a saved policy's point costs. A selection of
50,000 tags or more is judged over the registry's columns (`analytics.selectors.columns`): the warm run
reads and keeps them (as a scan's end does), the timed runs load the kept file ("what-if's columns", part
of the what-if's time); `--columns-unkept` removes the file before each run, to time reading them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable

TARGET_MS = 5000
SELECTION_TARGET_MS = 1500  # the scope's read and the selection alone, at a million images

GITLAB = {"name_regex": ".*", "keep_n": 10, "older_than": "90d", "name_regex_keep": "latest"}
ECR = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["v*"],
                "countType": "imageCountMoreThan",
                "countNumber": 10,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 30,
            },
            "action": {"type": "expire"},
        },
    ]
}
HARBOR = {
    "algorithm": "or",
    "rules": [
        {
            "action": "retain",
            "template": "latestPushedK",
            "params": {"latestPushedK": 10},
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
            "scope_selectors": {
                "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
            },
        }
    ],
}
POLICIES = {
    "gitlab keep_n 10 older_than 90d": GITLAB,
    "ecr keep 10 v*, untagged 30d": ECR,
    "harbor latest 10": HARBOR,
}


def _setup(database: str) -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET default_transaction_read_only = on")
        cursor.execute("SET jit = off")  # as the web's connections (analytics/infra/statements.py)


class Phases:
    """Wall time per phase of a preview, by wrapping the functions `policy_preview` calls."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def wrap(self, module, name: str, label: str) -> None:
        fn: Callable = getattr(module, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[label] += time.perf_counter() - start

        setattr(module, name, timed)


def cases() -> dict[str, dict]:
    from django.db import connection

    from analytics.models import Registry, ScopeFigures

    registry = Registry.objects.order_by("id").only("id").first()
    assert registry is not None, "generate the database first (bench.generate)"
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT split_part(r.name, '/', 1), sum(f.manifests) FROM analytics_scopefigures f
               JOIN analytics_repository r ON r.id = f.repository_id WHERE r.registry_id = %s
               GROUP BY 1 ORDER BY 2 DESC LIMIT 1""",
            [registry.id],
        )
        row = cursor.fetchone()
    assert row is not None, "the database has no figures yet: bench.generate builds them last; let it finish"
    namespace, ns_held = row
    largest = (
        ScopeFigures.objects.filter(registry_id=registry.id, repository__isnull=False)
        .order_by("-manifests")
        .values_list("repository_id", "repository__name", "manifests")
        .first()
    )
    whole = ScopeFigures.objects.filter(registry_id=registry.id, repository=None)
    held = whole.values_list("manifests", flat=True).first()
    reg = registry.id
    return {
        f"namespace {namespace} ({ns_held:,} holdings)": {"registry_id": reg, "namespace": namespace},
        f"repository {largest[1]} ({largest[2]:,} holdings)": {
            "registry_id": reg,
            "repository_id": largest[0],
        },
        f"registry ({held:,} holdings)": {"registry_id": reg},
    }


def _columns_drop() -> None:
    """Remove the kept columns files, so that a what-if reads the columns from the database again."""
    from pathlib import Path

    from django.conf import settings

    for path in Path(settings.WHATIF_COLUMNS_DIR).glob("*.npz"):
        path.unlink(missing_ok=True)


def run(
    *,
    runs: int,
    only: set[str],
    selection_only: bool = False,
    totals: bool = False,
    columns_unkept: bool = False,
    log=print,
) -> dict[str, tuple[float, float, float]]:
    from django.utils import timezone

    from analytics.policies import preview as preview_module
    from analytics.policies.ecr import EcrPolicy
    from analytics.policies.gitlab import GitlabPolicy
    from analytics.policies.harbor import HarborPolicy
    from analytics.policies.layerlens import LayerlensPolicy
    from analytics.policies.preview import policy_parse, policy_preview, policy_totals
    from analytics.policies.rows import scope_read
    from analytics.selectors import whatif_columns
    from harness.proc import cpu_seconds, cpu_spent, postgres_pids

    phases = Phases()
    phases.wrap(preview_module, "scope_read", "scope")
    for policy_class in (EcrPolicy, GitlabPolicy, HarborPolicy, LayerlensPolicy):
        phases.wrap(policy_class, "select", "selection")
    phases.wrap(preview_module, "deletion_impact", "what-if")
    phases.wrap(whatif_columns, "registry_columns", "what-if's columns")  # within the what-if's time
    phases.wrap(preview_module, "untagged_trap", "trap")
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    out = {}
    for scope_name, scope in cases().items():
        for policy_name, doc in POLICIES.items():
            name = f"{policy_name} over {scope_name}"
            if only and not any(o in name for o in only):
                continue
            policy = policy_parse(json.dumps(doc))
            if selection_only:  # the scope and the format's selection, not the pricing

                def one(policy=policy, scope=scope):
                    where = {"namespace": None, "repository_id": None, **scope}
                    return policy.select(scope_read(**where), timezone.now())
            elif totals:  # what a saved policy's point costs

                def one(policy=policy, scope=scope):
                    return policy_totals(policy=policy, **scope)
            else:

                def one(policy=policy, scope=scope):
                    return policy_preview(policy=policy, limit=100, **scope)

            answer = one()  # warm
            times, cpu_self, cpu_db = [], [], []
            phases.spent.clear()
            for _ in range(runs):
                if columns_unkept:
                    _columns_drop()
                pids = [os.getpid(), *postgres_pids(database)]
                before = cpu_seconds(pids)
                start = time.perf_counter()
                one()
                times.append((time.perf_counter() - start) * 1000)
                after = cpu_seconds(pids)
                me = os.getpid()
                cpu_self.append(after[me] - before[me])
                cpu_db.append(cpu_spent(before, after) - cpu_self[-1])
            med = statistics.median(times)
            where = ", ".join(f"{k} {v / runs * 1000:.0f} ms" for k, v in sorted(phases.spent.items()))
            outer = sum(v for k, v in phases.spent.items() if k != "what-if's columns")  # not nested ones
            rest = statistics.mean(times) - outer / runs * 1000
            target = SELECTION_TARGET_MS if selection_only else TARGET_MS
            verdict = "ok" if max(times) <= target else f"MISSED (target {target} ms)"
            if selection_only:
                removes = f"selects {len(answer.tag_ids):,} tags and {len(answer.untagged):,} untagged images"
            elif totals:
                removes = f"removes {answer.tags_removed:,} tags, frees {answer.freed_bytes:,} B"
            else:
                removes = f"removes {answer.impact.tags:,} tags, frees {answer.impact.freed_bytes:,} B"
            log(
                f"{name}\n  {removes}; "
                f"median {med:,.0f} ms (min {min(times):,.0f}, max {max(times):,.0f}) {verdict}; "
                f"CPU per run: this process {statistics.median(cpu_self):.2f} s, "
                f"database {statistics.median(cpu_db):.2f} s; "
                f"mean per phase: {where}, the rest {rest:.0f} ms"
            )
            out[name] = (med, min(times), max(times))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="layerlens_bench_scale")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", action="append", default=[], help="Cases whose name contains this.")
    parser.add_argument(
        "--selection-only",
        action="store_true",
        help="Time the scope's read and the format's selection alone (the what-if and the trap not run).",
    )
    parser.add_argument(
        "--totals",
        action="store_true",
        help="Time policy_totals, what a saved policy's point costs (no parts, lists or trap).",
    )
    parser.add_argument(
        "--columns-unkept",
        action="store_true",
        help="Remove the kept columns files before each run: a large what-if reads them from the database "
        "(the first preview after a change no scan's end kept them for).",
    )
    args = parser.parse_args(argv)
    _setup(args.database)
    run(
        runs=args.runs,
        only=set(args.only),
        selection_only=args.selection_only,
        totals=args.totals,
        columns_unkept=args.columns_unkept,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
