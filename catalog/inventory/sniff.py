"""Incremental gzip inflation with a size cap, and detection of a document's kind from its first bytes."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Literal

from .types import InventoryRefused
from .values import ErrorLog, clean_url, shorten

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
CHUNK_SIZE = 64 * 1024
HEAD_SIZE = 64 * 1024

Sniffed = Literal["xml", "feed", "page", "robots", "text"]

_PROLOG = re.compile(rb"(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE\s[^>\[]*(?:\[.*?\])?\s*>)*", re.S | re.I)
_ELEMENT = re.compile(rb"<([A-Za-z_][\w:.-]*)")
_HTML_DOCTYPE = re.compile(rb"<!DOCTYPE\s+html", re.I)
_HTML_ROOTS = frozenset({"html", "head", "body"})
# Where an XML document really starts after junk a server printed first (a PHP warning, a BOM, blank lines): its
# declaration, else the root element of a sitemap, index or feed.
_XML_START = re.compile(rb"<\?xml\s+version\s*=|<(?:[A-Za-z_][\w.-]*:)?(?:urlset|sitemapindex|rss|feed|RDF)[\s>]")
_HTML_MARKERS = re.compile(rb"<(?:!DOCTYPE\s+html|html|head|body)[\s>]", re.I)
_ROBOTS_LINE = re.compile(r"^[ \t]*(?:user-agent|disallow|allow|site-?map|crawl-delay)[ \t]*:", re.I | re.M)


def _pieces(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The non-empty chunks, cut to at most CHUNK_SIZE bytes so every consumer works in bounded steps."""
    for chunk in chunks:
        if len(chunk) <= CHUNK_SIZE:
            if chunk:
                yield bytes(chunk)
            continue
        view = memoryview(chunk)
        for start in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[start : start + CHUNK_SIZE])


def inflate(chunks: Iterable[bytes], *, max_bytes: int, errors: ErrorLog) -> Iterator[bytes]:
    """Yield the document's bytes, gunzipped when it starts with the gzip magic bytes.

    Raises InventoryRefused as soon as more than ``max_bytes`` would be produced, so an inflation
    bomb costs at most ``max_bytes`` of work and CHUNK_SIZE of memory at a time.
    """
    pieces = _pieces(chunks)
    first = b""
    for piece in pieces:
        first += piece
        if len(first) >= len(GZIP_MAGIC):
            break
    if first.startswith(GZIP_MAGIC):
        yield from _gunzip(chain([first], pieces), max_bytes=max_bytes, errors=errors)
        return
    total = 0
    for piece in chain([first] if first else [], pieces):
        total += len(piece)
        if total > max_bytes:
            raise InventoryRefused(f"document size exceeds {max_bytes} bytes")
        yield piece


def _gunzip(pieces: Iterator[bytes], *, max_bytes: int, errors: ErrorLog) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total = 0
    for piece in pieces:
        data = piece
        while True:
            if decompressor.eof:
                data = decompressor.unused_data + data
                if not data.startswith(GZIP_MAGIC):
                    # Trailing bytes after the last gzip member: not part of the document.
                    return
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = decompressor.decompress(data, CHUNK_SIZE)
            except zlib.error as exc:
                errors.add(f"gzip error after {total} inflated bytes: {exc}")
                return
            total += len(out)
            if total > max_bytes:
                raise InventoryRefused(f"gzip inflated size exceeds {max_bytes} bytes")
            if out:
                yield out
            data = decompressor.unconsumed_tail
            if decompressor.eof:
                if decompressor.unused_data:
                    continue
                break
            if not data and len(out) < CHUNK_SIZE:
                break
    if not decompressor.eof:
        errors.add(f"gzip stream truncated after {total} inflated bytes")


def read_head(stream: Iterator[bytes]) -> bytes:
    """The stream's first bytes without BOM and leading whitespace (HEAD_SIZE of them unless shorter)."""
    head = b""
    for piece in stream:
        head += piece
        head = head.removeprefix(UTF8_BOM).lstrip()
        if len(head) >= HEAD_SIZE:
            break
    return head


def skip_junk(head: bytes, *, warnings: ErrorLog) -> bytes:
    """``head`` from where its XML starts, when junk comes before it; each skip a warning.

    The junk is what no XML document may start with: anything before the XML declaration, or before a sitemap's or
    feed's root element other than XML's own prolog (comments, processing instructions, a DOCTYPE). A head that is
    a JSON feed, or an HTML page (which may well mention "<?xml" or "<rss" in its text), is left as it is.
    """
    if head.startswith((b"<?xml", b"{")):
        return head
    start = _XML_START.search(head)
    if start is None or start.start() == 0:
        return head
    junk = head[: start.start()]
    if _HTML_MARKERS.search(junk):
        return head
    if not start[0].startswith(b"<?xml"):
        prolog = _PROLOG.match(junk)
        if prolog and prolog.end() == len(junk):
            return head
    shown = junk.decode("utf-8", errors="replace").strip()
    warnings.add(f"skipped {len(junk)} bytes before the XML began: {shorten(shown)}")
    return head[start.start() :]


def sniff(head: bytes, *, url: str | None, complete: bool) -> Sniffed:
    """Decide how to read a document from its first bytes (``complete`` when the head is all of it)."""
    if not head:
        raise InventoryRefused("empty document")
    if head.startswith(b"{"):
        return "feed"
    if head.startswith(b"<"):
        prolog = _PROLOG.match(head)
        end = prolog.end() if prolog else 0
        if _HTML_DOCTYPE.search(head, 0, end):
            return "page"
        element = _ELEMENT.match(head, end)
        if element and element[1].decode("ascii").rpartition(":")[2].lower() in _HTML_ROOTS:
            return "page"
        return "xml"
    text = head.decode("utf-8", errors="replace")
    if _ROBOTS_LINE.search(text) or (url and url.split("?")[0].lower().endswith("/robots.txt")):
        return "robots"
    lines = text.splitlines()
    if not complete and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut in the middle
    for line in lines:
        # One URL line makes a text sitemap, however many comment or junk lines surround it: the reader
        # records the junk (as an error when it outnumbers the URLs, so nothing is marked gone on it).
        try:
            clean_url(line)
        except ValueError:
            continue
        return "text"
    raise InventoryRefused("not a sitemap, feed, robots.txt or HTML page")
