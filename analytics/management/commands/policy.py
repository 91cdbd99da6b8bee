"""`manage.py policy add|list|show|remove|evaluate`: cleanup policies saved per registry.

`add` parses the file in its format (given, or guessed from its fields) before anything is saved: a
policy that does not parse is one line naming its line and column or JSON path, and no row. `evaluate`
evaluates a policy now and records the point, as the workers do after each scan or batch of events."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from analytics.errors import LayerlensError
from analytics.infra.units import human_size
from analytics.models import PolicyEvaluation
from analytics.policies.document import MAX_POLICY_BYTES
from analytics.policies.evaluate import policy_evaluate
from analytics.policies.preview import FORMATS
from analytics.policies.saved import cleanup_policy_create, cleanup_policy_delete
from analytics.selectors.lists import registry_lookup
from analytics.selectors.policies import policy_get, policy_list, policy_series

SHOWN_POINTS = 20


def _read(path: str) -> str:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_POLICY_BYTES + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise CommandError(
            f"{path}: the policy is more than {MAX_POLICY_BYTES:,} bytes; at most that is read"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _point(e: PolicyEvaluation | None) -> str:
    if e is None:
        return "not evaluated yet"
    at = e.at.isoformat(timespec="seconds")
    if e.error:
        return f"{at}: refused: {e.error}"
    return (
        f"{at}: {human_size(e.freed_bytes)} ({e.freed_bytes:,} B) reclaimable, "
        f"{e.tags_removed} tags removed, {e.manifests_freed} manifests and {e.blobs_freed} blobs freed"
        + (f", push times from {e.push_times}" if e.push_times else "")
    )


def _id(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise CommandError(f"a policy id is a whole number, not {value!r}")
    return int(value)


class Command(BaseCommand):
    help = "Add, list, show, remove or evaluate the cleanup policies saved for registries."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Save a policy for a registry (its text is parsed first).")
        add.add_argument("registry", help="Registry by id, name, URL or host:port.")
        add.add_argument("--name", required=True, help="Unique per registry.")
        add.add_argument("--file", required=True, help="The policy's JSON document; - reads standard input.")
        add.add_argument("--format", choices=FORMATS, help="The policy's format (default: from its fields).")
        add.add_argument("--namespace", default="", help="Only this namespace.")
        add.add_argument("--repository", default="", help="Only this repository (by name).")
        add.add_argument("--disabled", action="store_true", help="Saved, but not evaluated after scans.")
        ls = sub.add_parser("list", help="List saved policies with their latest evaluation.")
        ls.add_argument("--registry", help="Only this registry's.")
        show = sub.add_parser("show", help="A policy's text and its latest evaluations.")
        show.add_argument("id")
        remove = sub.add_parser("remove", help="Delete a policy and its series.")
        remove.add_argument("id")
        evaluate = sub.add_parser("evaluate", help="Evaluate a policy now and record the point.")
        evaluate.add_argument("id")

    def handle(self, *args, **options):
        try:
            getattr(self, f"_{options['action']}")(options)
        except LayerlensError as exc:
            raise CommandError(str(exc)) from exc

    def _add(self, o) -> None:
        registry = registry_lookup(o["registry"])
        policy = cleanup_policy_create(
            registry=registry,
            name=o["name"],
            text=_read(o["file"]),
            format=o["format"],
            namespace=o["namespace"],
            repository=o["repository"],
            enabled=not o["disabled"],
        )
        self.stdout.write(
            f"policy {policy.id} {policy.name} ({policy.format}) saved for registry {registry.name}; "
            f"`manage.py policy evaluate {policy.id}` evaluates it now"
        )

    def _list(self, o) -> None:
        policies = policy_list().order_by("registry__name", "name")
        if o["registry"]:
            policies = policies.filter(registry=registry_lookup(o["registry"]))
        rows = [("ID", "REGISTRY", "NAME", "FORMAT", "SCOPE", "ENABLED", "RECLAIMABLE", "EVALUATED")]
        for p in policies:
            latest = p.latest[0] if p.latest else None
            scope = p.repository or (p.namespace + "/" if p.namespace else "*")
            figure = "-" if latest is None else ("refused" if latest.error else f"{latest.freed_bytes:,} B")
            when = latest.at.isoformat(timespec="seconds") if latest else "never"
            rows.append(
                (
                    str(p.id),
                    p.registry.name,
                    p.name,
                    p.format,
                    scope,
                    "yes" if p.enabled else "no",
                    figure,
                    when,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())

    def _show(self, o) -> None:
        p = policy_get(_id(o["id"]))
        self.stdout.write(f"policy {p.id} {p.name} on registry {p.registry.name} ({p.registry.url})")
        self.stdout.write(
            f"format: {p.format}  revision: {p.revision}  enabled: {'yes' if p.enabled else 'no'}"
        )
        self.stdout.write(f"scope: namespace {p.namespace or '-'}, repository {p.repository or '-'}")
        self.stdout.write("evaluations, newest first:")
        points = list(policy_series(policy_id=p.id)[:SHOWN_POINTS])
        for e in points or [None]:
            self.stdout.write(f"  {_point(e)}")
        self.stdout.write("text:")
        self.stdout.write(p.text)

    def _remove(self, o) -> None:
        p = policy_get(_id(o["id"]))
        cleanup_policy_delete(policy=p)
        self.stdout.write(f"policy {o['id']} {p.name} removed")

    def _evaluate(self, o) -> None:
        p = policy_get(_id(o["id"]))
        point = policy_evaluate(policy=p)
        if point.error:  # recorded as the point, and the command fails with it
            raise CommandError(f"policy {p.id} {p.name}: {_point(point)}")
        self.stdout.write(f"policy {p.id} {p.name}: {_point(point)}")
