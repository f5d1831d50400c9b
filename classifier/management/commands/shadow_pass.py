import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from classifier.management.commands.activate_model import find_version
from classifier.models import ShadowPass
from classifier.services.shadow import shadow_run, shadow_start
from config.commands import BaseCommand


class Command(BaseCommand):
    help = (
        "Runs a candidate's shadow pass: it classifies every live image (its own results), so its flips can be "
        "reviewed and its promotion is instant. On the training queue by default, in this process with --sync."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", help="Model version id, or its SHA-256 (a prefix is enough).")
        parser.add_argument("--sync", action="store_true", help="Run in this process, with a progress bar.")

    def handle(self, *args: object, version: str, sync: bool, **options: Any) -> None:
        found = find_version(version)
        shadow = shadow_start(version=found, enqueue=not sync)
        if not sync:
            self.stdout.write(f"shadow pass {shadow.pk} of {found.name} queued ({shadow.total:,} live images)")
            return
        with tqdm(desc=f"shadow {found.name}", unit="img", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:

            def show(current: ShadowPass) -> None:
                bar.total = current.total
                bar.n = current.done
                bar.refresh()

            try:
                shadow = shadow_run(pass_id=shadow.pk, progress=show)
            except Exception as exc:
                raise CommandError(f"shadow pass {shadow.pk} failed: {exc}") from exc
        self.stdout.write(f"shadow pass {shadow.pk} of {found.name}: {shadow.done:,} of {shadow.total:,} images")
