"""manage.py refresh_effective_tags: rewrites the stored effective tags from the rule, sitemap by sitemap."""

import sys
import time
from typing import Any

from django.core.management.base import CommandParser
from django.db import transaction
from tqdm import tqdm

from catalog.models import Sitemap, Task
from config.commands import BaseCommand
from reviews.effective_store import effective_tags_refresh


class Command(BaseCommand):
    help = (
        "Writes the stored effective tags (reviews.effective_store) of every placement, or of some sitemaps or tasks, "
        "from the rule: rows that did not change are read, not written. For rows loaded in bulk outside the "
        "services, or to check that nothing drifted (it prints how many rows it rewrote)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sitemap", type=int, action="append", help="Only this sitemap (repeatable).")
        parser.add_argument("--task", choices=Task.values, action="append", help="Only this task (repeatable).")

    def handle(self, *args: object, **options: Any) -> None:
        sitemaps = Sitemap.objects.order_by("id").values_list("id", flat=True)
        if options["sitemap"]:
            sitemaps = sitemaps.filter(id__in=options["sitemap"])
        started, written = time.perf_counter(), 0
        with tqdm(list(sitemaps), desc="sitemaps", unit="sitemap", file=sys.stderr, disable=None) as bar:
            for sitemap_id in bar:
                with transaction.atomic():
                    written += effective_tags_refresh(sitemap_id=sitemap_id, tasks=options["task"])
                bar.set_postfix(rewritten=written)
        self.stdout.write(f"{written:,} stored tags rewritten in {time.perf_counter() - started:.1f} s")
