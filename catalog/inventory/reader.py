"""read_inventory: sniff a document from its bytes and dispatch to the right reader."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from .feed import parse_feed
from .html_pages import read_page
from .sniff import inflate, read_head, sniff
from .text import read_robots, read_text_sitemap
from .types import Inventory, Kind
from .values import ErrorLog
from .xml_sitemaps import read_xml

DEFAULT_MAX_INFLATED_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_IMAGES_PER_PAGE = 1000


def read_inventory(
    chunks: Iterable[bytes],
    *,
    url: str | None = None,
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES,
    max_images_per_page: int = DEFAULT_MAX_IMAGES_PER_PAGE,
) -> Inventory:
    """Read one inventory document (sitemap, index, text sitemap, robots.txt, RSS, Atom, scrape feed, page).

    The kind is sniffed from the bytes (gzip by its magic bytes, never by name or Content-Type) and
    ``chunks`` is consumed incrementally. ``url`` is the document's own URL: it resolves relative URLs
    and marks robots.txt. Raises InventoryRefused (FeedInvalid for a bad scrape feed) for hostile or
    unreadable documents; smaller problems are listed in ``Inventory.errors``.
    """
    errors = ErrorLog()
    stream = inflate(chunks, max_bytes=max_inflated_bytes, errors=errors)
    head = read_head(stream)
    following = next(stream, b"")
    body = chain([head, following], stream)
    how = sniff(head, url=url, complete=not following)

    if how == "xml":
        kind, pages, sitemaps = read_xml(body, url=url, max_images_per_page=max_images_per_page, errors=errors)
        return Inventory(kind=kind, pages=pages, sitemaps=sitemaps, errors=errors.as_list())
    if how == "feed":
        inventory = parse_feed(b"".join(body))
        inventory.errors = errors.as_list() + inventory.errors
        return inventory
    if how == "page":
        page = read_page(body, url=url, max_images_per_page=max_images_per_page, errors=errors)
        return Inventory(kind=Kind.PAGE, pages=[page], sitemaps=[], errors=errors.as_list())
    if how == "robots":
        sitemaps = read_robots(body, url=url, errors=errors)
        return Inventory(kind=Kind.ROBOTS, pages=[], sitemaps=sitemaps, errors=errors.as_list())
    pages = read_text_sitemap(body, errors=errors)
    return Inventory(kind=Kind.TEXT, pages=pages, sitemaps=[], errors=errors.as_list())
