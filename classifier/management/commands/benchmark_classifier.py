import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from classifier.benchmark import measure
from classifier.services.inference import active_models
from classifier.synth import dealer_photo_jpeg


class Command(BaseCommand):
    help = (
        "Throughput of decode + vehicle crop + every active model on generated dealer photos (1024x768 JPEGs), "
        "against the same models on pre-made tensors, measured in the same run, with 1 and 2 processes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, default=512)
        parser.add_argument("--batch", type=int, default=32)
        parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **options: Any) -> None:
        active = active_models()
        if not active.heads:
            raise CommandError("no active model: run register_starter_models (bin/start does)")
        versions = list(active.versions.values()) + ([active.detector] if active.detector else [])
        models = []
        for version in versions:
            with version.file.open("rb") as handle:
                models.append((handle.read(), version.contract))
        self.stderr.write(f"models: {', '.join(v.name for v in versions)}; generating {options['images']} photos")
        images = [dealer_photo_jpeg(seed) for seed in range(options["images"])]
        rows = [measure(models, images, processes=n, batch_size=options["batch"]) for n in options["processes"]]
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        self.stdout.write(
            f"{'processes':>9}  {'models alone img/s':>18}  {'whole stack img/s':>17}  {'stack/alone':>11}"
        )
        for row in rows:
            self.stdout.write(
                f"{row['processes']:>9}  {row['models_alone_per_s']:>18.1f}  {row['stack_per_s']:>17.1f}  "
                f"{row['stack_share']:>10.0%}"
            )
