from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser

from catalog.models import Advertiser, Task
from classifier.models import Promotion
from classifier.services.promotion import model_rollback
from classifier.services.scoped import scoped_rollback
from config.commands import BaseCommand


class Command(BaseCommand):
    help = "Rolls a task back to the model its latest promotion replaced (instant: its results are still cached)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--task", required=True, choices=Task.values)
        parser.add_argument(
            "--advertiser",
            metavar="SLUG",
            help="Retire this advertiser's scoped head of the task: the active model answers for it again.",
        )

    def handle(self, *args: object, task: str, advertiser: str | None, **options: Any) -> None:
        if advertiser is not None:
            scope = Advertiser.objects.filter(slug=advertiser).first()
            if scope is None:
                raise CommandError(f"advertiser {advertiser!r} does not exist")
            record = scoped_rollback(advertiser=scope, task=task)  # a refusal ends the command in one line
            was = record.from_version.name if record.from_version else "none"
            self.stdout.write(f"{task} of {advertiser}: {record.to_version.name} answers again (was {was})")
            return
        rollback = model_rollback(task=task)
        was = rollback.from_version.name if rollback.from_version else "none"
        # The same rollback switched every task the promotion had switched: its records, written together.
        back = Promotion.objects.filter(
            kind=Promotion.Kind.ROLLBACK,
            advertiser__isnull=True,
            to_version=rollback.to_version,
            from_version=rollback.from_version,
            created_at__gte=rollback.created_at - timedelta(seconds=5),
        )
        for record in back.order_by("id"):
            self.stdout.write(f"{record.task}: {rollback.to_version.name} is active again (was {was})")
