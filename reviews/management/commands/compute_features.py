"""manage.py compute_features --sitemap ID: caches the features "More like this" compares (reviews.similar)."""

import sys
import time
from typing import Any

from django.core.management.base import CommandParser
from tqdm import tqdm

from classifier.services.features import asset_features
from config.commands import BaseCommand
from reviews.models import EffectiveTag
from reviews.similar import TASK, SimilarError, similarity_head

CHUNK = 1024  # assets per call: progress, and a killed run keeps what it stored (asset_features stores per batch)


class Command(BaseCommand):
    help = (
        "Computes and caches the active image_type model's features of the live images of some sitemaps or "
        'advertisers, so that "More like this" finds every one of them (images without features are not '
        "candidates). Cached ones are skipped: run it again after a Run brought new images."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sitemap", type=int, action="append", default=[], help="This sitemap (repeatable).")
        parser.add_argument("--advertiser", type=int, action="append", default=[], help="This advertiser's sitemaps.")

    def handle(self, *args: object, **options: Any) -> None:
        if not options["sitemap"] and not options["advertiser"]:
            raise SimilarError("name a scope: --sitemap ID or --advertiser ID")
        head = similarity_head()
        rows = EffectiveTag.objects.filter(task=TASK, live=True, asset_id__isnull=False)
        scoped = rows.filter(sitemap_id__in=options["sitemap"]) | rows.filter(
            sitemap__advertiser_id__in=options["advertiser"]
        )
        asset_ids = sorted(set(scoped.values_list("asset_id", flat=True)))
        started = time.perf_counter()
        with tqdm(total=len(asset_ids), desc="features", unit="image", file=sys.stderr, disable=None) as bar:
            for start in range(0, len(asset_ids), CHUNK):
                chunk = asset_ids[start : start + CHUNK]
                asset_features(version=head.model_version, task=TASK, asset_ids=chunk)
                bar.update(len(chunk))
        self.stdout.write(
            f"{len(asset_ids):,} images have {head.model_version.name}'s features"
            f" ({time.perf_counter() - started:.1f} s)"
        )
