"""Result types and errors of the inventory readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.errors import ApplicationError


class InventoryRefused(ApplicationError):
    """Hostile or unreadable input refused as a whole; ``str(exc)`` is a one-line reason."""

    code = "inventory_refused"


class NotAnInventory(InventoryRefused):
    """An HTML page where a sitemap, feed or robots.txt was expected (only a "page" source reads HTML).

    ``final_url`` is where a redirect led, when the document was reached through one.
    """

    code = "not_an_inventory"

    MESSAGE = "expected a sitemap, feed or robots.txt, got an HTML page"

    def __init__(self, *, final_url: str | None = None, detail: str = "") -> None:
        self.final_url = final_url
        notes = [f"redirected to {final_url}"] if final_url else []
        notes += [detail] if detail else []
        super().__init__(f"{self.MESSAGE} ({'; '.join(notes)})" if notes else self.MESSAGE)


class FeedInvalid(InventoryRefused):
    """A scrape feed that fails validation; ``errors`` lists every problem with its JSON path."""

    code = "feed_invalid"

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else "unknown problem"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(f"invalid scrape feed: {first}{more}")

    @property
    def extra(self) -> dict[str, Any]:
        return {"errors": self.errors}


class Kind(StrEnum):
    URLSET = "urlset"
    SITEMAP_INDEX = "sitemapindex"
    TEXT = "text"
    ROBOTS = "robots"
    RSS = "rss"
    ATOM = "atom"
    FEED = "feed"
    PAGE = "page"
    SITE = "site"  # a homepage: its sitemaps were discovered (robots.txt, then the well-known paths)


@dataclass
class Page:
    """One listing (page) of an inventory and the images it shows."""

    loc: str
    images: list[str]
    lastmod: datetime | None = None
    external_id: str = ""
    title: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "loc": self.loc,
            "images": list(self.images),
            "lastmod": self.lastmod.isoformat() if self.lastmod else None,
            "external_id": self.external_id,
            "title": self.title,
            "attributes": dict(self.attributes),
        }


@dataclass
class Inventory:
    """What one document (sitemap, index, feed, robots.txt, page) says about an advertiser's inventory."""

    kind: Kind
    pages: list[Page]
    sitemaps: list[str]
    errors: list[str]
    # Repairs and harmless surprises: the document was read in full despite them (errors mean it was not).
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "pages": [page.to_json() for page in self.pages],
            "sitemaps": list(self.sitemaps),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }
