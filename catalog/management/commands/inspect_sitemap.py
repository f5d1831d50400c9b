import json
from pathlib import Path

from django.core.management.base import CommandError, CommandParser
from django.template.defaultfilters import pluralize

from catalog.fetching import FetchError, SafeFetcher
from catalog.fetching.addresses import unsupported_scheme, url_scheme
from catalog.inventory import InventoryRefused
from catalog.sources import Expect, SourceResult, fetch_policy, source_read_file, source_read_url
from config.commands import BaseCommand

SHOWN_PAGES = 20


class Command(BaseCommand):
    help = (
        "Reads a sitemap, sitemap index, scrape feed, robots.txt or product page (a URL or a local file) and "
        "prints what it found. A URL's child sitemaps are fetched; a local file's are listed. As in a Run of a "
        "sitemap, HTML is not read as listings (a homepage's sitemaps are discovered) unless --kind page."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("location", metavar="PATH_OR_URL")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument("--no-follow", action="store_true", help="List a URL's child sitemaps, do not fetch them.")
        parser.add_argument(
            "--kind",
            choices=["sitemap", "page"],
            default="sitemap",
            help="Read it as a Sitemap of this kind would be: 'page' reads a product page's images.",
        )

    def handle(self, *args: object, location: str, json: bool, no_follow: bool, kind: str, **options: object) -> None:
        try:
            result = self._read(location, follow=not no_follow, kind=kind)
        except (InventoryRefused, FetchError) as exc:
            raise CommandError(f"refused {location}: {exc}") from exc
        except OSError as exc:
            raise CommandError(f"cannot read {location}: {exc.strerror or exc}") from exc
        if json:
            self.stdout.write(_json_dumps(result.to_json()))
        else:
            self._print_report(result)

    def _read(self, location: str, *, follow: bool, kind: str) -> SourceResult:
        expect: Expect = "page" if kind == "page" else "sitemap"
        scheme = url_scheme(location)
        if scheme in ("http", "https"):
            with SafeFetcher(fetch_policy()) as fetcher:
                return source_read_url(location, fetcher=fetcher, follow_children=follow, expect=expect)
        if scheme is not None:
            raise CommandError(f"refused {location}: {unsupported_scheme(scheme)}")
        path = Path(location)
        if not path.is_file():
            raise CommandError(f"no such file: {location} (give a local file or an http(s) URL)")
        return source_read_file(path, allow_html=expect == "page")

    def _print_report(self, result: SourceResult) -> None:
        write = self.stdout.write
        write(f"kind: {result.kind}")
        write(f"pages: {len(result.pages)}  images: {result.image_count}  documents read: {result.documents}")
        for page in result.pages[:SHOWN_PAGES]:
            write(f"  {page.loc}  ({len(page.images)} image{pluralize(len(page.images))})")
            for image in page.images[:3]:
                write(f"      {image}")
            if len(page.images) > 3:
                write(f"      ... {len(page.images) - 3} more")
        if len(result.pages) > SHOWN_PAGES:
            more = len(result.pages) - SHOWN_PAGES
            write(f"  ... {more} more page{pluralize(more)} (use --json for all)")
        if result.sitemaps:
            write(f"child sitemaps: {len(result.sitemaps)}")
            for child in result.sitemaps:
                write(f"  {child}")
        if result.errors:
            write(self.style.WARNING(f"errors: {len(result.errors)}"))
            for error in result.errors:
                write(self.style.WARNING(f"  {error}"))
        if result.warnings:
            write(self.style.WARNING(f"warnings (repaired, read on): {len(result.warnings)}"))
            for warning in result.warnings:
                write(self.style.WARNING(f"  {warning}"))


def _json_dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
