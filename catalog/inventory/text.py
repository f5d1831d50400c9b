"""Plain-text sitemaps (one URL per line) and robots.txt ``Sitemap:`` lines."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

from .repair import BYTES_HANDLER, CharFixer
from .types import Page
from .values import ErrorLog, clean_url, shorten

MAX_LINE = 64 * 1024
_SITEMAP_FIELDS = frozenset({"sitemap", "site-map"})


def iter_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decode UTF-8 and yield lines incrementally; a byte that is not UTF-8 comes out as U+DC00 + byte."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors=BYTES_HANDLER)
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


def _has_bad_bytes(line: str) -> bool:
    return any(0xDC00 <= ord(char) <= 0xDCFF for char in line)


def read_text_sitemap(chunks: Iterable[bytes], *, errors: ErrorLog, warnings: ErrorLog | None = None) -> list[Page]:
    """Every line that is an absolute http(s) URL becomes a Page; comment lines (``#``) are ignored.

    Other non-blank lines are skipped and counted: a warning, or an error when they are at least as many as
    the URLs (an error page that happens to hold a link must not pass for the whole inventory).
    """
    warnings = warnings if warnings is not None else ErrorLog()
    fixer = CharFixer(warnings)
    pages: list[Page] = []
    skipped = 0
    first_skipped = ""
    for line in iter_lines(chunks):
        raw = fixer.fix(line).strip()
        if not raw or raw.startswith("#"):
            continue
        try:
            pages.append(Page(loc=clean_url(raw), images=[]))
        except ValueError:
            skipped += 1
            first_skipped = first_skipped or raw
    if skipped:
        message = f"{skipped} lines skipped: not http(s) URLs (first: {shorten(first_skipped)})"
        (errors if skipped >= len(pages) else warnings).add(message)
    return pages


def read_robots(chunks: Iterable[bytes], *, url: str | None, errors: ErrorLog) -> list[str]:
    """The ``Sitemap:`` (or ``Site-map:``) URLs of a robots.txt, any case, anywhere, in order, de-duplicated.

    A Sitemap line with bytes that are not UTF-8 names no URL we could trust: it is skipped and recorded as
    an error, so the sitemap it meant is never taken as gone.
    """
    sitemaps: dict[str, None] = {}
    for number, line in enumerate(iter_lines(chunks), start=1):
        field, sep, value = line.partition(":")
        if not sep or field.strip().lower() not in _SITEMAP_FIELDS:
            continue
        value = value.split(" #")[0].strip()
        if _has_bad_bytes(value):
            shown = value.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            errors.add(f"robots.txt line {number}: Sitemap URL is not valid UTF-8, skipped: {shorten(shown)}")
            continue
        try:
            sitemaps[clean_url(value, url)] = None
        except ValueError as exc:
            errors.add(f"robots.txt Sitemap line: {exc}: {shorten(value)}")
    return list(sitemaps)
