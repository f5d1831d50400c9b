"""The scrape feed: JSON the site scraper sends when a scrape finishes."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .types import FeedInvalid, Inventory, Kind, Page
from .values import clean_url, parse_w3c_datetime

FEED_FORMAT = "imagetagger-feed/1"
MAX_LISTINGS = 100_000
MAX_IMAGES_PER_LISTING = 1000
MAX_FEED_ERRORS = 50
MAX_ID_LENGTH = 255
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_LENGTH = 1000
# No text column can store these: a NUL, or half of a UTF-16 surrogate pair (JSON's "\ud800" alone) ...
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_HOLDS_UNSTORABLE = "holds a NUL character or a lone surrogate"
# The fields checked one by one; any other key's value is stored with the document as it came, and walked.
_ROOT_KEYS = frozenset({"format", "scrape_id", "finished_at", "listings"})
_LISTING_KEYS = frozenset({"external_id", "url", "title", "images", "attributes"})

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
| `listings[].attributes` | no | object of at most {MAX_ATTRIBUTES} string values of at most \
{MAX_ATTRIBUTE_LENGTH} characters, e.g. `{{"color": "Red"}}` |

Unknown keys are ignored, so the scraper may send more. No string anywhere in the feed may hold a NUL
character (`\\u0000`) or a lone surrogate. A feed with any problem is rejected as a whole; the error
lists every problem (up to {MAX_FEED_ERRORS}) with its JSON path, for example
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
    if _UNSTORABLE.search(value):
        problems.add(f"{path}{key}", _HOLDS_UNSTORABLE)
        return ""
    return value


def _url(value: Any, path: str, problems: _Problems) -> str | None:
    if not isinstance(value, str):
        problems.add(path, "must be a string (an http(s) URL)")
        return None
    if _UNSTORABLE.search(value):
        problems.add(path, _HOLDS_UNSTORABLE)
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
    elif _UNSTORABLE.search(external_id):
        problems.add(f"{path}.external_id", _HOLDS_UNSTORABLE)
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
    elif raw_attributes and len(raw_attributes) > MAX_ATTRIBUTES:
        problems.add(f"{path}.attributes", f"{len(raw_attributes)} attributes, at most {MAX_ATTRIBUTES} allowed")
    elif raw_attributes:
        for key, value in raw_attributes.items():
            if _UNSTORABLE.search(key):
                problems.add(f"{path}.attributes.{_UNSTORABLE.sub('?', key)}", f"the key {_HOLDS_UNSTORABLE}")
            elif not isinstance(value, str):
                problems.add(f"{path}.attributes.{key}", "must be a string")
            elif _UNSTORABLE.search(value):
                problems.add(f"{path}.attributes.{key}", _HOLDS_UNSTORABLE)
            elif len(value) > MAX_ATTRIBUTE_LENGTH:
                problems.add(f"{path}.attributes.{key}", f"longer than {MAX_ATTRIBUTE_LENGTH} characters")
            else:
                attributes[key] = value

    title = _optional_string(item, "title", f"{path}.", problems)
    for key, value in item.items():
        if key not in _LISTING_KEYS:
            _storable(key, value, f"{path}.", problems)
    if problems.total > problems_before or loc is None or not isinstance(external_id, str):
        return None
    return Page(
        loc=loc,
        images=list(dict.fromkeys(images)),
        external_id=external_id,
        title=title,
        attributes=attributes,
    )


def _storable(key: str, value: Any, prefix: str, problems: _Problems) -> None:
    """Every string under an unknown key (stored with the document as it came), keys included, is one a text column
    can store (PostgreSQL takes no NUL). Walks with a stack: no recursion to exhaust."""
    if _UNSTORABLE.search(key):
        problems.add(_UNSTORABLE.sub("?", f"{prefix}{key}"), f"the key {_HOLDS_UNSTORABLE}")
        return
    stack: list[tuple[str, Any]] = [(f"{prefix}{key}", value)]  # children pushed in reverse: popped in order
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                problems.add(path, _HOLDS_UNSTORABLE)
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", value[index]) for index in range(len(value) - 1, -1, -1))
        elif isinstance(value, dict):
            for child, item in reversed(value.items()):
                if _UNSTORABLE.search(child):
                    problems.add(_UNSTORABLE.sub("?", f"{path}.{child}"), f"the key {_HOLDS_UNSTORABLE}")
                else:
                    stack.append((f"{path}.{child}", item))


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def feed_json_load(data: bytes | bytearray | str) -> dict[str, Any]:
    """The feed document of a JSON text, or FeedInvalid: not JSON (NaN and numbers out of a float's range included:
    a stored document could not be read back), nested too deeply for the parser, or not an object."""
    try:
        document = json.loads(data, parse_float=_finite, parse_constant=_refuse_constant)
    except RecursionError:
        raise FeedInvalid(["$: nested too deeply for a JSON parser"]) from None
    except ValueError as exc:
        raise FeedInvalid([f"$: not valid JSON: {exc}"]) from None
    if not isinstance(document, dict):
        raise FeedInvalid(["$: must be a JSON object"])
    return document


def parse_feed(data: bytes | str | dict[str, Any]) -> Inventory:
    """Validate a scrape feed (see FEED_FORMAT_DOC) and return it as an Inventory of kind FEED.

    Raises FeedInvalid listing every problem with its JSON path; nothing is returned for a partly valid feed.
    """
    if isinstance(data, bytes | str):
        data = feed_json_load(data)
    if not isinstance(data, dict):
        raise FeedInvalid(["$: must be a JSON object"])

    problems = _Problems()
    for key, value in data.items():
        if key not in _ROOT_KEYS:
            _storable(key, value, "", problems)
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
