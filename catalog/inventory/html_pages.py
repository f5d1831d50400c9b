"""Images of a product page (HTML), with the stdlib's tolerant html.parser."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from typing import Any

from .types import Page
from .values import ErrorLog, clean_url, shorten

MAX_HTML_BYTES = 5 * 1024 * 1024

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_OG_IMAGE = frozenset({"og:image", "og:image:url", "og:image:secure_url"})
_LAZY_SOURCES = ("data-src", "data-lazy-src", "data-original")
MAX_JSON_LD_CHARS = 1024 * 1024  # one <script type="application/ld+json"> block
MAX_JSON_LD_NODES = 100_000  # objects and arrays walked in one block
# schema.org's Product and the subtypes shops and dealers use (a Car is a Product and a Vehicle).
PRODUCT_TYPES = frozenset(
    {
        "product",
        "individualproduct",
        "productmodel",
        "productgroup",
        "someproducts",
        "vehicle",
        "car",
        "motorcycle",
        "busorcoach",
        "motorizedbicycle",
    }
)
_MICRODATA_VALUE = ("content", "href", "src", "data-src")


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
    def __init__(self, *, url: str | None, errors: ErrorLog, warnings: ErrorLog) -> None:
        super().__init__(convert_charrefs=True)
        self.base = url
        self.base_seen = False
        self.errors = errors
        self.warnings = warnings
        self.images: list[str] = []
        self.in_picture = 0
        self.json_ld: list[str] | None = None  # the text of the <script type="application/ld+json"> being read
        self.json_ld_blocks = 0
        self.image_object: str | None = None  # the tag of an open microdata image object (itemprop=image itemscope)
        self.image_object_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.image_object is not None and tag == self.image_object:
            self.image_object_depth += 1
        if tag == "script":
            kind = next((value for name, value in attrs if name == "type"), None) or ""
            if kind.strip().lower() == "application/ld+json":
                self.json_ld = []
            return
        values = {name: value for name, value in attrs if value is not None}
        if "itemprop" in values:
            self._microdata(tag, values, scope=any(name == "itemscope" for name, _ in attrs))
        if tag not in ("img", "source", "meta", "base", "picture"):
            return
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
        elif tag == "script" and self.json_ld is not None:
            text, self.json_ld = "".join(self.json_ld), None
            self.json_ld_blocks += 1
            self._json_ld(text)
        elif tag == self.image_object:
            self.image_object_depth -= 1
            if self.image_object_depth <= 0:
                self.image_object = None

    def handle_data(self, data: str) -> None:
        if self.json_ld is not None:
            self.json_ld.append(data)

    def _microdata(self, tag: str, values: dict[str, str], *, scope: bool) -> None:
        """Microdata: an element whose itemprop is ``image`` (a meta's content, a link's href, an img's src), or the
        url / contentUrl of an ImageObject given as ``itemprop="image" itemscope``. An img is read as every img is."""
        props = values["itemprop"].split()
        if "image" in props and scope:
            if self.image_object is None:
                self.image_object, self.image_object_depth = tag, 1
            return
        wanted = "image" in props or (self.image_object is not None and ("contentUrl" in props or "url" in props))
        if not wanted or tag in ("img", "source"):
            return
        self._add(next((values[name] for name in _MICRODATA_VALUE if values.get(name, "").strip()), None))

    def _json_ld(self, text: str) -> None:
        """The images of every Product (or subtype: Car, Vehicle, ...) of a JSON-LD block, wherever it sits: at the
        top, in an array, in ``@graph``, or nested. A block that is not JSON is a warning: it may hold no product."""
        where = f"JSON-LD block {self.json_ld_blocks}"
        text = text.strip().removeprefix("<!--").removesuffix("-->").strip()
        if len(text) > MAX_JSON_LD_CHARS:
            self.errors.add(f"{where}: longer than {MAX_JSON_LD_CHARS} characters, not read")
            return
        try:
            document = json.loads(text, strict=False)  # raw control characters in strings, as browsers allow
        except (ValueError, RecursionError) as exc:
            self.warnings.add(f"{where} is not JSON ({str(exc)[:80]}): skipped")
            return
        nodes = list(_json_nodes(document, MAX_JSON_LD_NODES))
        # Yoast and others give a product's image as {"@id": ...}, naming an ImageObject elsewhere in the graph.
        by_id = {node["@id"]: node for node in nodes if isinstance(node.get("@id"), str) and len(node) > 1}
        for node in nodes:
            if _is_product(node):
                for raw in _json_ld_images(node.get("image"), by_id):
                    self._add(raw)

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


def _json_nodes(document: Any, limit: int) -> Iterator[dict[str, Any]]:
    """The objects of a JSON document, depth first in document order, at most ``limit`` containers (no recursion:
    a block nested thousands deep is walked like any other)."""
    stack: list[Any] = [document]
    walked = 0
    while stack and walked < limit:
        value = stack.pop()
        if isinstance(value, dict):
            walked += 1
            yield value
            stack.extend(reversed([child for child in value.values() if isinstance(child, dict | list)]))
        elif isinstance(value, list):
            walked += 1
            stack.extend(reversed([child for child in value if isinstance(child, dict | list)]))


def _is_product(node: dict[str, Any]) -> bool:
    types = node.get("@type")
    for kind in types if isinstance(types, list) else [types]:
        if isinstance(kind, str) and kind.rpartition("/")[2].rpartition(":")[2].lower() in PRODUCT_TYPES:
            return True
    return False


def _json_ld_images(value: Any, by_id: dict[str, dict[str, Any]]) -> Iterator[str]:
    """A schema.org ``image``: a URL, an ImageObject (its ``contentUrl`` or ``url``, or the one its ``@id`` names),
    or a list of them."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            ref = item.get("@id")
            named = by_id.get(ref) if isinstance(ref, str) and len(item) == 1 else None
            image = named if named is not None else item
            for key in ("contentUrl", "url"):
                found = image.get(key)
                if isinstance(found, str) and found.strip():
                    yield found
                    break


def _codec(head: bytes) -> codecs.CodecInfo:
    match = _META_CHARSET.search(head[:4096])
    if match:
        try:
            return codecs.lookup(match[1].decode("ascii"))
        except LookupError:
            pass
    return codecs.lookup("utf-8")


def read_page(
    chunks: Iterable[bytes],
    *,
    url: str | None,
    max_images_per_page: int,
    errors: ErrorLog,
    warnings: ErrorLog | None = None,
) -> Page:
    """One Page for the product page at ``url`` with its images in page order, de-duplicated.

    Collected: ``img`` (largest ``srcset``/``data-srcset`` candidate, else ``data-src``/``data-lazy-src``,
    else ``src``), ``picture > source[srcset]``, ``meta[property=og:image]``, the ``image`` of every Product
    (Car, Vehicle, ...) in JSON-LD, and microdata ``itemprop="image"``; resolved against ``url`` and
    ``<base href>``; http(s) only. Only the first MAX_HTML_BYTES are read.
    """
    collector = _ImageCollector(url=url, errors=errors, warnings=warnings if warnings is not None else ErrorLog())
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
