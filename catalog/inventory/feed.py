"""The scrape feed: JSON the site scraper sends when a scrape finishes."""

from __future__ import annotations

import heapq
import json
import math
import re
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

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
`listings[3].images[0]: not an http(s) URL`. The same rules, as a JSON Schema (draft 2020-12) a scraper can
validate with before it posts: `GET /api/feed-schema/` (what a schema cannot say, the POST checks after it:
http(s) URLs, unique external ids, a date-time that parses).
"""


# The feed's shape as a JSON Schema (draft 2020-12): served at /api/feed-schema/ so that a scraper can validate a feed
# before it posts, and what parse_feed validates first. What a schema cannot say is checked after it, in Python: that
# each URL is an absolute http(s) URL (catalog.inventory.values.clean_url), that external ids are unique, that
# finished_at parses, and that no string under an unknown key holds what a text column cannot store.
_STORABLE = "^[^\\u0000\\ud800-\\udfff]*$"
FEED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": f"Scrape feed ({FEED_FORMAT})",
    "description": "What the site scraper sends when a scrape finishes (README, 'Scrape feed format').",
    "type": "object",
    "required": ["format", "listings"],
    "properties": {
        "format": {"const": FEED_FORMAT},
        "scrape_id": {"type": "string", "pattern": _STORABLE},
        "finished_at": {"type": "string", "description": "An ISO 8601 date-time.", "pattern": _STORABLE},
        "listings": {"type": "array", "maxItems": MAX_LISTINGS, "items": {"$ref": "#/$defs/listing"}},
    },
    "$defs": {
        "url": {
            "type": "string",
            "pattern": _STORABLE,
            "description": "An absolute http or https URL (at most 2048 characters).",
        },
        "listing": {
            "type": "object",
            "required": ["external_id", "url", "images"],
            "properties": {
                "external_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ID_LENGTH,
                    "pattern": "^[^\\u0000\\ud800-\\udfff]*[^\\s\\u0000\\ud800-\\udfff][^\\u0000\\ud800-\\udfff]*$",
                    "description": "Unique within the feed.",
                },
                "url": {"$ref": "#/$defs/url"},
                "images": {
                    "type": "array",
                    "maxItems": MAX_IMAGES_PER_LISTING,
                    "items": {"$ref": "#/$defs/url"},
                    "description": "In display order; repeats are dropped.",
                },
                "attributes": {
                    "type": "object",
                    "maxProperties": MAX_ATTRIBUTES,
                    "propertyNames": {"pattern": _STORABLE},
                    "additionalProperties": {"type": "string", "maxLength": MAX_ATTRIBUTE_LENGTH, "pattern": _STORABLE},
                },
                "title": {"type": "string", "pattern": _STORABLE},
            },
        },
    },
}
_VALIDATOR = Draft202012Validator(FEED_SCHEMA)
_TYPE_NAMES = {"string": "a string", "array": "an array", "object": "an object"}
# Problems are listed in the document's order: the root's unknown keys, then its fields, then each listing's.
_ROOT_ORDER = {"format": 1, "scrape_id": 2, "finished_at": 3, "listings": 4}
_LISTING_ORDER = {"external_id": 0, "url": 1, "images": 2, "attributes": 3, "title": 4}

Path = tuple[str | int, ...]


def _path_text(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "$"


def _order(path: Path) -> tuple[object, ...]:
    """Where a problem at this path stands in the document (the sort key of the list of problems)."""
    key: list[object] = []
    for depth, part in enumerate(path):
        if isinstance(part, int):
            key.append((0, part, ""))
        elif depth == 0:
            key.append((_ROOT_ORDER.get(part, 0), 0, part))
        elif depth == 2:  # a listing's field: listings[i].<field>
            key.append((_LISTING_ORDER.get(part, 5), 0, part))
        else:
            key.append((0, 0, part))
    return tuple(key)


class _Largest:
    """A heap entry ordered backwards: the heap's top is the problem that comes last, the first to drop."""

    def __init__(self, value: tuple[tuple[object, ...], int, str]) -> None:
        self.value = value

    def __lt__(self, other: _Largest) -> bool:
        return self.value[:2] > other.value[:2]


class _Problems:
    """Every problem's message (once), in document order; the first MAX_FEED_ERRORS kept."""

    def __init__(self) -> None:
        self.found: list[_Largest] = []
        self.last = ""
        self.total = 0

    def add(self, path: Path, message: str) -> None:
        text = f"{_UNSTORABLE.sub('?', _path_text(path))}: {message}"
        if text == self.last:  # two rules of the schema said the same of one value (they come one after the other)
            return
        self.last = text
        self.total += 1
        entry = _Largest((_order(path), self.total, text))
        if len(self.found) < MAX_FEED_ERRORS:
            heapq.heappush(self.found, entry)
        else:
            heapq.heappushpop(self.found, entry)

    def raise_if_any(self) -> None:
        if not self.total:
            return
        messages = [entry.value[2] for entry in sorted(self.found, reverse=True)]
        if self.total > len(messages):
            messages.append(f"... and {self.total - len(messages)} more problems")
        raise FeedInvalid(messages)


