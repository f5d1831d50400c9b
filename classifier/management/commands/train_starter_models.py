"""Train the starter models (vehicle, intent, detector) on generated images, export ONNX + contracts, evaluate."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from config.commands import BaseCommand

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "starter_models"


class Command(BaseCommand):
    help = (
        "Train the starter models on CPU from the procedural generator, export them to ONNX with their contracts, "
        "and print accuracy, per-class precision/recall/F1 and confusion matrices on held-out generated images. "
        "Needs the optional training extra: pip install torch==2.13.0"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
        parser.add_argument("--quick", action="store_true", help="tiny data and one epoch (about a minute), for tests")
        parser.add_argument("--seed", type=int, default=0, help="seed of the generated training and test images")

    def handle(self, *args: Any, **options: Any) -> None:
        if importlib.util.find_spec("torch") is None:
            raise CommandError("torch is not installed: pip install torch==2.13.0")
        from tqdm import tqdm

        from classifier.training.train import train_starter_models

        bars: list[tqdm] = []

        def progress(description: str, total: int):
            if bars:
                bars[-1].close()
            bar = tqdm(total=total, desc=description, unit="img", file=sys.stderr, disable=options["verbosity"] < 1)
            bars.append(bar)
            return bar.update

        try:
            metrics = train_starter_models(
                options["out"], quick=options["quick"], seed=options["seed"], progress=progress
            )
        finally:
            if bars:
                bars[-1].close()
        self.stdout.write(metrics["table"])
        self.stdout.write(f"Wrote {options['out']}")
