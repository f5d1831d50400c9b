import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from classifier.services.registry import RegistryError, model_register
from config.commands import BaseCommand


class Command(BaseCommand):
    help = (
        "Registers an ONNX model with its contract (JSON), after checking the contract against the graph: input "
        "name, rank, static sizes, dtype, every output named, label counts. Refuses a mismatch with one line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", type=Path, metavar="MODEL.onnx")
        parser.add_argument("--spec", type=Path, required=True, metavar="SPEC.json")
        parser.add_argument("--metrics", type=Path, metavar="METRICS.json", help="Figures to keep with the model.")
        parser.add_argument("--activate", action="store_true", help="Make it the active model of its tasks.")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **options: Any) -> None:
        try:
            data = options["model"].read_bytes()
            contract = json.loads(options["spec"].read_text())
            metrics = json.loads(options["metrics"].read_text()) if options["metrics"] else None
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the model or its spec: {exc}") from exc
        try:
            version = model_register(data=data, contract=contract, activate=options["activate"], metrics=metrics)
        except RegistryError as exc:
            raise CommandError(f"refused {options['model']}: {exc}") from exc
        tasks = list(version.heads.values_list("task", flat=True))
        result = {"id": version.pk, "name": version.name, "kind": version.kind, "sha256": version.sha256,
                  "status": version.status, "tasks": tasks}  # fmt: skip
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            what = ", ".join(tasks) or "vehicle crop"
            self.stdout.write(f"Model version {version.pk}: {version.name} [{version.kind}: {what}] {version.status}")
