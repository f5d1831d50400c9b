"""read_inventory: sniff a document from its bytes and dispatch to the right reader."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from .feed import parse_feed
from .html_pages import read_page
from .repair import bom_encoding, declared_encoding, recode_to_utf8
from .sniff import inflate, read_head, skip_junk, sniff
from .text import read_robots, read_text_sitemap
from .types import Inventory, Kind, NotAnInventory
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
    allow_html: bool = True,
) -> Inventory:
    """Read one inventory document (sitemap, index, text sitemap, robots.txt, RSS, Atom, scrape feed, page).

    The kind is sniffed from the bytes (gzip by its magic bytes, never by name or Content-Type) and
    ``chunks`` is consumed incrementally. ``url`` is the document's own URL: it resolves relative URLs
    and marks robots.txt. Any encoding Python knows is read (a BOM wins, then the XML declaration). Raises
    InventoryRefused (FeedInvalid for a bad scrape feed) for hostile or unreadable documents, and
    NotAnInventory for an HTML page unless ``allow_html`` (only a product-page source reads HTML).
    Problems that lost something are listed in ``Inventory.errors``; repairs of a document read in full
    in ``Inventory.warnings``.
    """
    errors = ErrorLog()
    warnings = ErrorLog()
    stream = inflate(chunks, max_bytes=max_inflated_bytes, errors=errors)
    first = b""
    for piece in stream:  # enough bytes for any byte-order mark
        first += piece
        if len(first) >= 4:
            break
    recoded_from = bom_encoding(first)
    stream = chain([first], stream)
    if recoded_from is not None:
        stream = recode_to_utf8(stream, recoded_from, warnings=warnings)
    head = skip_junk(read_head(stream), warnings=warnings)
    following = next(stream, b"")
    body = chain([head, following], stream)
    how = sniff(head, url=url, complete=not following)

    def done(kind: Kind, pages: list, sitemaps: list[str]) -> Inventory:
        return Inventory(
            kind=kind,
            pages=pages,
            sitemaps=sitemaps,
            errors=errors.as_list(),
            warnings=warnings.as_list("warnings"),
        )

    if how == "xml":
        encoding = "utf-8" if recoded_from else declared_encoding(head, warnings=warnings)
        kind, pages, sitemaps = read_xml(
            body,
            url=url,
            max_images_per_page=max_images_per_page,
            errors=errors,
            warnings=warnings,
            encoding=encoding,
        )
        return done(kind, pages, sitemaps)
    if how == "feed":
        inventory = parse_feed(b"".join(body))
        inventory.errors = errors.as_list() + inventory.errors
        inventory.warnings = warnings.as_list("warnings")
        return inventory
    if how == "page":
        if not allow_html:
            raise NotAnInventory
        page = read_page(body, url=url, max_images_per_page=max_images_per_page, errors=errors, warnings=warnings)
        return done(Kind.PAGE, [page], [])
    if how == "robots":
        sitemaps = read_robots(body, url=url, errors=errors)
        return done(Kind.ROBOTS, [], sitemaps)
    pages = read_text_sitemap(body, errors=errors, warnings=warnings)
    return done(Kind.TEXT, pages, [])
