"""`manage.py report`: the dedup summary of a scope, as a table or as JSON."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat

from analytics.engines.selectors import engine_disk_usage, engine_endpoints, engine_lookup
from analytics.errors import LayerlensError, NotFound
from analytics.selectors.scope import namespace_check, scope_resolve
from analytics.selectors.summary import DedupSummary, dedup_summary


def _human(n: int) -> str:
    return filesizeformat(n).replace("\xa0", " ")


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
            "--json", action="store_true", help=f"Print JSON: {', '.join(DedupSummary.SUMMARY_FIELDS)}."
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
        if options["json"]:
            self.stdout.write(json.dumps(summary.summary(), indent=2))
            return
        rows = [
            ("images", f"{summary.images:,}", ""),
            ("distinct layers", f"{summary.distinct_layers:,}", ""),
            ("logical", _human(summary.logical_bytes), f"{summary.logical_bytes:,} B"),
            ("stored", _human(summary.stored_bytes), f"{summary.stored_bytes:,} B"),
            ("saved", _human(summary.saved_bytes), f"{summary.saved_bytes:,} B"),
            ("dedup ratio", f"{summary.dedup_ratio:.2f}x", ""),
            ("repositories", f"{summary.repositories:,}", ""),
            ("manifests", f"{summary.manifests:,} ({summary.indexes:,} indexes)", ""),
            ("layers logical", _human(summary.layers_logical_bytes), f"{summary.layers_logical_bytes:,} B"),
            ("layers stored", _human(summary.layers_stored_bytes), f"{summary.layers_stored_bytes:,} B"),
        ]
        scope_text = ", ".join(f"{k}={v}" for k, v in summary.scope.items()) or "everything"
        self.stdout.write(f"scope: {scope_text}" + ("" if summary.tagged_only else " (untagged included)"))
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
        size = lambda n: "?" if n is None else _human(n)  # noqa: E731
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
