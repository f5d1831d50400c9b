"""Server time and query count of the review grid on a big sitemap (100,000 images by default)."""

import contextlib
import hashlib
import json
import os
import statistics
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext, setup_test_environment
from django.urls import reverse

from catalog.models import TASK_LABELS, ImageAsset, Listing, Placement, Sitemap
from catalog.services import advertiser_get_or_create
from classifier.models import Classification, ModelHead
from reviews.models import ManualFix

PER_LISTING = 20
BATCH = 5000


class Command(BaseCommand):
    help = (
        "Builds (once) a sitemap of N images with a classification per task and some fixes, then measures the "
        "staff grid's server time and query count for a page of 100: first, middle and last page, and filtered."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, default=100_000)
        parser.add_argument("--repeat", type=int, default=5)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **options: Any) -> None:
        sitemap = self._sitemap(options["images"])
        # As in production: DEBUG off (no query log), and the test client's record of the rendered context.
        with contextlib.suppress(RuntimeError):  # already set up when the test runner calls the command
            setup_test_environment(debug=False)
        user, _ = get_user_model().objects.get_or_create(username="grid-benchmark", defaults={"is_staff": True})
        client = Client()
        client.force_login(user)
        url = reverse("reviews:staff-grid", args=[sitemap.pk])
        pages = -(-options["images"] // 100)
        cases = [
            ("first page", {}),
            ("middle page", {"page": pages // 2}),
            ("last page", {"page": pages}),
            ("color = Red", {"task": "color", "label": "Red"}),
            ("confidence < 0.5, sorted", {"task": "image_type", "confidence_below": "0.5", "sort": "confidence"}),
            ("not fixed", {"fixed": "no"}),
            ("listing disagrees", {"task": "color", "listing_disagrees": "1"}),
            ("reused pictures", {"reused": "1"}),
            ("review by cluster", {"view": "clusters", "task": "image_type"}),
        ]
        clusters_url = reverse("reviews:staff-clusters", args=[sitemap.pk])
        rows = []
        for name, case in cases:
            params = dict(case)
            target = clusters_url if params.pop("view", "") == "clusters" else url
            client.get(target, params)  # warm caches
            timings = []
            for _ in range(options["repeat"]):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = client.get(target, params)
                    timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code  # noqa: S101
            page = response.context["page"]
            shown = len(page.rows) if hasattr(page, "rows") else len(page.items)
            rows.append({"case": name, "images": page.total, "shown": shown, "median_ms": round(
                statistics.median(timings), 1), "queries": len(queries.captured_queries)})  # fmt: skip
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        self.stdout.write(
            f"grid of sitemap {sitemap.pk} ({options['images']:,} images), {connection.vendor}, load average {load}"
        )
        self.stdout.write(f"{'case':<28} {'matching':>9} {'shown':>6} {'server ms':>10} {'queries':>8}")
        for row in rows:
            self.stdout.write(
                f"{row['case']:<28} {row['images']:>9,} {row['shown']:>6} {row['median_ms']:>10} {row['queries']:>8}"
            )

    def _sitemap(self, count: int) -> Sitemap:
        advertiser = advertiser_get_or_create(slug=f"grid-benchmark-{count}")
        sitemap, created = Sitemap.objects.get_or_create(
            advertiser=advertiser, url=f"https://grid-benchmark.example/{count}.xml"
        )
        if created or not Placement.objects.filter(listing__sitemap=sitemap).exists():
            self._fill(sitemap, count)
            # As a Run's sync would: the stored count of live images, and fresh planner statistics.
            sitemap.live_images = Placement.objects.filter(listing__sitemap=sitemap, is_gone=False).count()
            sitemap.save(update_fields=["live_images"])
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE")
        return sitemap

    @transaction.atomic
    def _fill(self, sitemap: Sitemap, count: int) -> None:
        if not ModelHead.objects.filter(is_active=True).exists():
            call_command("register_starter_models")
        heads = {head.task: head.model_version_id for head in ModelHead.objects.filter(is_active=True)}
        self.stderr.write(f"building {count:,} images with {len(heads)} tags each (once) ...")
        listings = Listing.objects.bulk_create(
            Listing(sitemap=sitemap, key=f"car-{k}", external_id=f"car-{k}", url=f"https://grid.example/cars/{k}")
            for k in range(-(-count // PER_LISTING))
        )
        for start in range(0, count, BATCH):
            ids = range(start, min(count, start + BATCH))
            assets = ImageAsset.objects.bulk_create(
                ImageAsset(
                    sha256=hashlib.sha256(f"grid {sitemap.pk} {i}".encode()).hexdigest(), phash=f"{i:016x}",
                    width=1024, height=768, format="JPEG", byte_size=120_000,
                    original=f"originals/grid/{i}.jpg", thumbnail=f"thumbnails/grid/{i}.jpg",
                )
                for i in ids
            )  # fmt: skip
            # Clusters: each tenth image and the next two are near-duplicates (root: the lowest id).
            roots = {i: asset.pk for i, asset in zip(ids, assets, strict=True) if i % 10 == 0}
            for i, asset in zip(ids, assets, strict=True):
                asset.cluster_id = roots.get(i - i % 10) if i % 10 < 3 and (i - i % 10) in roots else asset.pk
            ImageAsset.objects.bulk_update(assets, ["cluster_id"])
            # Reused pictures: every 500th image is shown in 5 more listings.
            reused = [(i, asset) for i, asset in zip(ids, assets, strict=True) if i % 500 == 0]
            Placement.objects.bulk_create(
                Placement(
                    listing=listings[(i // PER_LISTING + k) % len(listings)], url=f"https://cdn.grid.example/r{i}-{k}.jpg",
                    position=PER_LISTING + k, asset=asset, status=Placement.Status.OK,
                )
                for i, asset in reused
                for k in range(1, 6)
            )  # fmt: skip
            Placement.objects.bulk_create(
                Placement(
                    listing=listings[i // PER_LISTING], url=f"https://cdn.grid.example/{i}.jpg",
                    position=i % PER_LISTING, asset=asset, status=Placement.Status.OK,
                )
                for i, asset in zip(ids, assets, strict=True)
            )  # fmt: skip
            Classification.objects.bulk_create(
                Classification(
                    asset=asset, model_version_id=version, task=task, scores={},
                    label=TASK_LABELS[task][i % len(TASK_LABELS[task])], confidence=(i % 97) / 97, margin=(i % 13) / 13,
                )
                for i, asset in zip(ids, assets, strict=True)
                for task, version in heads.items()
            )  # fmt: skip
            ManualFix.objects.bulk_create(
                ManualFix(
                    advertiser_id=sitemap.advertiser_id, asset=asset, task="color", new_label="Red", source="staff"
                )
                for i, asset in zip(ids, assets, strict=True)
                if i % 100 == 0
            )
            self.stderr.write(f"  {min(count, start + BATCH):,}")
