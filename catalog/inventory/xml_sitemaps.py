"""Streaming readers of XML sitemaps, sitemap indexes, RSS 2.0 and Atom feeds (stdlib expat).

Names are matched by local name (the part after any ``prefix:``) without namespace processing, so
sitemaps with a missing, wrong or undeclared namespace still read. The bytes pass through
``repair.repaired_xml`` first (any encoding, bad bytes, raw ``&``, HTML entities; each repair a warning).
Entity declarations and internal DTD subsets are refused while streaming and never expanded; a DOCTYPE
that only names an external DTD is accepted and the DTD never loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from xml.parsers import expat

from .repair import repaired_xml
from .sniff import CHUNK_SIZE
from .types import InventoryRefused, Kind, Page
from .values import MAX_URL_LENGTH, ErrorLog, clean_url, parse_feed_datetime, parse_w3c_datetime, shorten

_ROOT_KINDS = {
    "urlset": Kind.URLSET,
    "sitemapindex": Kind.SITEMAP_INDEX,
    "rss": Kind.RSS,
    "RDF": Kind.RSS,
    "feed": Kind.ATOM,
}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".bmp", ".tif", ".tiff")
_FEED_DATES = frozenset({"pubDate", "updated", "published", "date", "modified"})
_FEED_TEXT = frozenset({"link", "title", "guid"})
# Google Merchant Center feeds (RSS 2.0 or Atom items with the g: namespace): the product's id, its photos, and the
# attributes that describe what the photos show.
MERCHANT_NS = "http://base.google.com/ns/1.0"
_MERCHANT_IMAGES = frozenset({"image_link", "additional_image_link"})
_MERCHANT_ATTRIBUTES = frozenset({"color", "brand", "condition", "make", "model", "year", "vin"})
_MERCHANT_TEXT = frozenset({"id", "link", "title"}) | _MERCHANT_IMAGES | _MERCHANT_ATTRIBUTES
# Some feeds put every additional image in one element, separated by commas (as the CSV format does).
_URL_LIST = re.compile(r",\s*(?=https?://)", re.I)


class _Refuse(Exception):
    """Raised inside expat handlers; carries the InventoryRefused out of the parser."""


def _fast_url(raw: str) -> str:
    """``raw`` when it is plainly an absolute http(s) URL, else "" (then clean_url decides and explains)."""
    if raw.startswith("https://"):
        host = raw[8:9]
    elif raw.startswith("http://"):
        host = raw[7:8]
    else:
        return ""
    if host and host not in "/?#" and len(raw) <= MAX_URL_LENGTH:
        return raw
    return ""


def _looks_like_image(url: str) -> bool:
    return url.split("?")[0].split("#")[0].lower().endswith(_IMAGE_SUFFIXES)


class _Reader:
    def __init__(self, *, url: str | None, max_images: int, errors: ErrorLog) -> None:
        self.url = url
        self.max_images = max_images
        self.errors = errors
        self.kind: Kind | None = None
        self.pages: list[Page] = []
        self.sitemaps: list[str] = []
        self.entries = 0
        self.stack: list[str] = []
        self.text: list[str] | None = None
        self.in_entry = False
        self.merchant_prefixes = {"g"}  # the usual prefix, declared or not; and any other bound to MERCHANT_NS
        self.merchant_field = ""  # the g: element whose text is being read
        self._reset_entry()

    def _reset_entry(self) -> None:
        self.loc = ""
        self.guid = ""
        self.title = ""
        self.lastmod: datetime | None = None
        self.images: list[str] = []
        self.external_id = ""
        self.attributes: dict[str, str] = {}

    # -- security ---------------------------------------------------------------------------------

    def refuse_doctype(self, name: str, system_id: str | None, public_id: str | None, has_subset: int) -> None:
        # An external DTD is only named: parameter entity parsing is off, so it is never loaded.
        if has_subset:
            raise _Refuse(f"refused: DOCTYPE {name} has an internal subset (entities are not allowed)")

    def refuse_entity(self, name: str, *_args: Any) -> None:
        raise _Refuse(f"refused: entity declaration {name!r} (entity expansion is not allowed)")

    def refuse_external(self, *_args: Any) -> int:
        raise _Refuse("refused: external entity reference")

    # -- text ---------------------------------------------------------------------------------------

    def chars(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)

    def _take_text(self) -> str:
        text = "".join(self.text) if self.text is not None else ""
        self.text = None
        return text.strip()

    # -- root ---------------------------------------------------------------------------------------

    def start_root(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rpartition(":")[2]
        kind = _ROOT_KINDS.get(local)
        if kind is None:
            raise _Refuse(f"not a sitemap, feed, robots.txt or HTML page (root element <{name}>)")
        self.kind = kind
        if kind in (Kind.URLSET, Kind.SITEMAP_INDEX):
            self.install_sitemap_handlers(self.parser)
        else:
            self._note_namespaces(attrs)
            self.parser.StartElementHandler = self.start_feed
            self.parser.EndElementHandler = self.end_feed
            self.stack.append(local)

    # -- urlset and sitemapindex ----------------------------------------------------------------

    def install_sitemap_handlers(self, parser: Any) -> None:
        """Handlers for <urlset> and <sitemapindex>, as closures over local state rather than methods.

        They run for every element of files with 50,000 URLs, so they track the depth instead of a stack
        of names and collect text only while inside a <loc> or <lastmod>.
        """
        local_names: dict[str, str] = {}
        entry_tag = "url" if self.kind is Kind.URLSET else "sitemap"
        depth = 1
        capture: list[str] = []
        capture_depth = 0
        in_entry = in_image = False
        loc = ""
        lastmod: datetime | None = None
        images: list[str] = []

        def chars(data: str) -> None:
            capture.append(data)

        def start(name: str, attrs: dict[str, str]) -> None:
            nonlocal depth, capture, capture_depth, in_entry, in_image, loc, lastmod, images
            depth += 1
            local = local_names.get(name)
            if local is None:
                local = local_names[name] = name.rpartition(":")[2]
            if depth == 2:
                if local == entry_tag:
                    in_entry = True
                    loc, lastmod, images = "", None, []
            elif depth == 3:
                if in_entry and (local == "loc" or local == "lastmod"):
                    capture, capture_depth = [], depth
                    parser.CharacterDataHandler = chars
                elif local == "image":
                    in_image = True
            elif depth == 4 and in_image and local == "loc":
                capture, capture_depth = [], depth
                parser.CharacterDataHandler = chars

        def end(name: str) -> None:
            nonlocal depth, capture_depth, in_entry, in_image, loc, lastmod
            if depth == capture_depth:
                capture_depth = 0
                parser.CharacterDataHandler = None
                text = (capture[0] if len(capture) == 1 else "".join(capture)).strip()
                if depth == 4:
                    # Inlined _fast_url: this runs for every image of the file.
                    if text.startswith("https://"):
                        host = text[8:9]
                    elif text.startswith("http://"):
                        host = text[7:8]
                    else:
                        host = ""
                    if host and host not in "/?#" and len(text) <= MAX_URL_LENGTH:
                        images.append(text)
                    else:
                        images.append(self._bad_image(text))
                elif local_names[name] == "loc":
                    loc = text
                else:
                    lastmod = parse_w3c_datetime(text)
            elif depth == 3:
                in_image = False
            elif depth == 2 and in_entry:
                in_entry = False
                self.entries += 1
                if entry_tag == "url":
                    self._finish_url(loc, images, lastmod)
                else:
                    self._finish_sitemap(loc)
            depth -= 1

        parser.StartElementHandler = start
        parser.EndElementHandler = end
        parser.CharacterDataHandler = None

    def _bad_image(self, raw: str) -> str:
        try:
            return clean_url(raw, self.url)
        except ValueError as exc:
            self.errors.add(f"url entry {self.entries + 1}: image {exc}: {shorten(raw)}")
        return ""

    def _finish_url(self, raw: str, images: list[str], lastmod: datetime | None) -> None:
        loc = _fast_url(raw)
        if not loc:
            try:
                loc = clean_url(raw, self.url)
            except ValueError as exc:
                self.errors.add(f"url entry {self.entries}: loc {exc}: {shorten(raw)}")
                return
        if len(images) > 1 or (images and not images[0]):
            images = [image for image in dict.fromkeys(images) if image]
        if len(images) > self.max_images:
            self.errors.add(f"{loc}: {len(images)} images, only the first {self.max_images} kept")
            images = images[: self.max_images]
        self.pages.append(Page(loc=loc, images=images, lastmod=lastmod))

    def _finish_sitemap(self, raw: str) -> None:
        try:
            self.sitemaps.append(clean_url(raw, self.url))
        except ValueError as exc:
            self.errors.add(f"sitemap entry {self.entries}: loc {exc}: {shorten(raw)}")

    def _add_image(self, raw: str) -> None:
        try:
            self.images.append(clean_url(raw, self.url))
        except ValueError as exc:
            self.errors.add(f"entry {self.entries + 1}: image {exc}: {shorten(raw)}")

    def _finish_page(self, what: str) -> None:
        raw = self.loc or self.guid
        try:
            loc = clean_url(raw, self.url)
        except ValueError as exc:
            self.errors.add(f"{what} {self.entries}: loc {exc}: {shorten(raw)}")
            return
        images = list(dict.fromkeys(self.images)) if len(self.images) > 1 else self.images
        if len(images) > self.max_images:
            self.errors.add(f"{loc}: {len(images)} images, only the first {self.max_images} kept")
            images = images[: self.max_images]
        self.pages.append(
            Page(
                loc=loc,
                images=images,
                lastmod=self.lastmod,
                title=self.title,
                external_id=self.external_id,
                attributes=self.attributes,
            )
        )

    # -- RSS and Atom -------------------------------------------------------------------------------

    def _note_namespaces(self, attrs: dict[str, str]) -> None:
        for attr, value in attrs.items():
            if attr.startswith("xmlns:") and value.strip().rstrip("/") == MERCHANT_NS:
                self.merchant_prefixes.add(attr[6:])

    def start_feed(self, name: str, attrs: dict[str, str]) -> None:
        prefix, _, local = name.rpartition(":")
        parent = self.stack[-1]
        self.stack.append(local)
        if attrs:
            self._note_namespaces(attrs)
        if local == "item" or local == "entry":
            self.in_entry = True
            self._reset_entry()
            return
        if not self.in_entry:
            return
        if prefix and prefix in self.merchant_prefixes:
            if local in _MERCHANT_TEXT and parent in ("item", "entry"):
                self.merchant_field = local
                self.text = []
            return
        if local == "link":
            href = attrs.get("href")
            if href is None:
                if parent in ("item", "entry"):
                    self.text = []
                return
            rel = attrs.get("rel", "alternate")
            if rel == "alternate" and not self.loc:
                self.loc = href
            elif rel == "enclosure" and attrs.get("type", "").startswith("image/"):
                self._add_image(href)
        elif local == "enclosure":
            self._add_media(attrs.get("url"), attrs.get("type", ""), "")
        elif local == "content":
            self._add_media(attrs.get("url"), attrs.get("type", ""), attrs.get("medium", ""))
        elif local == "thumbnail":
            if attrs.get("url"):
                self._add_image(attrs["url"])
        elif parent in ("item", "entry") and (local == "title" or local == "guid" or local in _FEED_DATES):
            self.text = []
            if local == "guid" and attrs.get("isPermaLink", "true").lower() == "false":
                self.text = None

    def _add_media(self, url: str | None, mime: str, medium: str) -> None:
        if not url:
            return
        guessed = not medium and not mime and _looks_like_image(url)
        if medium == "image" or mime.startswith("image/") or guessed:
            self._add_image(url)

    def _end_merchant_field(self, local: str) -> None:
        text = self._take_text()
        self.merchant_field = ""
        if not text:
            return
        if local == "image_link":  # the main photo comes first, wherever the feed puts it
            added = len(self.images)
            self._add_image(text)
            self.images[:] = self.images[added:] + self.images[:added]
        elif local == "additional_image_link":
            for url in _URL_LIST.split(text):
                self._add_image(url)
        elif local == "id":
            self.external_id = text
        elif local == "link":
            self.loc = self.loc or text
        elif local == "title":
            self.title = self.title or text
        else:
            self.attributes[local] = text

    def end_feed(self, name: str) -> None:
        local = self.stack.pop()
        if self.merchant_field and local == self.merchant_field:
            self._end_merchant_field(local)
        elif self.text is not None and (local in _FEED_TEXT or local in _FEED_DATES):
            text = self._take_text()
            if local == "link":
                self.loc = self.loc or text
            elif local == "title":
                self.title = text
            elif local == "guid":
                self.guid = text
            elif self.lastmod is None:
                self.lastmod = parse_feed_datetime(text)
        elif (local == "item" or local == "entry") and self.in_entry:
            self.in_entry = False
            self.entries += 1
            self._finish_page(local)

    # -- driver -------------------------------------------------------------------------------------

    def read(self, chunks: Iterable[bytes]) -> None:
        # The repair pass hands over UTF-8 whatever the document declared.
        parser = expat.ParserCreate(encoding="UTF-8")
        self.parser = parser
        parser.buffer_text = True
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self.refuse_doctype
        parser.EntityDeclHandler = self.refuse_entity
        parser.UnparsedEntityDeclHandler = self.refuse_entity
        parser.ExternalEntityRefHandler = self.refuse_external
        parser.StartElementHandler = self.start_root
        parser.CharacterDataHandler = self.chars
        try:
            for chunk in chunks:
                for start in range(0, len(chunk), CHUNK_SIZE):
                    parser.Parse(chunk[start : start + CHUNK_SIZE], False)
            parser.Parse(b"", True)
        except _Refuse as exc:
            raise InventoryRefused(str(exc)) from None
        except expat.ExpatError as exc:
            if self.kind is None:
                raise InventoryRefused(f"not well-formed XML: {exc}") from None
            self.errors.add(f"XML error after {self.entries} entries: {exc}")
        if self.kind is None:
            raise InventoryRefused("not well-formed XML: no root element")


def read_xml(
    chunks: Iterable[bytes],
    *,
    url: str | None,
    max_images_per_page: int,
    errors: ErrorLog,
    warnings: ErrorLog | None = None,
    encoding: str = "utf-8",
) -> tuple[Kind, list[Page], list[str]]:
    """Read a sitemap, sitemap index, RSS or Atom document; return (kind, pages, child sitemaps).

    ``encoding`` is the Python codec of the bytes (see repair.declared_encoding). Bad characters are
    repaired and logged in ``warnings``; XML still broken after that keeps the entries read before the
    break and records the parser error.
    """
    reader = _Reader(url=url, max_images=max_images_per_page, errors=errors)
    reader.read(repaired_xml(chunks, encoding, warnings=warnings if warnings is not None else ErrorLog()))
    assert reader.kind is not None  # noqa: S101 - read() raises otherwise
    return reader.kind, reader.pages, reader.sitemaps
