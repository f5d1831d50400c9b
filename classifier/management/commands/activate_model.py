from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from classifier.models import ModelVersion
from classifier.services.registry import RegistryError, model_activate


class Command(BaseCommand):
    help = "Makes a model version the active one for its tasks (or only --task ones). The one it replaces is retired."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", help="Model version id, or its SHA-256 (a prefix is enough).")
        parser.add_argument("--task", action="append", dest="tasks", help="Only this task (repeatable).")

    def handle(self, *args: object, version: str, tasks: list[str] | None, **options: Any) -> None:
        found = ModelVersion.objects.filter(pk=int(version)) if version.isdigit() else ModelVersion.objects.none()
        if not found.exists():
            found = ModelVersion.objects.filter(sha256__startswith=version.lower())
        if found.count() != 1:
            raise CommandError(f"no single model version matches {version!r}")
        try:
            activated = model_activate(version=found.get(), tasks=tasks)
        except RegistryError as exc:
            raise CommandError(str(exc)) from exc
        active = ", ".join(activated.heads.filter(is_active=True).values_list("task", flat=True)) or "vehicle crop"
        self.stdout.write(f"{activated.name} is active for: {active}")
