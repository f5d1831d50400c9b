"""Gives a user access to one advertiser's data in the portal (a Membership), creating the user if asked."""

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from catalog.models import Advertiser, Membership
from catalog.services import membership_grant
from config.commands import BaseCommand


class Command(BaseCommand):
    help = (
        "Gives USERNAME access to ADVERTISER's data in the portal (/portal/): an editor fixes tags, a viewer looks. "
        "Run it again to change the role. With --create-user, a missing user is created and its password printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("advertiser", metavar="ADVERTISER_SLUG")
        parser.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.EDITOR)
        parser.add_argument(
            "--create-user", action="store_true", help="Create the user if missing; prints its password."
        )
        parser.add_argument("--email", default="", help="The new user's email address (with --create-user).")

    @transaction.atomic
    def handle(self, *args: object, username: str, advertiser: str, role: str, create_user: bool, email: str,
               **options: Any) -> None:  # fmt: skip
        try:
            found = Advertiser.objects.get(slug=advertiser)
        except Advertiser.DoesNotExist:
            known = ", ".join(Advertiser.objects.order_by("slug").values_list("slug", flat=True)[:10]) or "none yet"
            raise CommandError(f"no advertiser {advertiser!r} (advertisers: {known})") from None
        user_model = get_user_model()
        password = None
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            if not create_user:
                raise CommandError(f"no user {username!r}: add --create-user to create it") from None
            password = secrets.token_urlsafe(12)
            user = user_model._default_manager.create_user(username=username, email=email, password=password)
        _, before = membership_grant(user=user, advertiser=found, role=role)
        if before is None:
            done = f"{username} may now use the portal of {found.name} ({found.slug}) as {role}"
        elif before != role:
            done = f"{username}'s access to {found.name} ({found.slug}) changed from {before} to {role}"
        else:
            done = f"{username} already uses the portal of {found.name} ({found.slug}) as {role}"
        self.stdout.write(f"{done}: {settings.SITE_URL}/portal/")
        if password is not None:
            self.stdout.write(f"Login: {username} / {password}")
        if user.is_staff:
            self.stdout.write(
                f"Note: {username} is staff, so logs in to the staff screens, which show every advertiser."
            )
