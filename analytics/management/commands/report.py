"""`manage.py report`: the dedup summary of a scope, as a table or as JSON."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from analytics.engines.selectors import engine_disk_usage, engine_endpoints, engine_lookup
from analytics.errors import LayerlensError, NotFound
from analytics.infra.units import human_size
from analytics.selectors.scope import namespace_check, scope_resolve
from analytics.selectors.summary import dedup_summary


def _cell(name: str, value: object) -> tuple[str, str]:
    """One summary field as the table shows it: sizes for people (decimal, like docker) with the exact
    bytes beside them, counts with thousands separators."""
    if value is None:
        return "-", ""
    if name == "scope":
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "everything", ""  # type: ignore[attr-defined]
    if isinstance(value, bool):
        return ("yes" if value else "no"), ""
    if name.endswith("_bytes"):
        return human_size(value), f"{value:,} B"  # type: ignore[arg-type]
    if name == "dedup_ratio":
        return f"{value:.2f}x", ""
    if isinstance(value, float):
        return f"{value:.1%}", ""
    return f"{value:,}", ""


class Command(BaseCommand):
    help = "Print the deduplication summary for a registry, namespace or repository (default: everything)."

    def add_arguments(self, parser):
        parser.add_argument("--registry", help="Registry by host:port, URL, name or id.")
        parser.add_argument("--namespace", help="Repository path prefix, e.g. team.")
        parser.add_argument("--repository", help="Repository name, e.g. team/app.")
        parser.add_argument("--include-untagged", action="store_true", help="Count manifests no tag reaches.")
        parser.add_argument(
            "--engine", help="A Docker Engine by endpoint, name or id: its `docker system df -v` view."
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print JSON: the fields of the API's summary/ (the table shows the same ones).",
        )

    def handle(self, *args, **options):
        if options["engine"]:
            return self._engine(options)
        try:
            scope = scope_resolve(
                registry=options["registry"],
                namespace=options["namespace"],
                repository=options["repository"],
                include_untagged=options["include_untagged"],
            )
            if scope.namespace:
                namespace_check(registry_id=scope.registry_id, namespace=scope.namespace)
            summary = dedup_summary(scope=scope)
        except LayerlensError as exc:
            raise CommandError(str(exc))
        fields = summary.as_dict()  # the API's `summary/` body: the same fields, names and counts
        if options["json"]:
            self.stdout.write(json.dumps(fields, indent=2))
            return
        rows = [(name, *_cell(name, value)) for name, value in fields.items()]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        w2 = max(len(r[2]) for r in rows)
        for label, human, raw in rows:
            self.stdout.write(f"{label:<{w0}}  {human:>{w1}}  {raw:>{w2}}".rstrip())

    def _engine(self, options) -> None:
        try:
            usage = engine_disk_usage(engine=engine_lookup(options["engine"]))
        except NotFound as exc:
            known = ", ".join(engine_endpoints(limit=8)) or "none"
            raise CommandError(f"{exc}; engines scanned: {known} (manage.py scan engine:ENDPOINT --inline)")
        except LayerlensError as exc:
            raise CommandError(str(exc))
        if options["json"]:
            self.stdout.write(json.dumps(usage.as_report(), indent=2))
            return
        size = lambda n: "?" if n is None else human_size(n)  # noqa: E731
        self.stdout.write(f"engine: {usage.engine} ({usage.endpoint}), ChainID sharing")
        self.stdout.write(f"{'IMAGE ID':<14} {'SIZE':>10} {'SHARED':>10} {'UNIQUE':>10} {'CONT.':>5}  TAGS")
        for i in usage.images:
            self.stdout.write(
                f"{i.id.split(':')[-1][:12]:<14} {size(i.size_bytes):>10} {size(i.shared_bytes):>10} "
                f"{size(i.unique_bytes):>10} {i.containers:>5}  {', '.join(i.tags) or '<none>'}"
            )
        self.stdout.write(
            f"images {len(usage.images)} (active {usage.active}), stored {size(usage.stored_bytes)}, "
            f"saved by sharing {size(usage.saved_bytes)}, reclaimable {size(usage.reclaimable_bytes)}"
        )
