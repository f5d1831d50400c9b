"""The scrape feed: JSON the site scraper sends when a scrape finishes."""

from __future__ import annotations

import json
from typing import Any

from .types import FeedInvalid, Inventory, Kind, Page
from .values import clean_url, parse_w3c_datetime

FEED_FORMAT = "imagetagger-feed/1"
MAX_LISTINGS = 100_000
MAX_IMAGES_PER_LISTING = 1000
MAX_FEED_ERRORS = 50
MAX_ID_LENGTH = 255

FEED_FORMAT_DOC = f"""\
### Scrape feed format (`{FEED_FORMAT}`)

When a scrape finishes, the site scraper sends one JSON object (UTF-8, optionally gzipped):

```json
{{
  "format": "{FEED_FORMAT}",
  "scrape_id": "2024-05-01-dealer-42",
  "finished_at": "2024-05-01T10:00:00Z",
  "listings": [
    {{
      "external_id": "VIN123",
      "url": "https://dealer.example/cars/123",
      "title": "2021 Ford F-150",
      "images": ["https://cdn.example/123/1.jpg", "https://cdn.example/123/2.jpg"],
      "attributes": {{"color": "Red", "make": "Ford"}}
    }}
  ]
}}
```

| Field | Required | Rules |
|---|---|---|
| `format` | yes | exactly `"{FEED_FORMAT}"` |
| `scrape_id` | no | string |
| `finished_at` | no | ISO 8601 date-time string |
| `listings` | yes | array of at most {MAX_LISTINGS:,} listings (may be empty) |
| `listings[].external_id` | yes | non-empty string of at most {MAX_ID_LENGTH} characters, \
unique within the feed |
| `listings[].url` | yes | absolute `http`/`https` URL of the listing page (at most 2048 characters) |
| `listings[].title` | no | string |
| `listings[].images` | yes | array of at most {MAX_IMAGES_PER_LISTING} absolute `http`/`https` image URLs, \
in display order; repeats are dropped |
| `listings[].attributes` | no | object whose values are strings, e.g. `{{"color": "Red"}}` |

Unknown keys are ignored, so the scraper may send more. A feed with any problem is rejected as a
whole; the error lists every problem (up to {MAX_FEED_ERRORS}) with its JSON path, for example
`listings[3].images[0]: not an http(s) URL`.
"""


class _Problems:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.total = 0

    def add(self, path: str, message: str) -> None:
        self.total += 1
        if len(self.messages) < MAX_FEED_ERRORS:
            self.messages.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if not self.total:
            return
        messages = list(self.messages)
        if self.total > len(messages):
            messages.append(f"... and {self.total - len(messages)} more problems")
        raise FeedInvalid(messages)


def _optional_string(obj: dict[str, Any], key: str, path: str, problems: _Problems) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.add(f"{path}{key}", "must be a string")
        return ""
    return value


def _url(value: Any, path: str, problems: _Problems) -> str | None:
    if not isinstance(value, str):
        problems.add(path, "must be a string (an http(s) URL)")
        return None
    try:
        return clean_url(value)
    except ValueError as exc:
        reason = str(exc)
        keep = reason.startswith(("URL longer", "unsupported scheme"))
        problems.add(path, reason if keep else "not an http(s) URL")
        return None


def _listing(item: Any, path: str, seen_ids: dict[str, int], index: int, problems: _Problems) -> Page | None:
    """Check one listing; return its Page, or None when it has a problem (recorded in ``problems``)."""
    if not isinstance(item, dict):
        problems.add(path, "must be an object")
        return None
    problems_before = problems.total
    external_id = item.get("external_id")
    if external_id is None:
        problems.add(f"{path}.external_id", "required")
    elif not isinstance(external_id, str) or not external_id.strip():
        problems.add(f"{path}.external_id", "must be a non-empty string")
    elif len(external_id) > MAX_ID_LENGTH:
        problems.add(f"{path}.external_id", f"longer than {MAX_ID_LENGTH} characters")
    elif external_id in seen_ids:
        problems.add(f"{path}.external_id", f"duplicate of listings[{seen_ids[external_id]}]")
    else:
        seen_ids[external_id] = index

    loc = _url(item["url"], f"{path}.url", problems) if "url" in item else None
    if "url" not in item:
        problems.add(f"{path}.url", "required")

    images: list[str] = []
    raw_images = item.get("images")
    if raw_images is None:
        problems.add(f"{path}.images", "required")
    elif not isinstance(raw_images, list):
        problems.add(f"{path}.images", "must be an array")
    elif len(raw_images) > MAX_IMAGES_PER_LISTING:
        problems.add(f"{path}.images", f"{len(raw_images)} images, at most {MAX_IMAGES_PER_LISTING} allowed")
    else:
        for position, raw in enumerate(raw_images):
            image = _url(raw, f"{path}.images[{position}]", problems)
            if image is not None:
                images.append(image)

    attributes: dict[str, str] = {}
    raw_attributes = item.get("attributes")
    if raw_attributes is not None and not isinstance(raw_attributes, dict):
        problems.add(f"{path}.attributes", "must be an object")
    elif raw_attributes:
        for key, value in raw_attributes.items():
            if isinstance(value, str):
                attributes[key] = value
            else:
                problems.add(f"{path}.attributes.{key}", "must be a string")

    title = _optional_string(item, "title", f"{path}.", problems)
    if problems.total > problems_before or loc is None or not isinstance(external_id, str):
        return None
    return Page(
        loc=loc,
        images=list(dict.fromkeys(images)),
        external_id=external_id,
        title=title,
        attributes=attributes,
    )


def parse_feed(data: bytes | str | dict[str, Any]) -> Inventory:
    """Validate a scrape feed (see FEED_FORMAT_DOC) and return it as an Inventory of kind FEED.

    Raises FeedInvalid listing every problem with its JSON path; nothing is returned for a partly valid feed.
    """
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise FeedInvalid([f"$: not valid JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise FeedInvalid(["$: must be a JSON object"])

    problems = _Problems()
    if "format" not in data:
        problems.add("format", f"required (expected {FEED_FORMAT!r})")
    elif data["format"] != FEED_FORMAT:
        problems.add("format", f"expected {FEED_FORMAT!r}, got {str(data['format'])[:50]!r}")
    _optional_string(data, "scrape_id", "", problems)
    finished_at = _optional_string(data, "finished_at", "", problems)
    if finished_at and parse_w3c_datetime(finished_at) is None:
        problems.add("finished_at", "not an ISO 8601 date-time")

    pages: list[Page] = []
    listings = data.get("listings")
    if listings is None:
        problems.add("listings", "required")
    elif not isinstance(listings, list):
        problems.add("listings", "must be an array")
    elif len(listings) > MAX_LISTINGS:
        problems.add("listings", f"{len(listings)} listings, at most {MAX_LISTINGS} allowed")
    else:
        seen_ids: dict[str, int] = {}
        for index, item in enumerate(listings):
            page = _listing(item, f"listings[{index}]", seen_ids, index, problems)
            if page is not None:
                pages.append(page)
    problems.raise_if_any()
    return Inventory(kind=Kind.FEED, pages=pages, sitemaps=[], errors=[])
