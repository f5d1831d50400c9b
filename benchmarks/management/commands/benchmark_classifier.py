import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from benchmarks.loads import starter_models_ensure, whole_stack_measure
from classifier.benchmark import decoder_timings
from classifier.synth import dealer_photo_jpeg
from config.commands import BaseCommand

DECODER_SIZES = ((1024, 768), (1600, 1200))


class Command(BaseCommand):
    help = (
        "Throughput of decode + vehicle crop + every active model on generated dealer photos (1024x768 JPEGs), "
        "against the same models on pre-made tensors, and with each image's keys and thumbnail from the same decode "
        "(what a Run's fetch process does), measured in the same run, with 1 and 2 processes. "
        "With --decoders: ms per image of each JPEG decoder at 1024x768 and 1600x1200 instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, default=512)
        parser.add_argument("--batch", type=int, default=32)
        parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
        parser.add_argument(
            "--decoders",
            action="store_true",
            help="Compare the JPEG decoders installed (one thread, RGB no smaller than 224 px) and a Run's decode.",
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **options: Any) -> None:
        if options["decoders"]:
            self._decoders(count=min(options["images"], 64), as_json=options["json"])
            return
        starter_models_ensure(say=self.stderr.write)
        self.stderr.write(f"generating {options['images']} photos")
        try:
            rows = whole_stack_measure(
                images=options["images"], batch_size=options["batch"], processes=options["processes"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        self.stdout.write(
            f"{'processes':>9}  {'models alone img/s':>18}  {'whole stack img/s':>17}  {'stack/alone':>11}  "
            f"{'stack + keys img/s':>18}"
        )
        for row in rows:
            self.stdout.write(
                f"{row['processes']:>9}  {row['models_alone_per_s']:>18.1f}  {row['stack_per_s']:>17.1f}  "
                f"{row['stack_share']:>10.0%}  {row['stack_keys_per_s']:>18.1f}"
            )

    def _decoders(self, *, count: int, as_json: bool) -> None:
        images = {
            f"{width}x{height}": [dealer_photo_jpeg(seed, size=(width, height)) for seed in range(count)]
            for width, height in DECODER_SIZES
        }
        rows = decoder_timings(images)
        if as_json:
            self.stdout.write(json.dumps(rows))
            return
        labels = list(images)
        width = max(len(row["decoder"]) for row in rows)
        self.stdout.write(f"{'decoder (ms per image)':<{width}}  " + "  ".join(f"{label:>9}" for label in labels))
        for row in rows:
            self.stdout.write(f"{row['decoder']:<{width}}  " + "  ".join(f"{row[label]:>9.2f}" for label in labels))
