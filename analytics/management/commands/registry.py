"""`manage.py registry add|list`: register registries; secrets are read from stdin and never printed."""

from __future__ import annotations

import sys
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from analytics.errors import LayerlensError
from analytics.registries import MAX_SCAN_INTERVAL, registry_upsert
from analytics.selectors.lists import registry_list


class Command(BaseCommand):
    help = "Add or list registries. Passwords are read with --password-stdin and never printed."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add a registry, or update the one with this URL.")
        add.add_argument("url", help="Base URL, e.g. http://127.0.0.1:5000")
        add.add_argument("--name")
        add.add_argument("--username")
        add.add_argument(
            "--password-stdin", action="store_true", help="Read the password from standard input."
        )
        add.add_argument("--insecure", action="store_true", help="Skip TLS certificate verification.")
        add.add_argument("--ca-file", help="PEM file of CA certificates to trust for this registry.")
        add.add_argument(
            "--from-docker-config",
            metavar="FILE",
            help="Credentials from a Docker config.json `auths` entry (credential helpers are not run).",
        )
        add.add_argument(
            "--allow-internal",
            action="store_true",
            help="Allow this registry on a loopback, private or link-local address (off by default: SSRF).",
        )
        add.add_argument("--track", action="store_true", help="Scan on schedule.")
        add.add_argument("--interval", type=int, help="Seconds between scheduled scans (with --track).")
        sub.add_parser("list", help="List registries.")

    def handle(self, *args, **options):
        if options["action"] == "add":
            self._add(options)
        else:
            self._list()

    def _add(self, options) -> None:
        if options["interval"] is not None and not options["track"]:
            raise CommandError("--interval needs --track")
        if options["track"] and not options["interval"]:
            raise CommandError("--track needs --interval SECONDS")
        if options["interval"] is not None and options["interval"] > MAX_SCAN_INTERVAL.total_seconds():
            raise CommandError(f"--interval is at most {int(MAX_SCAN_INTERVAL.total_seconds())} seconds")
        if options["from_docker_config"] and (options["username"] or options["password_stdin"]):
            raise CommandError(
                "--from-docker-config replaces --username/--password-stdin; give one or the other"
            )
        password = sys.stdin.readline().rstrip("\r\n") if options["password_stdin"] else None
        docker_config = None
        if options["from_docker_config"]:
            try:
                with open(options["from_docker_config"], encoding="utf-8") as fh:
                    docker_config = fh.read()
            except OSError as exc:
                raise CommandError(f"cannot read {options['from_docker_config']}: {exc}")
        ca_bundle = None
        if options["ca_file"]:
            try:
                with open(options["ca_file"], encoding="ascii") as fh:
                    ca_bundle = fh.read()
            except OSError as exc:
                raise CommandError(f"cannot read {options['ca_file']}: {exc}")
        try:
            registry = registry_upsert(
                url=options["url"],
                name=options["name"],
                username=options["username"],
                password=password,
                insecure=options["insecure"] or None,
                ca_bundle=ca_bundle,
                docker_config=docker_config,
                allow_internal=options["allow_internal"] or None,
                check_reachable=True,
                **(
                    {"tracked": True, "scan_interval": timedelta(seconds=options["interval"])}
                    if options["track"]
                    else {}
                ),
            )
        except LayerlensError as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"registry {registry.id} {registry.name} ({registry.url}) saved")

    def _list(self) -> None:
        rows = [("ID", "NAME", "URL", "USER", "PASSWORD", "INSECURE", "TRACKED", "INTERVAL", "LAST SCANNED")]
        for r in registry_list():
            rows.append(
                (
                    str(r.id),
                    r.name,
                    r.url,
                    r.username or "-",
                    "set" if r.has_password else "-",
                    "yes" if r.insecure else "no",
                    "yes" if r.tracked else "no",
                    f"{int(r.scan_interval.total_seconds())}s" if r.scan_interval else "-",
                    r.last_scanned_at.isoformat(timespec="seconds") if r.last_scanned_at else "never",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
