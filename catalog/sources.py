"""Reading an inventory source: a URL (fetched safely, an index followed) or a local file, into pages.

The glue between Django settings and the pure readers (catalog.inventory) and fetcher (catalog.fetching).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from django.conf import settings

from .fetching import FetchPolicy, SafeFetcher
from .inventory import Inventory, Kind, NotAnInventory, Page, parse_feed, read_inventory, walk_sitemaps

CHUNK_SIZE = 64 * 1024
Expect = Literal["sitemap", "page", "any"]


@dataclass
class SourceResult:
    """Everything read from one source: the root's kind, its pages (merged across child sitemaps) and errors."""

    kind: Kind
    pages: list[Page]
    sitemaps: list[str]
    errors: list[str] = field(default_factory=list)
    documents: int = 1
    # Repairs and repeats of a source read in full: shown, but they do not make the read incomplete.
    warnings: list[str] = field(default_factory=list)

    @property
    def image_count(self) -> int:
        return sum(len(page.images) for page in self.pages)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "pages": [{"loc": page.loc, "images": list(page.images)} for page in self.pages],
            "sitemaps": list(self.sitemaps),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }

    @property
    def complete(self) -> bool:
        """Whether everything the source lists was read, so what it no longer lists may be marked gone."""
        return not self.errors


def fetch_policy(**overrides: object) -> FetchPolicy:
    """The fetch policy of this deployment (settings FETCH_*), with optional overrides."""
    values: dict[str, object] = {
        "allow_networks": tuple(settings.FETCH_ALLOW_NETWORKS),
        "user_agent": settings.FETCH_USER_AGENT,
        "connect_timeout": settings.FETCH_CONNECT_TIMEOUT,
        "read_timeout": settings.FETCH_READ_TIMEOUT,
        "deadline": settings.FETCH_DEADLINE,
        "max_bytes": settings.FETCH_MAX_IMAGE_BYTES,
        "max_redirects": settings.FETCH_MAX_REDIRECTS,
    }
    values.update(overrides)
    return FetchPolicy(**values)  # type: ignore[arg-type]


class _Opened:
    """One fetched document as walk_sitemaps reads it: its chunks, and where redirects led (once opened)."""

    def __init__(self, fetcher: SafeFetcher, url: str, max_bytes: int) -> None:
        self.fetcher = fetcher
        self.url = url
        self.max_bytes = max_bytes
        self.final_url: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        with self.fetcher.stream(self.url, max_bytes=self.max_bytes) as (result, chunks):
            self.final_url = result.url
            yield from chunks


def source_read_url(
    url: str, *, fetcher: SafeFetcher, follow_children: bool = True, expect: Expect = "any"
) -> SourceResult:
    """Fetches and reads a sitemap, index, feed, robots.txt or page; an index's children are fetched too.

    ``expect`` is what the URL may be (walk_sitemaps): "sitemap" (a Sitemap of that kind) never reads HTML
    as listings, and discovers the sitemaps of a homepage; "page" reads a product page. Raises
    InventoryRefused (NotAnInventory for HTML where a sitemap was expected) or FetchError when the root
    cannot be read; a broken child, an HTML one included, is an error recorded.
    """
    max_bytes = settings.FETCH_MAX_DOCUMENT_BYTES

    def open_url(child_url: str) -> _Opened:
        return _Opened(fetcher, child_url, max_bytes)

    if not follow_children:
        opened = open_url(url)
        try:
            inventory = read_inventory(
                opened, url=url, max_inflated_bytes=_max_inflated(), allow_html=expect != "sitemap"
            )
        except NotAnInventory:
            redirected = opened.final_url if opened.final_url != url else None
            raise NotAnInventory(final_url=redirected) from None
        return _result_of([(url, inventory)])
    documents = list(walk_sitemaps(url, open_url, expect=expect, max_inflated_bytes=_max_inflated()))
    return _result_of(documents)


def source_read_file(path: Path, *, allow_html: bool = True) -> SourceResult:
    """Reads a local file of any kind (HTML only when ``allow_html``). Child sitemaps are listed, not fetched."""

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_SIZE):
                yield chunk

    inventory = read_inventory(
        chunks(), url=path.resolve().as_uri(), max_inflated_bytes=_max_inflated(), allow_html=allow_html
    )
    return _result_of([(str(path), inventory)])


def source_read_feed(document: object) -> SourceResult:
    """Reads a scrape feed document posted with a Run. Raises FeedInvalid."""
    return _result_of([("feed", parse_feed(document))])  # type: ignore[arg-type]


def _max_inflated() -> int:
    return int(settings.FETCH_MAX_DOCUMENT_BYTES) * 4


def _result_of(documents: list[tuple[str, Inventory]]) -> SourceResult:
    """Merges documents (children first, root last, as walk_sitemaps yields them) into one result."""
    _root_url, root = documents[-1]
    pages: dict[str, Page] = {}
    errors = list(root.errors)
    warnings = list(root.warnings)
    for url, inventory in documents:
        if inventory is not root:
            errors.extend(f"{url}: {error}" for error in inventory.errors)
            warnings.extend(f"{url}: {warning}" for warning in inventory.warnings)
        for page in inventory.pages:
            key = page.external_id or page.loc
            known = pages.get(key)
            if known is None:
                pages[key] = page
            else:  # the same listing in two child sitemaps: one listing with the images of both
                known.images.extend(image for image in page.images if image not in known.images)
    return SourceResult(
        kind=root.kind,
        pages=list(pages.values()),
        sitemaps=list(root.sitemaps),
        errors=errors,
        documents=len(documents),
        warnings=warnings,
    )
