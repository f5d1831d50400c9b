"""Measures Runs on a local inventory: the first pass, a re-run with nothing changed, and a re-run after
the CDN renamed every file and changed every ETag without changing the bytes. With --background N, the database
first holds N classifications of another advertiser (loaded once, reused by later calls), so that the figures
show whether a Run's cost follows its own sitemap or the whole database."""

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.imaging import sha256_hex
from catalog.inventory_server import make_inventory_images
from catalog.models import Advertiser, ImageAsset, Run
from catalog.services import advertiser_get_or_create, sitemap_get_or_create
from catalog.services.runs import run_execute, run_start
from classifier.benchmarking import background_count, background_load

COLUMNS = ["pass", "status", "urls", "not_modified", "cache_hits", "downloaded", "failed", "classified",
           "new_assets", "server_200s", "server_304s", "seconds", "images/s"]  # fmt: skip


class Command(BaseCommand):
    help = (
        "Benchmark of Runs on a local inventory served over real HTTP (generated JPEGs, 800x600 to 1600x1200): "
        "first Run, unchanged re-run, and re-run after every URL and ETag changed. Prints a table (or --json)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, default=1000)
        parser.add_argument("--per-listing", type=int, default=10)
        parser.add_argument("--validators", choices=["both", "etag", "last-modified", "none"], default="both")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--keep", action="store_true", help="Keep the benchmark's advertiser and assets.")
        parser.add_argument(
            "--background",
            type=int,
            default=0,
            metavar="N",
            help="First load N classifications (and their assets) of another advertiser; reused if already there.",
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **options: Any) -> None:
        if options["background"] or background_count():
            started = time.perf_counter()
            try:
                added = background_load(classifications=options["background"], progress=True)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stderr.write(
                f"background: {background_count():,} classifications of another advertiser "
                f"({added:,} loaded in {time.perf_counter() - started:.0f} s)"
            )
        self.stderr.write(f"Generating {options['images']} JPEGs (cached in var/bench) ...")
        images = make_inventory_images(options["images"], seed=options["seed"], cache_dir=settings.VAR_DIR / "bench")
        megabytes = sum(map(len, images)) / 1e6
        self.stderr.write(f"{len(images)} images, {megabytes:.0f} MB, served from 127.0.0.1")
        slug = f"benchmark-{options['seed']}"
        self._cleanup(slug)  # assets left by an earlier benchmark would turn the first pass into cache hits
        known = ImageAsset.objects.filter(sha256__in=[sha256_hex(image) for image in images]).count()
        if known:
            raise CommandError(
                f"{known} of these images are already assets in this database, so the first pass would not "
                "download them: pick other images with --seed N"
            )
        rows = []
        try:
            with ServedInventory(
                images=len(images),
                seed=options["seed"],
                per_listing=options["per_listing"],
                validators=options["validators"],
            ) as server:
                sitemap = sitemap_get_or_create(advertiser=advertiser_get_or_create(slug=slug), url=server.sitemap_url)
                for name in ("first run", "unchanged re-run", "renamed URLs + ETags"):
                    if name.startswith("renamed"):
                        server.control("rename")
                    rows.append(self._measure(name, sitemap, server))
        finally:
            if not options["keep"]:
                self._cleanup(slug)
        first, second = rows[0]["seconds"], rows[1]["seconds"]
        load_average = [round(load, 2) for load in os.getloadavg()]
        summary = {
            "background_classifications": background_count(),
            "unchanged_rerun_ratio": round(second / first, 4) if first else None,
            "load_average": load_average,
        }
        if options["json"]:
            self.stdout.write(json.dumps({"rows": rows, **summary}))
            return
        self._print_table(rows)
        self.stdout.write(
            f"\nbackground: {summary['background_classifications']:,} classifications of another advertiser"
            f"\nunchanged re-run costs {100 * second / first:.1f}% of the first run's time"
            f"\nload average (1, 5, 15 min): {', '.join(map(str, load_average))}"
        )

    def _measure(self, name: str, sitemap: Any, server: "ServedInventory") -> dict[str, Any]:
        assets_before = ImageAsset.objects.count()
        server.control("reset")
        run = run_start(sitemap=sitemap, trigger=Run.Trigger.MANUAL, enqueue=False)
        started = time.perf_counter()
        run_execute(run_id=run.pk, inline=True)
        seconds = time.perf_counter() - started
        run.refresh_from_db()
        served = server.control("stats")
        return {
            "pass": name,
            "status": run.status,
            "urls": run.urls,
            "not_modified": run.not_modified,
            "cache_hits": run.cache_hits,
            "downloaded": run.downloaded,
            "failed": run.failed,
            "classified": run.classified,
            "new_assets": ImageAsset.objects.count() - assets_before,
            "server_200s": served["image_downloads"],
            "server_304s": served["not_modified"],
            "seconds": round(seconds, 2),
            "images/s": round(run.urls / seconds, 1) if seconds else None,
        }

    def _print_table(self, rows: list[dict[str, Any]]) -> None:
        widths = {col: max(len(col), *(len(str(row[col])) for row in rows)) for col in COLUMNS}
        self.stdout.write("  ".join(col.ljust(widths[col]) for col in COLUMNS))
        self.stdout.write("  ".join("-" * widths[col] for col in COLUMNS))
        for row in rows:
            self.stdout.write("  ".join(str(row[col]).ljust(widths[col]) for col in COLUMNS))

    def _cleanup(self, slug: str) -> None:
        advertiser = Advertiser.objects.filter(slug=slug).first()
        if advertiser is None:
            return
        asset_ids = set(
            ImageAsset.objects.filter(placements__listing__sitemap__advertiser=advertiser).values_list("id", flat=True)
        )
        advertiser.delete()
        orphans = ImageAsset.objects.filter(id__in=asset_ids, placements__isnull=True)
        for asset in orphans:
            asset.original.delete(save=False)
            asset.thumbnail.delete(save=False)
        orphans.delete()


class ServedInventory:
    """The inventory served from its own process (python -m catalog.inventory_server), like a remote CDN:
    its CPU time is not charged to the Run being measured."""

    def __init__(self, *, images: int, seed: int, per_listing: int, validators: str) -> None:
        self.command = [
            sys.executable, "-m", "catalog.inventory_server", "--images", str(images), "--seed", str(seed),
            "--per-listing", str(per_listing), "--validators", validators,
            "--cache-dir", str(settings.VAR_DIR / "bench"),
        ]  # fmt: skip
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> "ServedInventory":
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True, cwd=settings.BASE_DIR)  # noqa: S603
        assert self.process.stdout is not None  # noqa: S101
        line = self.process.stdout.readline().strip()
        if not line.startswith("serving "):
            self.process.kill()
            raise RuntimeError(f"the inventory server did not start: {line!r}")
        self.base_url = line.removeprefix("serving ")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    @property
    def sitemap_url(self) -> str:
        return f"{self.base_url}/sitemap.xml"

    def control(self, action: str) -> dict[str, int]:
        return httpx.get(f"{self.base_url}/_control/{action}", timeout=10).json()
