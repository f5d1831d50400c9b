import json
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from catalog.inventory import FeedInvalid, feed_json_load
from catalog.models import Run, Sitemap
from catalog.services import advertiser_get_or_create, sitemap_get_or_create
from catalog.services.runs import run_execute, run_start
from config.commands import BaseCommand

WORKER_HINT_AFTER = 10.0


class Command(BaseCommand):
    help = (
        "Runs a sitemap: reads its source and brings every image in. Through a Celery worker by default, "
        "in this process with --sync. Creates the advertiser and sitemap when given --advertiser and --url."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("sitemap_id", nargs="?", type=int)
        parser.add_argument("--advertiser", metavar="SLUG")
        parser.add_argument("--url")
        parser.add_argument("--kind", choices=Sitemap.Kind.values, default=Sitemap.Kind.SITEMAP)
        parser.add_argument("--feed", type=Path, metavar="FILE", help="A scrape feed document (JSON) for this Run.")
        parser.add_argument("--sync", action="store_true", help="Run in this process instead of a worker.")
        parser.add_argument("--json", action="store_true", help="Print the Run's final counters as one JSON object.")

    def handle(self, *args: object, **options: Any) -> None:
        sitemap = self._sitemap(options)
        try:
            feed = self._feed(options["feed"])
            run = run_start(
                sitemap=sitemap, trigger=Run.Trigger.MANUAL, feed_document=feed, enqueue=not options["sync"]
            )
        except FeedInvalid as exc:  # every problem, as the API answers them
            problems = "".join(f"\n  {error}" for error in exc.errors)
            raise CommandError(f"invalid scrape feed, {len(exc.errors)} problem(s):{problems}") from exc
        if not options["json"]:
            self.stderr.write(f"Run {run.pk} of sitemap {sitemap.pk} ({sitemap.url or 'feed'})")
        with tqdm(desc=f"run {run.pk}", unit="img", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:

            def show(current: Run) -> None:
                bar.total = current.urls or None
                bar.n = current.done
                bar.set_postfix_str(
                    f"{current.step} new={current.downloaded} cached={current.cache_hits} "
                    f"304={current.not_modified} failed={current.failed}",
                    refresh=False,
                )
                bar.refresh()

            if options["sync"]:
                run_execute(run_id=run.pk, progress=show, inline=True)
                run.refresh_from_db()
            else:
                run = self._wait(run, show)
            show(run)
        self._report(run, as_json=options["json"])

    def _sitemap(self, options: dict[str, Any]) -> Sitemap:
        if options["sitemap_id"] is not None:
            sitemap = Sitemap.objects.select_related("advertiser").filter(pk=options["sitemap_id"]).first()
            if sitemap is None:
                raise CommandError(f"no sitemap {options['sitemap_id']}")
            return sitemap
        if not options["advertiser"] or not (options["url"] or options["feed"]):
            raise CommandError("give a sitemap id, or --advertiser SLUG with --url URL (or --feed FILE)")
        advertiser = advertiser_get_or_create(slug=options["advertiser"])
        return sitemap_get_or_create(advertiser=advertiser, url=options["url"] or "", kind=options["kind"])

    def _feed(self, path: Path | None) -> object | None:
        """The feed file's document, read as the API reads a feed body (FeedInvalid: not JSON, NaN, too deep)."""
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read the feed {path}: {exc}") from exc
        return feed_json_load(data)

    def _wait(self, run: Run, show: Any) -> Run:
        started = time.monotonic()
        hinted = False
        while run.status in Run.ACTIVE_STATUSES:
            time.sleep(0.5)
            run.refresh_from_db()
            show(run)
            if run.status == Run.Status.QUEUED and not hinted and time.monotonic() - started > WORKER_HINT_AFTER:
                self.stderr.write("Still queued: is a worker running? (celery -A config worker -Q default,inference)")
                hinted = True
        return run

    def _report(self, run: Run, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(run.counters()))
        else:
            self.stdout.write(
                f"Run {run.pk}: {run.status} in {run.duration_seconds or 0:.1f}s. urls={run.urls} "
                f"not_modified={run.not_modified} cache_hits={run.cache_hits} downloaded={run.downloaded} "
                f"failed={run.failed} classified={run.classified}"
            )
            for reason, count in run.failure_reasons.items():
                self.stdout.write(f"  failed: {reason} x{count}")
            for error in run.source_errors[:20]:
                self.stdout.write(f"  source: {error}")
            for warning in run.source_warnings[:20]:
                self.stdout.write(f"  source (warning): {warning}")
        if run.status == Run.Status.FAILED:
            raise CommandError(run.error or "the Run failed")
