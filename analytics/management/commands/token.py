"""`manage.py token create|list|revoke`: API tokens for scripts (`Authorization: Bearer <token>`)."""

from __future__ import annotations

import sys
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from analytics.errors import LayerlensError
from analytics.selectors.tokens import token_list
from analytics.tokens import token_create, token_revoke, user_get


class Command(BaseCommand):
    help = "Make, list and revoke API tokens. A new token is printed once; only its digest is kept."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser(
            "create", help="Make a token for USER and print it (the only time it is shown)."
        )
        create.add_argument("user")
        create.add_argument("--name", required=True, help="What the token is for; unique per user.")
        create.add_argument("--expires-days", type=int, help="Lifetime in days (default: until revoked).")
        listing = sub.add_parser("list", help="List tokens (name, user, first characters, dates).")
        listing.add_argument("user", nargs="?")
        revoke = sub.add_parser("revoke", help="Delete USER's token NAME (or all of USER's with --all).")
        revoke.add_argument("user")
        which = revoke.add_mutually_exclusive_group(required=True)
        which.add_argument("--name")
        which.add_argument("--all", action="store_true")

    def handle(self, *args, **options):
        try:
            getattr(self, f"_{options['action']}")(options)
        except LayerlensError as exc:
            raise CommandError(str(exc)) from exc

    def _create(self, options) -> None:
        days = options["expires_days"]
        row, token = token_create(
            user=user_get(options["user"]),
            name=options["name"],
            expires_in=timedelta(days=days) if days is not None else None,
        )
        # The token alone on stdout, so `TOKEN=$(manage.py token create ...)` works; the notice on stderr.
        self.stdout.write(token)
        until = f", expires {row.expiry:%Y-%m-%d %H:%M} UTC" if row.expiry else ""
        print(
            f"token {row.name!r} for {row.user.get_username()}{until}: shown this once, store it now",
            file=sys.stderr,
        )

    def _list(self, options) -> None:
        user = user_get(options["user"]) if options["user"] else None
        for row in token_list(user=user):
            expiry = f"{row.expiry:%Y-%m-%d %H:%M}" if row.expiry else "never"
            self.stdout.write(
                f"{row.user.get_username()}\t{row.name}\t{row.token_key}...\t"
                f"created {row.created:%Y-%m-%d %H:%M}\texpires {expiry}"
            )

    def _revoke(self, options) -> None:
        user = user_get(options["user"])
        deleted = token_revoke(user=user, name=None if options["all"] else options["name"])
        self.stdout.write(f"revoked {deleted} token(s) of {user.get_username()}")
