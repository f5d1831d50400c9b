import gzip
import json

import pytest

from catalog.inventory import FEED_FORMAT_DOC, FeedInvalid, InventoryRefused, Kind, parse_feed, read_inventory


def _feed(**overrides):
    feed = {
        "format": "imagetagger-feed/1",
        "scrape_id": "scrape-42",
        "finished_at": "2024-05-01T10:00:00Z",
        "listings": [
            {
                "external_id": "VIN123",
                "url": "https://dealer.example/cars/123",
                "title": "2021 Ford F-150",
                "images": ["https://cdn.example/123/1.jpg", "https://cdn.example/123/2.jpg"],
                "attributes": {"color": "Red", "make": "Ford"},
            },
            {"external_id": "VIN456", "url": "https://dealer.example/cars/456", "images": []},
        ],
        "scraper_version": "unknown keys are fine",
    }
    feed.update(overrides)
    return feed


def test_valid_feed():
    inventory = parse_feed(_feed())

    assert inventory.kind is Kind.FEED
    assert inventory.errors == []
    first, second = inventory.pages
    assert first.external_id == "VIN123"
    assert first.loc == "https://dealer.example/cars/123"
    assert first.title == "2021 Ford F-150"
    assert first.images == ["https://cdn.example/123/1.jpg", "https://cdn.example/123/2.jpg"]
    assert first.attributes == {"color": "Red", "make": "Ford"}
    assert (second.external_id, second.images, second.title, second.attributes) == ("VIN456", [], "", {})


def test_feed_from_bytes_str_and_read_inventory_gzipped():
    raw = json.dumps(_feed()).encode()

    assert len(parse_feed(raw).pages) == 2
    assert len(parse_feed(raw.decode()).pages) == 2
    inventory = read_inventory([gzip.compress(raw)])
    assert inventory.kind is Kind.FEED
    assert inventory.pages[0].attributes["color"] == "Red"


def test_invalid_feed_lists_every_problem_with_its_path():
    feed = _feed(
        finished_at="last tuesday",
        listings=[
            {"external_id": "A", "url": "https://d.example/a", "images": ["https://c.example/1.jpg"]},
            {"external_id": "A", "url": "ftp://d.example/b", "images": "https://c.example/2.jpg"},
            "not an object",
            {"url": "https://d.example/d", "images": ["https://c.example/ok.jpg", "javascript:x", 7]},
            {"external_id": "E", "images": [], "attributes": {"color": 3, "make": "Ford"}, "title": 9},
        ],
    )
    del feed["format"]

    with pytest.raises(FeedInvalid) as caught:
        parse_feed(feed)

    assert caught.value.errors == [
        "format: required (expected 'imagetagger-feed/1')",
        "finished_at: not an ISO 8601 date-time",
        "listings[1].external_id: duplicate of listings[0]",
        "listings[1].url: unsupported scheme 'ftp' (only http and https)",
        "listings[1].images: must be an array",
        "listings[2]: must be an object",
        "listings[3].external_id: required",
        "listings[3].images[1]: unsupported scheme 'javascript' (only http and https)",
        "listings[3].images[2]: must be a string (an http(s) URL)",
        "listings[4].url: required",
        "listings[4].attributes.color: must be a string",
        "listings[4].title: must be a string",
    ]
    assert str(caught.value) == "invalid scrape feed: format: required (expected 'imagetagger-feed/1') (and 11 more)"
    assert isinstance(caught.value, InventoryRefused)


def test_wrong_types_at_the_top():
    with pytest.raises(FeedInvalid) as caught:
        parse_feed({"format": "imagetagger-feed/2", "listings": {}, "scrape_id": 5})

    assert caught.value.errors == [
        "format: expected 'imagetagger-feed/1', got 'imagetagger-feed/2'",
        "scrape_id: must be a string",
        "listings: must be an array",
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"{not json", "$: not valid JSON"), ("[1, 2]", "$: must be a JSON object"), ({}, "listings: required")],
)
def test_not_a_feed(data, message):
    with pytest.raises(FeedInvalid) as caught:
        parse_feed(data)

    assert any(error.startswith(message) for error in caught.value.errors)


def test_limits():
    too_many_images = [f"https://c.example/{n}.jpg" for n in range(1001)]
    listings = [{"external_id": "A", "url": "https://d.example/a", "images": too_many_images}]

    with pytest.raises(FeedInvalid) as caught:
        parse_feed(_feed(listings=listings))

    assert caught.value.errors == ["listings[0].images: 1001 images, at most 1000 allowed"]


def test_too_many_listings():
    listing = {"external_id": "A", "url": "https://d.example/a", "images": []}

    with pytest.raises(FeedInvalid) as caught:
        parse_feed(_feed(listings=[listing] * 100_001))

    assert caught.value.errors == ["listings: 100001 listings, at most 100000 allowed"]


def test_errors_capped_at_fifty():
    listings = [{"external_id": str(n), "url": "nope", "images": []} for n in range(80)]

    with pytest.raises(FeedInvalid) as caught:
        parse_feed(_feed(listings=listings))

    assert len(caught.value.errors) == 51
    assert caught.value.errors[49] == "listings[49].url: not an http(s) URL"
    assert caught.value.errors[50] == "... and 30 more problems"


def test_duplicate_images_within_a_listing_are_dropped():
    listings = [{"external_id": "A", "url": "https://d.example/a", "images": ["https://c.example/1.jpg"] * 3}]

    assert parse_feed(_feed(listings=listings)).pages[0].images == ["https://c.example/1.jpg"]


def test_format_doc_describes_the_fields():
    for name in ("imagetagger-feed/1", "external_id", "images", "attributes", "listings[3].images[0]"):
        assert name in FEED_FORMAT_DOC


@pytest.mark.django_db
def test_the_served_schema_validates_what_a_scraper_sends_before_it_posts():
    """GET /api/feed-schema/ answers the schema parse_feed validates with (to any API user, as /api/schema/); a
    scraper checks a feed against it with any JSON Schema library, and what it refuses the POST refuses too."""
    from jsonschema import Draft202012Validator
    from rest_framework.test import APIClient

    from tests.factories import MembershipFactory

    client = APIClient()
    assert client.get("/api/feed-schema/").status_code == 401
    client.force_authenticate(MembershipFactory().user)
    answer = client.get("/api/feed-schema/")
    assert answer.status_code == 200
    schema = answer.json()
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)

    assert list(validator.iter_errors(_feed())) == []
    bad = _feed(listings=[{"external_id": "", "url": 5, "images": ["https://c.example/1.jpg"] * 1001}])
    assert {error.validator for error in validator.iter_errors(bad)} == {"minLength", "type", "maxItems", "pattern"}
    with pytest.raises(FeedInvalid) as caught:
        parse_feed(bad)
    assert caught.value.errors == [
        "listings[0].external_id: must be a non-empty string",
        "listings[0].url: must be a string (an http(s) URL)",
        "listings[0].images: 1001 images, at most 1000 allowed",
    ]
