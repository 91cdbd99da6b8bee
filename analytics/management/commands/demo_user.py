"""`manage.py demo_user --username U --password P`: create or update a staff superuser, idempotently."""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create or update a staff superuser (for `make run`'s demo login). Safe to run repeatedly."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("DEMO_USERNAME", "admin"))
        parser.add_argument(
            "--password", default=os.environ.get("DEMO_PASSWORD"), help="Defaults to $DEMO_PASSWORD."
        )
        parser.add_argument("--email", default="")

    def handle(self, *args, **options):
        if not options["password"]:
            raise CommandError("a password is required: --password or $DEMO_PASSWORD")
        users = get_user_model()
        user, created = users.objects.get_or_create(
            username=options["username"], defaults={"email": options["email"]}
        )
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        user.set_password(options["password"])
        user.save()
        self.stdout.write(f"{'created' if created else 'updated'} staff user {user.username}")
