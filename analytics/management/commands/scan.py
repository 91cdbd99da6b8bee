"""`manage.py scan TARGET`: scan a registry, a repository or one tag, on the workers or in-process."""

from __future__ import annotations

import argparse
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from analytics.engines.services import engine_scan_start
from analytics.errors import LayerlensError
from analytics.models import EngineScan, Scan
from analytics.scans.start import scan_run_inline, scan_start
from analytics.scans.state import scan_fail
from analytics.selectors.lists import scan_errors
from workers.registry.errors import RegistryError

DEEP_BUDGET_DEFAULT = 1024**3  # 1 GiB of compressed layers per repository scan
# A bar redraws its line with carriage returns: fine on a terminal, one endless line in a log file.
PLAIN_PROGRESS_SECONDS = 10.0


def _progress_line(scan: Scan) -> str:
    return (
        f"scan {scan.id} {scan.status}: repositories {scan.repositories_done}/{scan.repositories_total}, "
        f"tags {scan.tags_done}/{scan.tags_total}"
    )


class Command(BaseCommand):
    help = (
        "Scan TARGET: http://host:port (a registry), host:port/repo (a repository), host:port/repo:tag, "
        "or engine:ENDPOINT (a Docker Engine: engine:unix:///var/run/docker.sock, engine:DOCKER_HOST). "
        "Exits non-zero when the scan failed or had errors."
    )

    def add_arguments(self, parser):
        parser.add_argument("target")
        parser.add_argument(
            "--inline", action="store_true", help="Run in this process instead of on the workers."
        )
        parser.add_argument("--username", help="Registry user name (saved on the registry).")
        parser.add_argument(
            "--password-stdin", action="store_true", help="Read the registry password from standard input."
        )
        parser.add_argument(
            "--allow-internal",
            action="store_true",
            help="Allow the registry (or a tcp:// or ssh:// engine) on a loopback, private or link-local "
            "address (saved on it).",
        )
        parser.add_argument("--timeout", type=float, default=3600.0, help="Seconds to wait for the workers.")
        parser.add_argument("--poll", type=float, default=0.5, help=argparse.SUPPRESS)
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="No progress bar (when standard error is not a terminal: no progress lines).",
        )
        parser.add_argument(
            "--progress-every",
            type=float,
            default=PLAIN_PROGRESS_SECONDS,
            metavar="SECONDS",
            help="When standard error is not a terminal (a log, a pipe): a plain progress line this often "
            f"and one at the end, instead of the bar (default {PLAIN_PROGRESS_SECONDS:g}).",
        )
        parser.add_argument(
            "--deep",
            action="store_true",
            help="After reading each repository, stream its layers of unknown uncompressed size through "
            "a decompressor to measure them and verify their diff_ids (never to disk).",
        )
        parser.add_argument(
            "--deep-budget",
            type=int,
            default=DEEP_BUDGET_DEFAULT,
            metavar="BYTES",
            help=f"--deep: compressed bytes each repository scan may stream (default {DEEP_BUDGET_DEFAULT}).",
        )
        parser.add_argument(
            "--pull",
            action="append",
            default=[],
            metavar="REF",
            help="engine: targets: pull REF through the engine first (repeatable).",
        )

    def handle(self, *args, **options):
        if options["target"].startswith("engine:"):
            return self._engine(options)
        password = sys.stdin.readline().rstrip("\r\n") if options["password_stdin"] else None
        try:
            if options["deep"] and options["deep_budget"] <= 0:
                raise CommandError("--deep-budget must be a positive number of bytes")
            scan = scan_start(
                target=options["target"],
                trigger="cli",
                username=options["username"],
                password=password,
                allow_internal=options["allow_internal"] or None,
                deep_budget_bytes=options["deep_budget"] if options["deep"] else None,
                enqueue=not options["inline"],
                check_reachable=True,
            )
            if options["inline"]:
                scan = self._run_inline(scan.id)
            else:
                scan = self._wait(
                    scan.id,
                    timeout=options["timeout"],
                    poll=options["poll"],
                    progress=not options["no_progress"],
                    every=options["progress_every"],
                )
        except LayerlensError as exc:
            raise CommandError(str(exc))
        if scan.status == Scan.Status.FAILED and scan.message:
            # nothing was read: the reason is the one line to show
            raise CommandError(f"scan {scan.id} failed: {scan.message}")
        self._summary(scan)
        if scan.status == Scan.Status.FAILED:
            raise CommandError(f"scan {scan.id} failed: see the errors above")
        if scan.errors_count:
            raise CommandError(f"scan {scan.id} finished with {scan.errors_count} error(s)")

    def _engine(self, options) -> None:
        """`scan engine:ENDPOINT`: read a Docker Engine (and pull `--pull` references through it first)."""
        try:
            scan = engine_scan_start(
                endpoint=options["target"],
                pull=options["pull"],
                trigger="cli",
                inline=options["inline"],
                allow_internal=options["allow_internal"] or None,
                check_reachable=True,
                require_answer=True,
            )
        except LayerlensError as exc:
            raise CommandError(str(exc))
        deadline = time.monotonic() + options["timeout"]
        if scan.status == Scan.Status.FAILED and not scan.images_count:
            raise CommandError(f"engine scan {scan.id} failed: {scan.message}")
        while not scan.is_finished:
            if time.monotonic() >= deadline:
                raise CommandError(f"engine scan {scan.id} still {scan.status}; is a worker running?")
            time.sleep(options["poll"])
            scan = EngineScan.objects.select_related("engine").get(id=scan.id)
        for key, value in (
            ("engine scan", scan.id),
            ("engine", f"{scan.engine} ({scan.engine.server_version}, {scan.engine.storage_driver})"),
            ("status", scan.get_status_display()),
            ("images", scan.images_count),
            ("layers", scan.layers_count),
            ("pulled", scan.pulled_count),
            ("linked blobs", scan.linked_blobs_count),
        ):
            self.stdout.write(f"{key:<13} {value}")
        for error in scan.errors[:50]:
            self.stdout.write(f"  error: {error['reference']}: {error['kind']}: {error['message']}")
        if scan.status == Scan.Status.FAILED:
            raise CommandError(f"engine scan {scan.id} failed: {scan.message}")

    def _run_inline(self, scan_id: int) -> Scan:
        try:
            return scan_run_inline(scan_id=scan_id)
        except RegistryError as exc:
            # A transient error leaves the scan queued for a worker's retry; in-process there is no
            # retry, so the scan is failed with the registry's own words.
            scan_fail(scan_id=scan_id, message=str(exc), kind=type(exc).__name__)
            return Scan.objects.select_related("registry", "repository").get(id=scan_id)

    def _wait(self, scan_id: int, *, timeout: float, poll: float, progress: bool, every: float) -> Scan:
        from tqdm import tqdm

        self.stderr.write(f"scan {scan_id} queued; waiting for the workers (timeout {timeout:g}s)")
        deadline = time.monotonic() + timeout
        plain = progress and not sys.stderr.isatty()
        bar = tqdm(total=0, unit="repo", file=sys.stderr, disable=plain or not progress, dynamic_ncols=True)
        last_line = None
        scan = None
        try:
            while True:
                scan = Scan.objects.select_related("registry", "repository").get(id=scan_id)
                due = last_line is None or time.monotonic() - last_line >= every
                if plain and due and not scan.is_finished:  # the final line is the `finally`'s
                    self.stderr.write(_progress_line(scan))
                    last_line = time.monotonic()
                total = scan.repositories_total or (1 if scan.kind != Scan.Kind.REGISTRY else 0)
                if bar.total != total:
                    bar.total = total
                bar.n = scan.repositories_done
                # Tags listed so far grow as repositories start, so they are shown, not used as the total.
                bar.set_postfix_str(f"{scan.status}, tags {scan.tags_done}/{scan.tags_total}", refresh=False)
                bar.refresh()
                if scan.is_finished:
                    return scan
                if time.monotonic() >= deadline:
                    raise CommandError(
                        f"scan {scan_id} still {scan.status} after {timeout:g}s "
                        f"({scan.repositories_done}/{scan.repositories_total} repositories); "
                        "is a worker running?"
                    )
                time.sleep(poll)
        finally:
            bar.close()
            if plain and scan is not None:
                self.stderr.write(_progress_line(scan))  # the last state, whatever came before

    def _summary(self, scan: Scan) -> None:
        duration = (
            f"{(scan.finished_at - scan.started_at).total_seconds():.1f}s"
            if scan.started_at and scan.finished_at
            else "-"
        )
        rows = [
            ("scan", str(scan.id)),
            ("target", f"{scan.repository or scan.registry}" + (f":{scan.tag}" if scan.tag else "")),
            ("status", scan.get_status_display()),
            ("repositories", f"{scan.repositories_done}/{scan.repositories_total}"),
            ("tags", str(scan.tags_count)),
            ("images", str(scan.images_count)),
            ("new manifests", str(scan.new_manifests_count)),
            *(
                [("deep measured", str(scan.deep_measured_count))]
                if scan.deep_budget_bytes is not None
                else []
            ),
            ("errors", str(scan.errors_count)),
            ("duration", duration),
        ]
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            self.stdout.write(f"{key:<{width}}  {value}")
        if scan.message:
            self.stdout.write(f"message: {scan.message}")
        for error in scan_errors(scan_id=scan.id, include_children=True)[:50]:
            where = "/".join(p for p in (error.repository, error.reference) if p) or "registry"
            self.stdout.write(f"  error: {where}: {error.kind}: {error.message}")
