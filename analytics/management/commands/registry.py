"""`manage.py registry add|list|events-secret|events-config`: register registries; secrets are read from
stdin (or generated, and then printed once) and never printed otherwise, except by `events-config`, whose
job is to print what the registry must send."""

from __future__ import annotations

import sys
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics.errors import LayerlensError
from analytics.events.senders import SENDERS, events_config, public_url_notes
from analytics.registries import (
    MAX_SCAN_INTERVAL,
    events_secret_generate,
    registry_update,
    registry_upsert,
)
from analytics.selectors.lists import registry_list, registry_lookup


def _stdin_line(what: str) -> str:
    """One line of standard input (without its end), for a secret that must not be empty."""
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise CommandError(f"{what}: standard input has no line for it")
    return line


class Command(BaseCommand):
    help = (
        "Add or list registries, set the secret a registry sends its events with, print what to paste into "
        "the registry so that it does. Secrets are read from standard input and never printed, but by "
        "events-config and a generated one."
    )

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
        events = add.add_mutually_exclusive_group()
        events.add_argument(
            "--events-secret-stdin",
            action="store_true",
            help="Read the events secret from standard input (its second line with --password-stdin): the "
            "registry is then followed by events.",
        )
        events.add_argument(
            "--events-secret-generate",
            action="store_true",
            help="Make a random events secret and print it (`registry events-config` prints it again).",
        )
        sub.add_parser("list", help="List registries.")
        secret = sub.add_parser(
            "events-secret",
            help="Set or clear the secret an existing registry sends its events with.",
        )
        secret.add_argument("registry", help="Registry by id, name, URL or host:port.")
        how = secret.add_mutually_exclusive_group(required=True)
        how.add_argument("--stdin", action="store_true", help="Read it from standard input.")
        how.add_argument("--generate", action="store_true", help="Make a random one and print it.")
        how.add_argument(
            "--clear", action="store_true", help="Remove it: the registry is no longer followed."
        )
        config = sub.add_parser(
            "events-config",
            help="Print what to paste into the registry (distribution's notifications: block, a Harbor "
            "webhook, a Quay notification) so that it sends its events here.",
        )
        config.add_argument("registry", help="Registry by id, name, URL or host:port.")
        config.add_argument(
            "--url",
            help="This server's address as the registry reaches it (default: LAYERLENS_PUBLIC_URL).",
        )
        config.add_argument(
            "--for",
            dest="sender",
            choices=["all", *SENDERS],
            default="all",
            help="all (default): one YAML document, Harbor's and Quay's settings in comments; distribution: "
            "the notifications: block alone; harbor, quay: the body of their API's request.",
        )

    def handle(self, *args, **options):
        action = options["action"].replace("-", "_")
        try:
            getattr(self, f"_{action}")(options)
        except LayerlensError as exc:
            raise CommandError(str(exc)) from exc

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
        events_secret = None
        if options["events_secret_stdin"]:
            events_secret = _stdin_line("--events-secret-stdin")
        elif options["events_secret_generate"]:
            events_secret = events_secret_generate()
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
        registry = registry_upsert(
            url=options["url"],
            name=options["name"],
            username=options["username"],
            password=password,
            events_secret=events_secret,
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
        self.stdout.write(f"registry {registry.id} {registry.name} ({registry.url}) saved")
        if options["events_secret_generate"]:
            self.stdout.write(f"events secret: {events_secret}")
        if events_secret is not None:
            print(
                f"followed by events: `manage.py registry events-config {registry.id}` prints what to paste "
                "into the registry",
                file=sys.stderr,
            )

    def _events_secret(self, options) -> None:
        registry = registry_lookup(options["registry"])
        if options["clear"]:
            registry_update(registry=registry, events_secret="")
            self.stdout.write(f"registry {registry.id} {registry.name}: events secret cleared, not followed")
            return
        secret = _stdin_line("--stdin") if options["stdin"] else events_secret_generate()
        registry_update(registry=registry, events_secret=secret)
        if options["generate"]:
            # The secret alone on stdout, so that `SECRET=$(manage.py registry events-secret ...)` works.
            self.stdout.write(secret)
        print(
            f"registry {registry.id} {registry.name}: events secret set, followed by events; "
            f"`manage.py registry events-config {registry.id}` prints what to paste into the registry",
            file=sys.stderr,
        )

    def _events_config(self, options) -> None:
        given = options["url"]
        config = events_config(
            registry=registry_lookup(options["registry"]),
            public_url=given or settings.LAYERLENS_PUBLIC_URL,
            source="--url" if given else "LAYERLENS_PUBLIC_URL",
        )
        for note in public_url_notes(config.url):
            print(f"note: {note}", file=sys.stderr)
        self.stdout.write(config.text(options["sender"]))

    def _list(self, options) -> None:
        rows = [
            (
                "ID",
                "NAME",
                "URL",
                "USER",
                "PASSWORD",
                "INSECURE",
                "TRACKED",
                "INTERVAL",
                "LAST SCANNED",
                "FOLLOWED",
                "LAST EVENT",
                "PENDING",
            )
        ]
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
                    "yes" if r.followed else "no",
                    r.last_event_at.isoformat(timespec="seconds") if r.last_event_at else "-",
                    str(r.events_pending),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
