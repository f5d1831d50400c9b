from typing import Any

from django.core.management.base import CommandError, CommandParser

from classifier.models import ModelVersion
from classifier.services.promotion import PromotionError, model_promote
from classifier.services.registry import RegistryError, model_activate
from config.commands import BaseCommand


def find_version(reference: str) -> ModelVersion:
    """The model version named by its id or its SHA-256 (a prefix is enough), or a CommandError."""
    found = ModelVersion.objects.filter(pk=int(reference)) if reference.isdigit() else ModelVersion.objects.none()
    if not found.exists():
        found = ModelVersion.objects.filter(sha256__startswith=reference.lower())
    if found.count() != 1:
        raise CommandError(f"no single model version matches {reference!r}")
    return found.get()


class Command(BaseCommand):
    help = (
        "Makes a model version the active one for its tasks (or only --task ones). The one it replaces is retired. "
        "A classifier is promoted (recorded, undone by rollback_model) once its shadow pass has finished, or with "
        "--force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", help="Model version id, or its SHA-256 (a prefix is enough).")
        parser.add_argument("--task", action="append", dest="tasks", help="Only this task (repeatable).")
        parser.add_argument(
            "--force", action="store_true", help="Promote a classifier before its shadow pass has finished."
        )

    def handle(self, *args: object, version: str, tasks: list[str] | None, force: bool, **options: Any) -> None:
        found = find_version(version)
        forced = False
        try:
            if found.kind == ModelVersion.Kind.CLASSIFIER:
                forced = model_promote(version=found, tasks=tasks, force=force).forced
                activated = found
                activated.refresh_from_db()
            else:
                activated = model_activate(version=found, tasks=tasks)
        except (PromotionError, RegistryError) as exc:
            raise CommandError(_naming_the_flag(str(exc))) from exc
        active = ", ".join(activated.heads.filter(is_active=True).values_list("task", flat=True)) or "vehicle crop"
        note = " (forced: the shadow pass had not finished)" if forced else ""
        self.stdout.write(f"{activated.name} is active for: {active}{note}")


def _naming_the_flag(refusal: str) -> str:
    """The promotion's refusals end "..., or force" (on the screens, *Promote anyway*): here that is --force."""
    if refusal.endswith(", or force"):
        return f"{refusal.removesuffix(', or force')}, or promote it anyway with --force"
    return refusal
