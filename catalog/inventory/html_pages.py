"""Images of a product page (HTML), with the stdlib's tolerant html.parser."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from html.parser import HTMLParser

from .types import Page
from .values import ErrorLog, clean_url, shorten

MAX_HTML_BYTES = 5 * 1024 * 1024

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_OG_IMAGE = frozenset({"og:image", "og:image:url", "og:image:secure_url"})
_LAZY_SOURCES = ("data-src", "data-lazy-src", "data-original")


def parse_srcset(value: str) -> list[tuple[str, str]]:
    """Split a ``srcset`` into (url, descriptor) pairs; URLs may contain commas (HTML spec parsing)."""
    candidates: list[tuple[str, str]] = []
    position, length = 0, len(value)
    while position < length:
        while position < length and (value[position].isspace() or value[position] == ","):
            position += 1
        start = position
        while position < length and not value[position].isspace():
            position += 1
        url = value[start:position]
        if not url:
            break
        descriptor = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start = position
            while position < length and value[position] != ",":
                position += 1
            descriptor = value[start:position].strip()
        if url:
            candidates.append((url, descriptor))
    return candidates


def largest_candidate(srcset: str) -> str | None:
    """The srcset candidate with the largest ``w`` descriptor, else the largest ``x`` density, else last."""
    best_width: tuple[float, str] | None = None
    best_density: tuple[float, str] | None = None
    last = None
    for url, descriptor in parse_srcset(srcset):
        last = url
        size = descriptor.split()[0] if descriptor else "1x"
        try:
            number = float(size[:-1])
        except ValueError:
            continue
        if size.endswith("w") and (best_width is None or number > best_width[0]):
            best_width = (number, url)
        elif size.endswith("x") and (best_density is None or number >= best_density[0]):
            best_density = (number, url)
    if best_width:
        return best_width[1]
    if best_density:
        return best_density[1]
    return last


class _ImageCollector(HTMLParser):
    def __init__(self, *, url: str | None, errors: ErrorLog) -> None:
        super().__init__(convert_charrefs=True)
        self.base = url
        self.base_seen = False
        self.errors = errors
        self.images: list[str] = []
        self.in_picture = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("img", "source", "meta", "base", "picture"):
            return
        values = {name: value for name, value in attrs if value is not None}
        if tag == "img":
            self._add(self._element_image(values))
        elif tag == "source" and self.in_picture:
            srcset = values.get("data-srcset") or values.get("srcset")
            self._add(largest_candidate(srcset) if srcset else None)
        elif tag == "meta":
            if (values.get("property") or values.get("name") or "").lower() in _OG_IMAGE:
                self._add(values.get("content"))
        elif tag == "picture":
            self.in_picture += 1
        elif tag == "base" and not self.base_seen and values.get("href"):
            self.base_seen = True
            try:
                self.base = clean_url(values["href"], self.base)
            except ValueError as exc:
                self.errors.add(f"<base href>: {exc}: {shorten(values['href'])}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "picture" and self.in_picture:
            self.in_picture -= 1

    @staticmethod
    def _element_image(values: dict[str, str]) -> str | None:
        # The largest responsive candidate, else the lazy-loaded source (src is often a placeholder).
        for name in ("data-srcset", "srcset"):
            if values.get(name, "").strip():
                return largest_candidate(values[name])
        for name in _LAZY_SOURCES:
            if values.get(name, "").strip():
                return values[name]
        return values.get("src")

    def _add(self, raw: str | None) -> None:
        if not raw or not raw.strip() or raw.lstrip()[:5].lower() == "data:":
            return
        try:
            self.images.append(clean_url(raw, self.base))
        except ValueError as exc:
            self.errors.add(f"image {exc}: {shorten(raw)}")


def _codec(head: bytes) -> codecs.CodecInfo:
    match = _META_CHARSET.search(head[:4096])
    if match:
        try:
            return codecs.lookup(match[1].decode("ascii"))
        except LookupError:
            pass
    return codecs.lookup("utf-8")


def read_page(chunks: Iterable[bytes], *, url: str | None, max_images_per_page: int, errors: ErrorLog) -> Page:
    """One Page for the product page at ``url`` with its images in page order, de-duplicated.

    Collected: ``img`` (largest ``srcset``/``data-srcset`` candidate, else ``data-src``/``data-lazy-src``,
    else ``src``), ``picture > source[srcset]``, ``meta[property=og:image]``; resolved against ``url`` and
    ``<base href>``; http(s) only. Only the first MAX_HTML_BYTES are read.
    """
    collector = _ImageCollector(url=url, errors=errors)
    decoder = None
    read = 0
    for chunk in chunks:
        if decoder is None:
            decoder = _codec(chunk).incrementaldecoder(errors="replace")
        room = MAX_HTML_BYTES - read
        collector.feed(decoder.decode(chunk[:room]))
        read += min(len(chunk), room)
        if len(chunk) > room:
            errors.add(f"HTML page truncated: only the first {MAX_HTML_BYTES} bytes were read")
            break
    if decoder is not None:
        collector.feed(decoder.decode(b"", final=True))
    collector.close()
    images = list(dict.fromkeys(collector.images))
    loc = ""
    if url:
        try:
            loc = clean_url(url)
        except ValueError as exc:
            errors.add(f"page URL {exc}: {shorten(url)}")
    if len(images) > max_images_per_page:
        errors.add(f"{loc}: {len(images)} images, only the first {max_images_per_page} kept")
        images = images[:max_images_per_page]
    return Page(loc=loc, images=images)
