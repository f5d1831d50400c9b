"""Measures Runs on a local inventory: the first pass, a re-run with nothing changed, and a re-run after
the CDN renamed every file and changed every ETag without changing the bytes, for one or more inventory sizes.
With --background N, the database first holds N classifications of another advertiser (loaded once, reused by
later calls), so that the figures show whether a Run's cost follows its own sitemap or the whole database.
benchmark_classifier's whole-stack figure (decode + models only) is measured just before each first Run, on that
Run's own images, and so is the stack with each image's keys and thumbnail (all the CPU work a Run's fetch process
does, without network, storage or database): on a shared machine only figures measured together compare, so the
command prints the Run's ratio to each. Runs are measured with DEBUG off, as in production: Django's query log
would add its own cost to every statement."""

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.test.utils import override_settings

from benchmarks.loads import background_count, background_load, starter_models_ensure, whole_stack_measure
from catalog.imaging import sha256_hex
from catalog.inventory_server import make_inventory_images
from catalog.models import Advertiser, ImageAsset, Run
from catalog.services import advertiser_get_or_create, sitemap_get_or_create
from catalog.services.runs import run_execute, run_start
from config.commands import BaseCommand

COLUMNS = ["pass", "status", "urls", "not_modified", "cache_hits", "downloaded", "failed", "classified",
           "new_assets", "server_200s", "server_304s", "seconds", "images/s"]  # fmt: skip


class Command(BaseCommand):
    help = (
        "Benchmark of Runs on a local inventory served over real HTTP (generated JPEGs, 800x600 to 1600x1200): "
        "first Run, unchanged re-run, and re-run after every URL and ETag changed, for each --images count. Beside "
        "each first Run, benchmark_classifier's whole-stack figure is measured, so that the two compare under the "
        "same load. Prints tables (or --json)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, nargs="+", default=[1000], metavar="N")
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
        parser.add_argument(
            "--stack-images",
            type=int,
            default=512,
            metavar="N",
            help="Photos of benchmark_classifier's whole-stack figure, measured before each first Run (0: not).",
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **options: Any) -> None:
        starter_models_ensure(say=self.stderr.write)
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
        results = [self._benchmark(count, options) for count in options["images"]]
        if options["json"]:
            self.stdout.write(json.dumps({"background_classifications": background_count(), "sizes": results}))
            return
        for result in results:
            self._print_result(result)
        self.stdout.write(f"\nbackground: {background_count():,} classifications of another advertiser")
        if len(results) > 1:
            self.stdout.write(
                "\nimages  first run img/s  stack img/s  first/stack  stack+keys img/s  first/stack+keys  "
                "re-run/first  load average"
            )
            for r in results:
                self.stdout.write(
                    f"{r['images']:>6}  {r['first_run_per_s']:>15}  {r['stack_per_s'] or '-':>11}  "
                    f"{_percent(r['first_to_stack']):>11}  {r['stack_keys_per_s'] or '-':>16}  "
                    f"{_percent(r['first_to_stack_keys']):>16}  {_percent(r['unchanged_rerun_ratio']):>12}  "
                    f"{', '.join(map(str, r['load_average']))}"
                )

    def _benchmark(self, count: int, options: dict[str, Any]) -> dict[str, Any]:
        """The three passes over an inventory of `count` images, with the whole-stack figure measured just before."""
        self.stderr.write(f"Generating {count} JPEGs (cached in var/bench) ...")
        images = make_inventory_images(count, seed=options["seed"], cache_dir=settings.VAR_DIR / "bench")
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
        load_before = [round(load, 2) for load in os.getloadavg()]
        stack: list[dict[str, float]] = []
        if options["stack_images"]:
            self.stderr.write(f"whole stack (benchmark_classifier) on {options['stack_images']} photos ...")
            processes = sorted({1, max(1, settings.RUN_FETCH_PROCESSES)})
            photos = images[: options["stack_images"]]  # the Run's own images: sizes and content alike
            stack = whole_stack_measure(images=len(photos), processes=processes, photos=photos)
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
        # The figure a Run is compared with: the stack in as many processes as the Run's fetch has.
        stack_per_s = round(stack[-1]["stack_per_s"], 1) if stack else None
        keys_per_s = round(stack[-1]["stack_keys_per_s"], 1) if stack else None
        first_per_s = rows[0]["images/s"]
        return {
            "images": count,
            "rows": rows,
            "stack": stack,
            "first_run_per_s": first_per_s,
            "stack_per_s": stack_per_s,
            "stack_keys_per_s": keys_per_s,
            "first_to_stack": round(first_per_s / stack_per_s, 3) if stack_per_s and first_per_s else None,
            "first_to_stack_keys": round(first_per_s / keys_per_s, 3) if keys_per_s and first_per_s else None,
            "unchanged_rerun_ratio": round(second / first, 4) if first else None,
            "load_average_before": load_before,
            "load_average": [round(load, 2) for load in os.getloadavg()],
        }

    def _print_result(self, result: dict[str, Any]) -> None:
        self.stdout.write(f"\n{result['images']} images")
        self._print_table(result["rows"])
        for row in result["stack"]:
            self.stdout.write(
                f"whole stack (benchmark_classifier) on these images, {row['processes']:.0f} processes: "
                f"{row['stack_per_s']:.1f} img/s; with each image's keys and thumbnail: {row['stack_keys_per_s']:.1f}"
            )
        if result["first_to_stack"] is not None:
            processes = result["stack"][-1]["processes"]
            self.stdout.write(
                f"first run {result['first_run_per_s']} img/s = {_percent(result['first_to_stack'])} of the whole "
                f"stack in {processes:.0f} processes ({result['stack_per_s']} img/s), "
                f"{_percent(result['first_to_stack_keys'])} of the stack with keys and thumbnail "
                f"({result['stack_keys_per_s']} img/s)"
            )
        self.stdout.write(
            f"unchanged re-run costs {_percent(result['unchanged_rerun_ratio'])} of the first run's time"
            f"\nload average (1, 5, 15 min) before: {', '.join(map(str, result['load_average_before']))}, "
            f"after: {', '.join(map(str, result['load_average']))}"
        )

    @override_settings(DEBUG=False)
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


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.1f}%"


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
