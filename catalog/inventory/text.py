"""Plain-text sitemaps (one URL per line) and robots.txt ``Sitemap:`` lines."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

from .types import Page
from .values import ErrorLog, clean_url, shorten

MAX_LINE = 64 * 1024


def iter_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decode UTF-8 (invalid bytes replaced) and yield lines incrementally."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk)
        lines = pending.splitlines(keepends=True)
        pending = lines.pop() if lines and not lines[-1].endswith(("\n", "\r")) else ""
        yield from lines
        if len(pending) > MAX_LINE:
            # A line this long is junk anyway; hand it over rather than re-splitting it forever.
            yield pending
            pending = ""
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def read_text_sitemap(chunks: Iterable[bytes], *, errors: ErrorLog) -> list[Page]:
    """Every line that is an absolute http(s) URL becomes a Page; other non-blank lines are counted."""
    pages: list[Page] = []
    skipped = 0
    first_skipped = ""
    for line in iter_lines(chunks):
        raw = line.strip()
        if not raw:
            continue
        try:
            pages.append(Page(loc=clean_url(raw), images=[]))
        except ValueError:
            skipped += 1
            first_skipped = first_skipped or raw
    if skipped:
        errors.add(f"{skipped} lines skipped: not http(s) URLs (first: {shorten(first_skipped)})")
    return pages


def read_robots(chunks: Iterable[bytes], *, url: str | None, errors: ErrorLog) -> list[str]:
    """The ``Sitemap:`` URLs of a robots.txt (any case, anywhere in the file), in order, de-duplicated."""
    sitemaps: dict[str, None] = {}
    for line in iter_lines(chunks):
        field, sep, value = line.partition(":")
        if not sep or field.strip().lower() != "sitemap":
            continue
        value = value.split(" #")[0].strip()
        try:
            sitemaps[clean_url(value, url)] = None
        except ValueError as exc:
            errors.add(f"robots.txt Sitemap line: {exc}: {shorten(value)}")
    return list(sitemaps)
