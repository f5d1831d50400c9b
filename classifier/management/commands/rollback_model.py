from datetime import timedelta
from typing import Any

from django.core.management.base import CommandParser

from catalog.models import Task
from classifier.models import Promotion
from classifier.services.promotion import model_rollback
from config.commands import BaseCommand


class Command(BaseCommand):
    help = "Rolls a task back to the model its latest promotion replaced (instant: its results are still cached)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--task", required=True, choices=Task.values)

    def handle(self, *args: object, task: str, **options: Any) -> None:
        rollback = model_rollback(task=task)
        was = rollback.from_version.name if rollback.from_version else "none"
        # The same rollback switched every task the promotion had switched: its records, written together.
        back = Promotion.objects.filter(
            kind=Promotion.Kind.ROLLBACK,
            to_version=rollback.to_version,
            from_version=rollback.from_version,
            created_at__gte=rollback.created_at - timedelta(seconds=5),
        )
        for record in back.order_by("id"):
            self.stdout.write(f"{record.task}: {rollback.to_version.name} is active again (was {was})")
