import getpass
import os
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
        "--force, and when it would likely make no advertiser worse, or with --override-regressions."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", help="Model version id, or its SHA-256 (a prefix is enough).")
        parser.add_argument("--task", action="append", dest="tasks", help="Only this task (repeatable).")
        parser.add_argument(
            "--force", action="store_true", help="Promote a classifier before its shadow pass has finished."
        )
        parser.add_argument(
            "--override-regressions",
            action="store_true",
            help=(
                "Promote a classifier although it would likely make some advertiser worse (it flips over 1%% of the"
                " confident tags of an advertiser outside its export, or loses measured accuracy); recorded."
            ),
        )

    def handle(
        self,
        *args: object,
        version: str,
        tasks: list[str] | None,
        force: bool,
        override_regressions: bool,
        **options: Any,
    ) -> None:
        found = find_version(version)
        forced = False
        overrode = None
        try:
            if found.kind == ModelVersion.Kind.CLASSIFIER:
                promotion = model_promote(
                    version=found,
                    tasks=tasks,
                    force=force,
                    override_regressions=override_regressions,
                    by=f"manage.py activate_model ({_os_user()})",
                )
                forced, overrode = promotion.forced, promotion.overrode_regressions
                activated = found
                activated.refresh_from_db()
            else:
                activated = model_activate(version=found, tasks=tasks)
        except (PromotionError, RegistryError) as exc:
            raise CommandError(_naming_the_flag(str(exc))) from exc
        active = ", ".join(activated.heads.filter(is_active=True).values_list("task", flat=True)) or "vehicle crop"
        note = " (forced: the shadow pass had not finished)" if forced else ""
        if overrode:
            accepted = "; ".join(entry["text"] for entry in overrode["regressions"])
            note += f" (regressions accepted, recorded: {accepted})"
        self.stdout.write(f"{activated.name} is active for: {active}{note}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's bare uid)
        return f"uid {os.getuid()}"


def _naming_the_flag(refusal: str) -> str:
    """The promotion's refusals end "..., or force" (on the screens, *Promote anyway*) or "..., or override" (a
    checkbox accepting the regressions): here those are --force and --override-regressions."""
    if refusal.endswith(", or force"):
        return f"{refusal.removesuffix(', or force')}, or promote it anyway with --force"
    if refusal.endswith(", or override"):
        return f"{refusal.removesuffix(', or override')}, or accept them with --override-regressions"
    return refusal
