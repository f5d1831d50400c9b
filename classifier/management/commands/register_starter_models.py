import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from classifier.models import ModelHead, ModelVersion
from classifier.services.registry import RegistryError, model_activate, model_register
from config.commands import BaseCommand

STARTER_DIR = Path(__file__).resolve().parents[2] / "starter_models"
STARTERS = ("detector", "vehicle", "intent")


class Command(BaseCommand):
    help = (
        "Registers the starter models shipped in classifier/starter_models (trained here on generated images) and "
        "activates them where no other model is active. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dir", type=Path, default=STARTER_DIR)
        parser.add_argument("--force", action="store_true", help="Activate them even over other active models.")

    def handle(self, *args: object, dir: Path, force: bool, **options: Any) -> None:
        metrics_file = dir / "metrics.json"
        # {"measured_on": ..., "models": {"vehicle": {...}, ...}, "table": ...}: each model's figures by its name.
        metrics = json.loads(metrics_file.read_text()).get("models", {}) if metrics_file.exists() else {}
        for name in STARTERS:
            model, spec = dir / f"{name}.onnx", dir / f"{name}.json"
            if not model.exists():
                raise CommandError(f"missing {model}: train them with manage.py train_starter_models")
            try:
                version = model_register(
                    data=model.read_bytes(), contract=json.loads(spec.read_text()), metrics=metrics.get(name, {})
                )
            except RegistryError as exc:
                raise CommandError(f"refused {model}: {exc}") from exc
            if not version.metrics and metrics.get(name):
                # Registered before the figures were read right: the same file, now with its figures.
                version.metrics = metrics[name]
                version.save(update_fields=["metrics", "updated_at"])
            if force or not self._something_else_active(version):
                model_activate(version=version)
            self.stdout.write(f"{version.name}: {version.status}")

    def _something_else_active(self, version: ModelVersion) -> bool:
        if version.kind == ModelVersion.Kind.DETECTOR:
            return ModelVersion.objects.filter(kind=version.kind, status="active").exclude(pk=version.pk).exists()
        tasks = version.heads.values_list("task", flat=True)
        return ModelHead.objects.filter(task__in=tasks, is_active=True).exclude(model_version=version).exists()
