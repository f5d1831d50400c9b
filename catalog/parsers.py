"""The scrape feed's request body, read by the API itself: up to FEED_MAX_BYTES (not Django's 2.5 MB request cap, so
a feed of 100,000 listings fits), raw or gzipped (`Content-Encoding: gzip`, or gzip's magic bytes), decompressed as
it is read so only the document itself is ever held, once. A body over the bound answers 413 before the rest is read;
a gzip bomb stops at the bound too."""

from __future__ import annotations

import zlib
from typing import IO, Any

from django.conf import settings
from rest_framework.parsers import BaseParser

from catalog.inventory import FeedInvalid, feed_json_load
from config.api_errors import BodyTooLarge

CHUNK = 64 * 1024
GZIP_MAGIC = b"\x1f\x8b"


class UnsupportedEncoding(FeedInvalid):
    code = "unsupported_encoding"
    http_status = 415


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"the feed is larger than {limit / 1024 / 1024:g} MB uncompressed (FEED_MAX_BYTES): split the scrape, "
        "or raise the setting"
    )


def read_body(stream: IO[bytes], *, limit: int, encoding: str = "", declared: int | None = None) -> bytearray:
    """The request body, decompressed, at most `limit` bytes (BodyTooLarge past it). `encoding` is the
    Content-Encoding header (identity or gzip); `declared` the Content-Length, refused at once when over."""
    encoding = encoding.strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise UnsupportedEncoding([f"$: Content-Encoding {encoding!r} is not supported: send gzip or nothing"])
    if declared is not None and declared > limit:
        raise _too_large(limit)
    body = bytearray()
    inflater: Any = None
    first = True
    while chunk := stream.read(CHUNK):
        if first and (encoding in ("gzip", "x-gzip") or chunk.startswith(GZIP_MAGIC)):
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        first = False
        if inflater is None:
            body += chunk
        else:
            try:
                while chunk and len(body) <= limit:
                    body += inflater.decompress(chunk, limit + 1 - len(body))
                    chunk = inflater.unconsumed_tail
            except zlib.error as exc:
                raise FeedInvalid([f"$: not valid gzip: {exc}"]) from None
        if len(body) > limit:
            raise _too_large(limit)
    if inflater is not None and not inflater.eof:
        raise FeedInvalid(["$: the gzip stream is truncated"])
    return body


class FeedParser(BaseParser):
    """application/json for the Run start API: the feed document, read with read_body and checked as JSON by the
    feed's own loader (FeedInvalid: not JSON, or nested too deeply)."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        meta = parser_context["request"].META if parser_context else {}
        try:
            declared: int | None = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = None
        body = read_body(
            stream, limit=settings.FEED_MAX_BYTES, encoding=meta.get("HTTP_CONTENT_ENCODING", ""), declared=declared
        )
        if not body:
            return {}
        return feed_json_load(body)
