"""manage.py export_dataset: builds and freezes a dataset export in this process, with a progress bar."""

import json
import sys
from datetime import date
from typing import Any

from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from catalog.models import Task
from config.commands import BaseCommand
from reviews.exports import export_create, export_freeze
from reviews.models import DatasetExport, ManualFix


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--since takes a date as YYYY-MM-DD, not {value!r}") from exc


class Command(BaseCommand):
    help = (
        "Exports the human labels of a task as a frozen dataset (manifest, ImageFolder zip, SHA-256 in storage): "
        "by default the fixes made since the last export used for training. Likely label mistakes are kept and "
        "counted (review them on the export's page before freezing instead, to drop some)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--task", required=True, choices=Task.values)
        since = parser.add_mutually_exclusive_group()
        since.add_argument("--since", type=_date, metavar="YYYY-MM-DD", help="Fixes made since this date.")
        since.add_argument(
            "--since-last-training",
            action="store_true",
            help="Fixes made since the last export used for training was built (the default).",
        )
        since.add_argument("--all", action="store_true", help="Every fix, whenever it was made.")
        parser.add_argument("--advertiser", action="append", default=[], metavar="SLUG", help="Repeat for several.")
        parser.add_argument(
            "--source",
            action="append",
            default=[],
            choices=[str(source) for source in ManualFix.HUMAN],
            help="Fix sources to take (repeat for several; default: all human sources).",
        )
        parser.add_argument("--extend", type=int, metavar="EXPORT_ID", help="Start from this frozen export.")
        parser.add_argument("--min-side", type=int, default=64, metavar="PX", help="Smaller images stay out (64).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object with the result.")

    def handle(self, *args: object, **options: Any) -> None:
        with tqdm(total=100, desc="export", unit="%", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:

            def show(fraction: float, stage: str) -> None:
                bar.n = round(100 * fraction, 1)
                bar.set_postfix_str(stage[:60], refresh=False)
                bar.refresh()

            export = export_create(
                task=options["task"],
                since=options["since"],
                since_last_training=not options["all"],
                advertisers=options["advertiser"],
                sources=options["source"],
                min_side=options["min_side"],
                extends=options["extend"],
                enqueue=False,
                progress=show,
            )
            export = export_freeze(export=export, keep_pending=True, progress=show)
        self._report(export, as_json=options["json"])

    def _report(self, export: DatasetExport, *, as_json: bool) -> None:
        try:
            file: str | None = export.file.path
        except NotImplementedError:  # remote storage: its name there
            file = export.file.name
        result = {
            "export": export.pk,
            "task": export.task,
            "items": sum(sum(labels.values()) for labels in export.counts.values()),
            "splits": {split: export.counts.get(split, {}) for split in ("train", "test")},
            "excluded": export.excluded,
            "label_issues": export.label_issues,
            "file": file,
            "sha256": export.sha256,
        }
        if as_json:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(f"export {export.pk} ({export.task}): {result['items']} items, frozen")
        for split, labels in result["splits"].items():
            self.stdout.write(f"  {split}: " + ", ".join(f"{label} {n}" for label, n in labels.items()))
        if export.excluded:
            self.stdout.write("  left out: " + ", ".join(f"{reason} {n}" for reason, n in export.excluded.items()))
        self.stdout.write(f"  likely label mistakes (kept): {export.label_issues}")
        self.stdout.write(f"  {file}\n  sha256 {export.sha256}")