def _schema_message(error: ValidationError) -> tuple[Path, str]:
    """A schema error as the feed's problems say it: the JSON path, and what is wrong there in plain words."""
    path: Path = tuple(error.absolute_path)
    kind, value = error.validator, error.instance
    if kind == "required":
        missing = str(error.message).split("'")[1]
        hint = f" (expected {FEED_FORMAT!r})" if missing == "format" else ""
        return (*path, missing), f"required{hint}"
    if kind == "const":
        return path, f"expected {FEED_FORMAT!r}, got {str(value)[:50]!r}"
    if kind == "type" and path and path[-1] == "external_id":
        return path, "must be a non-empty string"
    if kind == "type":
        wanted = _TYPE_NAMES.get(str(error.validator_value), str(error.validator_value))
        urls = error.schema.get("description", "").startswith("An absolute http")
        return path, f"must be {wanted}" + (" (an http(s) URL)" if urls else "")
    if kind == "maxItems":
        what = "images" if path and path[-1] == "images" else "listings"
        return path, f"{len(value)} {what}, at most {error.validator_value} allowed"
    if kind == "maxProperties":
        return path, f"{len(value)} attributes, at most {error.validator_value} allowed"
    if kind == "maxLength":
        return path, f"longer than {error.validator_value} characters"
    if kind in ("minLength", "pattern") and path and path[-1] == "external_id" and not _UNSTORABLE.search(value):
        return path, "must be a non-empty string"
    if kind == "pattern":
        if "propertyNames" in error.relative_schema_path:  # the key itself, named in the path (made printable)
            return (*path, str(value)), f"the key {_HOLDS_UNSTORABLE}"
        return path, _HOLDS_UNSTORABLE
    return path, str(error.message)[:200]


def _url(value: str, path: Path, problems: _Problems) -> str | None:
    try:
        return clean_url(value)
    except ValueError as exc:
        reason = str(exc)
        keep = reason.startswith(("URL longer", "unsupported scheme"))
        problems.add(path, reason if keep else "not an http(s) URL")
        return None


def _listing(
    item: dict[str, Any], path: Path, seen_ids: dict[str, int], problems: _Problems, *, shaped: bool
) -> Page | None:
    """What the schema cannot say about one listing, for each of its fields that has the schema's shape; its Page
    when the whole listing is valid (`shaped`: the schema found nothing wrong in it), else None."""
    problems_before = problems.total
    external_id = item.get("external_id")
    if isinstance(external_id, str) and external_id.strip() and not _UNSTORABLE.search(external_id):
        if external_id in seen_ids:
            problems.add((*path, "external_id"), f"duplicate of listings[{seen_ids[external_id]}]")
        elif len(external_id) <= MAX_ID_LENGTH:
            seen_ids[external_id] = int(path[-1])
    url = item.get("url")
    loc = _url(url, (*path, "url"), problems) if isinstance(url, str) and not _UNSTORABLE.search(url) else None
    raw_images = item.get("images")
    images: list[str | None] = []
    if isinstance(raw_images, list) and len(raw_images) <= MAX_IMAGES_PER_LISTING:
        images = [
            _url(raw, (*path, "images", position), problems)
            if isinstance(raw, str) and not _UNSTORABLE.search(raw)
            else None
            for position, raw in enumerate(raw_images)
        ]
    for key, value in item.items():
        if key not in _LISTING_KEYS:
            _storable(key, value, path, problems)
    if not shaped or problems.total > problems_before or loc is None or not isinstance(external_id, str):
        return None
    return Page(
        loc=loc,
        images=list(dict.fromkeys(image for image in images if image is not None)),
        external_id=external_id,
        title=item.get("title") or "",
        attributes=dict(item.get("attributes") or {}),
    )


def _storable(key: str, value: Any, prefix: Path, problems: _Problems) -> None:
    """Every string under an unknown key (stored with the document as it came), keys included, is one a text column
    can store (PostgreSQL takes no NUL). Walks with a stack: no recursion to exhaust, however deep the document."""
    if _UNSTORABLE.search(key):
        problems.add((*prefix, key), f"the key {_HOLDS_UNSTORABLE}")
        return
    stack: list[tuple[Path, Any]] = [((*prefix, key), value)]  # children pushed in reverse: popped in order
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                problems.add(path, _HOLDS_UNSTORABLE)
        elif isinstance(value, list):
            stack.extend(((*path, index), value[index]) for index in range(len(value) - 1, -1, -1))
        elif isinstance(value, dict):
            for child, item in reversed(value.items()):
                if _UNSTORABLE.search(child):
                    problems.add((*path, child), f"the key {_HOLDS_UNSTORABLE}")
                else:
                    stack.append(((*path, child), item))


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
            _storable(key, value, (), problems)
    invalid: set[Path] = set()  # what the schema refused: not examined further
    for error in _VALIDATOR.iter_errors(data):
        path, message = _schema_message(error)
        problems.add(path, message)
        invalid.add(tuple(error.absolute_path)[:2])
    finished_at = data.get("finished_at")
    if isinstance(finished_at, str) and ("finished_at",) not in invalid and parse_w3c_datetime(finished_at) is None:
        problems.add(("finished_at",), "not an ISO 8601 date-time")

    pages: list[Page] = []
    listings = data.get("listings")
    if isinstance(listings, list) and len(listings) <= MAX_LISTINGS:
        seen_ids: dict[str, int] = {}
        for index, item in enumerate(listings):
            if isinstance(item, dict):
                shaped = ("listings", index) not in invalid
                page = _listing(item, ("listings", index), seen_ids, problems, shaped=shaped)
                if page is not None:
                    pages.append(page)
    problems.raise_if_any()
    return Inventory(kind=Kind.FEED, pages=pages, sitemaps=[], errors=[])
