"""The base of every management command of the project: a domain error (core.errors.ApplicationError) that escapes
a command ends it the way a CommandError does, as one line on stderr ("CommandError: <message>") and exit code 1,
instead of a traceback. Commands import BaseCommand from here, never from Django (a test checks)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand as DjangoBaseCommand
from django.core.management.base import CommandError

from core.errors import ApplicationError


class BaseCommand(DjangoBaseCommand):
    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
