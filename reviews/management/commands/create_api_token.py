"""Prints a user's API token (rest_framework.authtoken), creating it if the user has none yet."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from rest_framework.authtoken.models import Token

from config.commands import BaseCommand


class Command(BaseCommand):
    help = "Prints USERNAME's API token (creating it if needed), for 'Authorization: Token <key>'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: object, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(options["username"])
        except user_model.DoesNotExist:
            raise CommandError(f"no user {options['username']!r}: create it first (createsuperuser, admin)") from None
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
