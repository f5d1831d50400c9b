from django.core.management.base import CommandParser

from catalog.services.runs import run_cancel
from config.commands import BaseCommand


class Command(BaseCommand):
    help = (
        "Cancels a queued or running Run: it is failed with the error 'cancelled' and its sitemap can run again. "
        "What it already brought in is kept; the next Run carries on from there."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", type=int)

    def handle(self, *args: object, run_id: int, **options: object) -> None:
        run = run_cancel(run_id=run_id)
        self.stdout.write(f"Run {run.pk} of sitemap {run.sitemap_id}: cancelled ({run.status}, error {run.error!r})")
