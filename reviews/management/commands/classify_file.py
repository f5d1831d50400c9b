import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from classifier.services.inference import active_models, decode_all, infer, load_models
from config.commands import BaseCommand
from reviews.model_tags import model_tags_in_effect


class Command(BaseCommand):
    # In reviews/, not classifier/: its tags are the ones in effect by the one rule (reviews.effective), which
    # classifier never imports. A Placeholder has no color here either.
    help = (
        "Tags image files with every active model: per task the tag in effect (a Placeholder has no color) with "
        "its source and the model's confidence, and the vehicle crop."
    )

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
            in_effect = model_tags_in_effect(result.results, result.errors)
            report = {
                "file": str(path),
                "tags": {
                    task: {"label": tag.label}
                    | (
                        {"confidence": round(tag.result.confidence, 4), "margin": round(tag.result.margin, 4)}
                        if tag.result
                        else {}
                    )
                    | {"source": tag.source}
                    for task, tag in in_effect.items()
                    if task not in result.errors
                },
                "crop": result.crop,
                "crop_source": result.crop_source,
                "errors": result.errors,
            }
            if json:
                self.stdout.write(_dumps(report))
                continue
            self.stdout.write(f"{path}  crop={result.crop} ({result.crop_source})")
            for task, tag in in_effect.items():
                if tag.result is not None:
                    self.stdout.write(f"  {task:<11} {tag.label:<45} {tag.result.confidence:.3f}")
                elif task not in result.errors:
                    self.stdout.write(f"  {task:<11} {'none':<45} ({tag.source}: a placeholder has no color)")
            for task, error in result.errors.items():
                self.stdout.write(self.style.ERROR(f"  {task:<11} FAILED: {error}"))


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
