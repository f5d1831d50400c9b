"""Small value checks shared by the readers: URLs, W3C / RFC 822 dates, a bounded error log."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

from catalog.fetching.addresses import unsupported_scheme

MAX_URL_LENGTH = 2048
MAX_ERRORS = 1000

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_YEAR_MONTH = re.compile(r"(\d{4})(?:-(\d{2}))?")


class ErrorLog:
    """Collects non-fatal problems, keeping at most ``limit`` messages so a broken feed stays small."""

    def __init__(self, limit: int = MAX_ERRORS) -> None:
        self.limit = limit
        self.messages: list[str] = []
        self.omitted = 0

    def add(self, message: str) -> None:
        if len(self.messages) < self.limit:
            self.messages.append(message)
        else:
            self.omitted += 1

    def as_list(self, what: str = "errors") -> list[str]:
        if self.omitted:
            return [*self.messages, f"... and {self.omitted} more {what}"]
        return list(self.messages)


def shorten(value: str, limit: int = 100) -> str:
    """``repr`` of a value cut to ``limit`` characters, for error messages."""
    if len(value) > limit:
        value = value[:limit] + "..."
    return repr(value)


def clean_url(raw: str, base: str | None = None) -> str:
    """Return ``raw`` as an absolute http(s) URL, resolved against ``base``; raise ValueError otherwise."""
    url = raw.strip()
    if not url:
        raise ValueError("empty URL")
    if not url.startswith(("https://", "http://")):
        head = url[:8].lower()
        if head.startswith(("https://", "http://")):
            scheme, _, rest = url.partition(":")
            url = f"{scheme.lower()}:{rest}"
        elif (found := _SCHEME.match(url)) and not url.startswith("//"):
            raise ValueError(unsupported_scheme(found[0][:-1]))
        elif base:
            url = urljoin(base, url)
            if not url.startswith(("https://", "http://")):
                raise ValueError("not an http(s) URL")
        else:
            raise ValueError("relative URL without a base URL")
    host_at = url.index("//") + 2
    if host_at >= len(url) or url[host_at] in "/?#":
        raise ValueError("URL without a host")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"URL longer than {MAX_URL_LENGTH} characters")
    return url


def parse_w3c_datetime(raw: str) -> datetime | None:
    """Parse a W3C datetime (``2024``, ``2024-05``, ``2024-05-01``, ``2024-05-01T10:00:00+02:00``).

    Naive values are taken as UTC; anything unparsable gives None.
    """
    text = raw.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        match = _YEAR_MONTH.fullmatch(text)
        if not match:
            return None
        try:
            value = datetime(int(match[1]), int(match[2] or 1), 1, tzinfo=UTC)
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def parse_feed_datetime(raw: str) -> datetime | None:
    """Parse an RSS (RFC 822) or Atom (RFC 3339) date; None when unparsable."""
    value = parse_w3c_datetime(raw)
    if value is not None:
        return value
    try:
        value = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def resolve_page_images(urls: list[str], limit: int) -> tuple[list[str], int]:
    """De-duplicate ``urls`` in order and keep at most ``limit``; return (kept, number of dropped)."""
    kept = list(dict.fromkeys(urls))
    if len(kept) > limit:
        return kept[:limit], len(kept) - limit
    return kept, 0
