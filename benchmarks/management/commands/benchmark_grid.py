"""Server time and query count of the review grid on a big sitemap (100,000 images by default; 1,000,000 works)."""

import contextlib
import hashlib
import json
import os
import statistics
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandParser
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.db.models import Max
from django.test import Client
from django.test.utils import CaptureQueriesContext, setup_test_environment
from django.urls import reverse
from django.utils import timezone

from benchmarks.loads import starter_models_ensure
from catalog.models import TASK_LABELS, ImageAsset, Listing, Outcome, Placement, Run, Sitemap
from catalog.services import advertiser_get_or_create
from classifier.models import Classification, ModelHead
from config.commands import BaseCommand
from reviews.effective_store import effective_tags_refresh
from reviews.grid import GridFilters, encode_cursor, grid_rows, sort_keys
from reviews.models import ManualFix

PER_LISTING = 20
BATCH = 50_000  # images per transaction while building
FAILED_EVERY = 100  # every 100th image: its URL failed in the Run; another, the image type model failed on it


class Command(BaseCommand):
    help = (
        "Builds (once) a sitemap of N images with a classification per task, some fixes, failures, near-duplicates and "
        "reused pictures (in bulk: COPY on PostgreSQL), then measures the staff grid's server time and query count "
        "for a page of 100: first, middle and last page, every filter, a multi-task filter, and the cluster review."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, default=100_000)
        parser.add_argument("--repeat", type=int, default=5)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **options: Any) -> None:
        sitemap, run = self._sitemap(options["images"])
        # As in production: DEBUG off (no query log), and the test client's record of the rendered context.
        with contextlib.suppress(RuntimeError):  # already set up when the test runner calls the command
            setup_test_environment(debug=False)
        user, _ = get_user_model().objects.get_or_create(username="grid-benchmark", defaults={"is_staff": True})
        client = Client()
        client.force_login(user)
        url = reverse("reviews:staff-grid", args=[sitemap.pk])
        cases: list[tuple[str, dict[str, Any]]] = [
            ("first page", {}),
            ("middle page", {"after": self._middle_cursor(sitemap)}),
            ("last page", {"page": "last"}),
            ("color = Red", {"task": "color", "label": "Red"}),
            ("confidence < 0.5, sorted", {"task": "image_type", "confidence_below": "0.5", "sort": "confidence"}),
            ("ambiguous, by margin", {"ambiguous": "1", "sort": "margin"}),
            ("failed", {"failed": "1"}),
            ("newest first", {"sort": "newest"}),
            ("not fixed", {"fixed": "no"}),
            ("color reviewed", {"task": "color", "reviewed": "yes"}),
            ("color not reviewed", {"task": "color", "reviewed": "no"}),
            ("Dealer and Red", {"tag": ["image_type:Dealer", "color:Red"]}),
            ("placeholder with a color", {"tag": ["image_type:Placeholder", "color:!none"]}),
            ("Run: failed downloads", {"run": run.pk, "outcome": Outcome.FAILED, "reason": "timeout"}),
            ("listing disagrees", {"task": "color", "listing_disagrees": "1"}),
            ("reused pictures", {"reused": "1"}),
            ("review by cluster", {"view": "clusters", "task": "image_type"}),
            # The API reads what the grid reads: the same stored tags and keyset pages, as JSON.
            ("API: first page", {"view": "api"}),
            ("API: middle page", {"view": "api", "after": self._middle_cursor(sitemap)}),
            ("API: color = Red", {"view": "api", "task": "color", "label": "Red"}),
            ("API: not fixed", {"view": "api", "fixed": "no"}),
        ]
        targets = {
            "clusters": reverse("reviews:staff-clusters", args=[sitemap.pk]),
            "api": reverse("reviews_api:sitemap-images", args=[sitemap.pk]),
        }
        rows = []
        for name, case in cases:
            params = dict(case)
            target = targets.get(params.pop("view", ""), url)
            client.get(target, params)  # warm caches
            timings = []
            for _ in range(options["repeat"]):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = client.get(target, params)
                    timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code  # noqa: S101
            if target == targets["api"]:
                body = response.json()
                total, shown, number = body["count"], len(body["results"]), "-"
            else:
                page = response.context["page"]
                total, number = page.total, page.number
                shown = len(page.rows) if hasattr(page, "rows") else len(page.items)
            rows.append({"case": name, "images": total, "shown": shown, "page": number, "median_ms": round(
                statistics.median(timings), 1), "queries": len(queries.captured_queries)})  # fmt: skip
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        self.stdout.write(
            f"grid of sitemap {sitemap.pk} ({options['images']:,} images), {connection.vendor}, load average {load}"
        )
        self.stdout.write(f"{'case':<28} {'matching':>9} {'shown':>6} {'page':>6} {'server ms':>10} {'queries':>8}")
        for row in rows:
            self.stdout.write(
                f"{row['case']:<28} {row['images']:>9,} {row['shown']:>6} {row['page']:>6} {row['median_ms']:>10} "
                f"{row['queries']:>8}"
            )

    def _middle_cursor(self, sitemap: Sitemap) -> str:
        """The cursor of the page in the middle (found once by an OFFSET, outside the measure)."""
        filters = GridFilters()
        rows = grid_rows(sitemap=sitemap, filters=filters)
        middle = rows.count() // 200 * 100
        names = [f"key_{n}" for n in range(len(sort_keys(filters)))]
        keyed = rows.annotate(**dict(zip(names, sort_keys(filters), strict=True))).order_by(*names)
        key = keyed.values_list(*names)[max(0, middle - 1)]
        return encode_cursor(tuple(key), filters=filters)

    def _sitemap(self, count: int) -> tuple[Sitemap, Run]:
        advertiser = advertiser_get_or_create(slug=f"grid-benchmark-{count}")
        sitemap, created = Sitemap.objects.get_or_create(
            advertiser=advertiser, url=f"https://grid-benchmark.example/{count}.xml"
        )
        if created or not Placement.objects.filter(listing__sitemap=sitemap).exists():
            self._fill(sitemap, count)
            self._store(sitemap)
            # As a Run's sync would: the stored count of live images, and fresh planner statistics.
            sitemap.live_images = Placement.objects.filter(listing__sitemap=sitemap, is_gone=False).count()
            sitemap.save(update_fields=["live_images"])
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM ANALYZE")
        run = Run.objects.filter(sitemap=sitemap).order_by("-pk").first()
        assert run is not None  # noqa: S101 - _fill makes it
        return sitemap, run

    def _store(self, sitemap: Sitemap) -> None:
        """The stored effective tags of the rows loaded in bulk, as the services' signals would write them."""
        if connection.vendor == "postgresql":  # planner statistics of the tables just loaded (autovacuum's job later)
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        for tasks in (["image_type"], ["intent"], ["sensitive"]):  # the image type's refresh writes color too
            started = time.perf_counter()
            with transaction.atomic():
                written = effective_tags_refresh(sitemap_id=sitemap.pk, tasks=tasks)
            self.stderr.write(f"  stored tags of {'+'.join(tasks)}{' (+color)' * ('image_type' in tasks)}: "
                              f"{written:,} rows in {time.perf_counter() - started:.1f} s")  # fmt: skip

    def _fill(self, sitemap: Sitemap, count: int) -> None:
        starter_models_ensure(say=self.stderr.write)
        heads = {head.task: head.model_version_id for head in ModelHead.objects.filter(is_active=True)}
        self.stderr.write(f"building {count:,} images with {len(heads)} tags each (once) ...")
        started = time.perf_counter()
        now = timezone.now()
        run = Run.objects.create(sitemap=sitemap, status=Run.Status.PARTIAL, started_at=now, finished_at=now)
        listings = Listing.objects.bulk_create(
            (
                Listing(sitemap=sitemap, key=f"car-{k}", external_id=f"car-{k}", url=f"https://grid.example/cars/{k}")
                for k in range(-(-count // PER_LISTING))
            ),
            batch_size=5000,
        )
        listing_ids = [listing.pk for listing in listings]
        next_asset = _next_id(ImageAsset)
        for start in range(0, count, BATCH):
            indexes = range(start, min(count, start + BATCH))
            with transaction.atomic():
                assets = _assets(sitemap, indexes, next_asset, now)
                _insert(ImageAsset, assets)
                _insert(Placement, _placements(indexes, next_asset, listing_ids, run, now))
                _insert(Classification, _classifications(indexes, next_asset, heads, now))
                ManualFix.objects.bulk_create(
                    ManualFix(
                        advertiser_id=sitemap.advertiser_id, asset_id=next_asset + i - indexes.start, task="color",
                        new_label="Red", source="staff",
                    )
                    for i in indexes
                    if i % 100 == 0
                )  # fmt: skip
            next_asset += len(assets)
            self.stderr.write(f"  {indexes[-1] + 1:,} images ({time.perf_counter() - started:.0f} s)")
        with connection.cursor() as cursor:  # the assets' explicit ids: their sequence goes on after them
            for statement in connection.ops.sequence_reset_sql(no_style(), [ImageAsset]):
                cursor.execute(statement)


def _next_id(model: type[models.Model]) -> int:
    return (model._default_manager.aggregate(last=Max("id"))["last"] or 0) + 1


def _assets(sitemap: Sitemap, indexes: range, first_id: int, now: datetime) -> list[dict[str, Any]]:
    """Image i is asset first_id + (i - indexes.start). Clusters: each tenth image and the next two are
    near-duplicates (root: the tenth)."""
    rows = []
    for i in indexes:
        pk = first_id + i - indexes.start
        digest = hashlib.sha256(f"grid {sitemap.pk} {i}".encode()).hexdigest()
        rows.append({
            "id": pk, "created_at": now, "updated_at": now, "sha256": digest, "phash": f"{i:016x}", "width": 1024,
            "height": 768, "format": "JPEG", "byte_size": 120_000, "original": f"originals/grid/{digest}.jpg",
            "thumbnail": f"thumbnails/grid/{digest}.jpg", "cluster_id": pk - i % 10 if i % 10 < 3 else pk,
        })  # fmt: skip
    return rows


def _placements(indexes: range, first_asset: int, listings: list[int], run: Run, now: datetime) -> list[dict]:
    """One placement per image (20 per listing); every 500th image also in the next 5 listings (reused); every
    FAILED_EVERY-th one failed to download in the Run (timeout)."""
    rows = []
    for i in indexes:
        asset = first_asset + i - indexes.start
        failed = i % FAILED_EVERY == FAILED_EVERY - 1
        shown = [(listings[i // PER_LISTING], f"{i}.jpg", i % PER_LISTING)]
        if i % 500 == 0:
            shown += [(listings[(i // PER_LISTING + k) % len(listings)], f"r{i}-{k}.jpg", PER_LISTING + k) for k in
                      range(1, 6)]  # fmt: skip
        rows += [
            {
                "created_at": now,
                "updated_at": now,
                "listing_id": listing,
                "url": f"https://cdn.grid.example/{name}",
                "position": position,
                "asset_id": asset,
                "status": "failed" if failed else "ok",
                "failure_reason": "timeout" if failed else "",
                "failure_detail": "",
                "etag": "",
                "last_modified": "",
                "content_length": 120_000,
                "last_checked_at": now,
                "last_seen_at": now,
                "is_gone": False,
                "last_run_id": run.pk,
                "outcome": Outcome.FAILED if failed else Outcome.DOWNLOADED,
            }
            for listing, name, position in shown
        ]
    return rows


def _classifications(indexes: range, first_asset: int, heads: dict[str, int], now: datetime) -> Iterable[dict]:
    for i in indexes:
        asset = first_asset + i - indexes.start
        for task, version in heads.items():
            labels = TASK_LABELS[task]
            failed = task == "image_type" and i % FAILED_EVERY == FAILED_EVERY // 2
            yield {
                "created_at": now,
                "updated_at": now,
                "asset_id": asset,
                "model_version_id": version,
                "task": task,
                "status": "failed" if failed else "ok",
                "label": "" if failed else labels[i % len(labels)],
                "confidence": None if failed else (i % 97) / 97,
                "margin": None if failed else (i % 13) / 13,
                "scores": {},
                "crop_box": None,
                "crop_source": "none",
                "error": "boom" if failed else "",
            }


def _insert(model: type[models.Model], rows: Iterable[dict[str, Any]]) -> None:
    """Rows (dicts of column: value) in bulk: COPY on PostgreSQL (a million rows in seconds), bulk_create elsewhere.
    Rows without an "id" get theirs from the sequence."""
    rows = list(rows)
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create([model(**row) for row in rows], batch_size=2000)
        return
    columns = ", ".join(connection.ops.quote_name(name) for name in rows[0])
    statement = f"COPY {model._meta.db_table} ({columns}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([json.dumps(v) if isinstance(v, dict | list) else v for v in row.values()])
