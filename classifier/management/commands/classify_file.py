import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from classifier.services.inference import active_models, decode_all, infer, load_models
from config.commands import BaseCommand


class Command(BaseCommand):
    help = "Tags image files with every active model: tag and confidence per task, and the vehicle crop."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
        parser.add_argument("--json", action="store_true", help="One JSON object per image, one per line.")

    def handle(self, *args: object, images: list[Path], json: bool, **options: Any) -> None:
        active = active_models()
        if not active.heads:
            raise CommandError("no active model: register one with register_model --activate (bin/start does)")
        loaded = load_models(active)
        datas = []
        for path in images:
            try:
                datas.append(path.read_bytes())
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
        for path, result in zip(images, infer(decode_all(datas, loaded), active, loaded), strict=True):
            report = {
                "file": str(path),
                "tags": {
                    task: {"label": r.label, "confidence": round(r.confidence, 4), "margin": round(r.margin, 4)}
                    for task, r in result.results.items()
                },
                "crop": result.crop,
                "crop_source": result.crop_source,
                "errors": result.errors,
            }
            if json:
                self.stdout.write(_dumps(report))
                continue
            self.stdout.write(f"{path}  crop={result.crop} ({result.crop_source})")
            for task, r in result.results.items():
                self.stdout.write(f"  {task:<11} {r.label:<45} {r.confidence:.3f}")
            for task, error in result.errors.items():
                self.stdout.write(self.style.ERROR(f"  {task:<11} FAILED: {error}"))


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
