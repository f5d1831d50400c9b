"""Bad input gets a clear 4xx, JSON under /api/, and nothing is written: NUL characters in filters and feeds, feeds
nested thousands of levels deep, feeds past Django's request cap (raw and gzipped) and past their own bound, free
text without a bound, and Django's own error pages under /api/."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from catalog.models import Membership, Run, Sitemap
from classifier.models import ModelHead, ModelVersion, OcclusionMap
from reviews.models import ManualFix
from tests.factories import ImageAssetFactory, ListingFactory, MembershipFactory, PlacementFactory, SitemapFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def editor():
    """An editor of an advertiser with a feed sitemap and one image, and a client that reports server errors as
    answers (as a real client sees them) instead of raising them."""
    membership = MembershipFactory()
    feed_sitemap = SitemapFactory(advertiser=membership.advertiser, kind=Sitemap.Kind.FEED, url="")
    placement = PlacementFactory(
        listing=ListingFactory(sitemap__advertiser=membership.advertiser), status="ok", asset=ImageAssetFactory()
    )
    token, _ = Token.objects.get_or_create(user=membership.user)
    return membership.user, token.key, feed_sitemap, placement


@pytest.fixture
def api(client, editor):
    client.raise_request_exception = False
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {editor[1]}"
    return client


def _listing(index: int) -> dict[str, object]:
    return {
        "external_id": f"VIN{index}",
        "url": f"https://dealer.example/cars/{index}",
        "title": "2021 Ford F-150",
        "images": [f"https://cdn.example/{index}/1.jpg"],
        "attributes": {"color": "Red"},
    }


def _feed(listings: int) -> dict[str, object]:
    return {"format": "imagetagger-feed/1", "listings": [_listing(index) for index in range(listings)]}


def _assert_json_error(response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    return response.json()


# NUL characters: no text column can store one (PostgreSQL answered 500 DataError).


@pytest.mark.parametrize("query", ["listing=a%00b", "label=a%00", "reason=%00", "task=color&listing=%00"])
def test_a_nul_in_an_api_filter_is_a_400(api, editor, query):
    sitemap_id = editor[3].listing.sitemap_id

    body = _assert_json_error(api.get(f"/api/sitemaps/{sitemap_id}/images/?{query}"), 400)

    assert body["code"] == "nul_character"
    assert "NUL" in body["detail"]


@pytest.mark.parametrize("grid", ["reviews:portal-grid", "reviews:staff-grid"])
@pytest.mark.parametrize("param", ["label", "listing", "reason"])
def test_a_nul_in_a_grid_filter_is_a_400_page(client, editor, admin_user, grid, param):
    client.raise_request_exception = False
    client.force_login(admin_user if grid.startswith("reviews:staff") else editor[0])
    url = reverse(grid, args=[editor[3].listing.sitemap_id])

    response = client.get(url, {"task": "color", param: "Red\x00"})

    assert response.status_code == 400
    assert "NUL character" in response.content.decode()
    assert client.get(url, {"task": "color", param: "Red"}).status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("external_id", "VIN\x001", "listings[0].external_id"),
        ("title", "Ford\x00", "listings[0].title"),
        ("attributes", {"color": "Re\x00d"}, "listings[0].attributes.color"),
        ("images", ["https://cdn.example/1.jpg\x00"], "listings[0].images[0]"),
        ("url", "https://dealer.example/\x00", "listings[0].url"),
        ("extra", {"note": "unknown keys are stored too\x00"}, "listings[0].extra.note"),
        ("title", "half a pair \ud800", "listings[0].title"),
    ],
)
def test_a_nul_anywhere_in_a_feed_is_a_problem_with_its_path_and_no_run(api, editor, field, value, path):
    feed = _feed(1)
    feed["listings"][0][field] = value  # type: ignore[index]
    body = json.dumps(feed)  # NUL as \u0000, as a JSON encoder writes it

    answer = _assert_json_error(
        api.post(f"/api/sitemaps/{editor[2].pk}/runs/", body, content_type="application/json"), 400
    )

    assert answer["code"] == "feed_invalid"
    assert any(error.startswith(f"{path}: ") for error in answer["errors"]), answer["errors"]
    assert not Run.objects.exists()


def test_a_feed_nested_3000_levels_deep_is_a_400_and_no_run(api, editor):
    depth = 3000
    feed = '{"format": "imagetagger-feed/1", "listings": [], "x": ' + "[" * depth + "]" * depth + "}"

    answer = _assert_json_error(
        api.post(f"/api/sitemaps/{editor[2].pk}/runs/", feed, content_type="application/json"), 400
    )

    assert "nested" in answer["errors"][0]
    assert not Run.objects.exists()


@pytest.mark.parametrize("number", ["NaN", "1e400", "-Infinity"])
def test_a_number_a_stored_feed_could_not_hold_is_a_400(api, editor, number):
    feed = '{"format": "imagetagger-feed/1", "listings": [], "price": ' + number + "}"

    answer = _assert_json_error(
        api.post(f"/api/sitemaps/{editor[2].pk}/runs/", feed, content_type="application/json"), 400
    )

    assert answer["errors"][0].startswith("$: not valid JSON")
    assert not Run.objects.exists()


# Size: the README promises 100,000 listings, raw or gzipped.


@pytest.mark.parametrize(("listings", "gzipped"), [(25_000, False), (100_000, True)])
def test_a_feed_past_djangos_request_cap_starts_a_run_raw_or_gzipped(api, editor, listings, gzipped):
    """The README's promise: 100,000 listings (gzipped here; raw, a smaller feed past the cap keeps the test short)."""
    body = json.dumps(_feed(listings)).encode()
    assert len(body) > 2.5 * 1024 * 1024  # past Django's request cap
    headers = {"HTTP_CONTENT_ENCODING": "gzip"} if gzipped else {}

    response = api.post(
        f"/api/sitemaps/{editor[2].pk}/runs/", gzip.compress(body) if gzipped else body,
        content_type="application/json", **headers,
    )  # fmt: skip

    assert response.status_code == 202, response.content[:300]
    run = Run.objects.get()
    assert len(run.feed_document["listings"]) == listings


def test_a_gzipped_feed_is_recognised_by_its_bytes_too(api, editor):
    body = gzip.compress(json.dumps(_feed(2)).encode())

    response = api.post(f"/api/sitemaps/{editor[2].pk}/runs/", body, content_type="application/json")

    assert response.status_code == 202, response.content[:300]


def test_a_feed_over_its_bound_is_a_413_raw_or_inflated_and_no_run(api, editor, settings):
    settings.FEED_MAX_BYTES = 64 * 1024
    raw = json.dumps(_feed(1000)).encode()
    bomb = gzip.compress(b'{"format": "imagetagger-feed/1", "listings": [], "x": "' + b" " * 10_000_000 + b'"}')
    assert len(bomb) < settings.FEED_MAX_BYTES

    for body, headers in ((raw, {}), (bomb, {"HTTP_CONTENT_ENCODING": "gzip"})):
        response = api.post(f"/api/sitemaps/{editor[2].pk}/runs/", body, content_type="application/json", **headers)

        answer = _assert_json_error(response, 413)
        assert answer["code"] == "body_too_large"
        assert "FEED_MAX_BYTES" in answer["detail"]
    assert not Run.objects.exists()


def test_a_broken_gzip_or_another_encoding_is_refused_clearly(api, editor):
    url = f"/api/sitemaps/{editor[2].pk}/runs/"
    truncated = gzip.compress(json.dumps(_feed(50)).encode())[:-100]

    broken = _assert_json_error(
        api.post(url, truncated, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"), 400
    )
    brotli = _assert_json_error(api.post(url, b"{}", content_type="application/json", HTTP_CONTENT_ENCODING="br"), 415)

    assert "gzip" in broken["errors"][0]
    assert "Content-Encoding 'br'" in brotli["detail"]
    assert not Run.objects.exists()


# Free text: fixes are kept forever, so their note has a bound.


def test_a_fix_note_over_2000_characters_is_a_400_and_nothing_is_written(api, editor):
    url = f"/api/images/{editor[3].pk}/fixes/"

    refused = api.post(url, {"task": "color", "label": "Red", "note": "x" * 2_000_000}, content_type="application/json")
    long_enough = api.post(url, {"task": "color", "label": "Red", "note": "x" * 2000}, content_type="application/json")

    assert _assert_json_error(refused, 400)["note"][0].startswith("Ensure this field has no more than 2000")
    assert long_enough.status_code == 201
    assert ManualFix.objects.count() == 1


# Every answer under /api/ is JSON.


def test_a_body_over_the_request_cap_is_a_413_in_json(api, editor):
    body = json.dumps({"task": "color", "label": "Red", "note": "x" * (3 * 1024 * 1024)})

    answer = _assert_json_error(
        api.post(f"/api/images/{editor[3].pk}/fixes/", body, content_type="application/json"), 413
    )

    assert answer["code"] == "body_too_large"
    assert not ManualFix.objects.exists()


def test_a_server_error_under_api_is_json(api, editor, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("reviews.apis.sitemap_grid", broken)

    answer = _assert_json_error(api.get(f"/api/sitemaps/{editor[3].listing.sitemap_id}/images/"), 500)

    assert "a bug" not in answer["detail"]  # internals stay in the log


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("get", "/api/no-such-thing/", 404), ("get", "/api/images/abc/", 404), ("put", "/api/runs/1/", 405)],
)
def test_every_error_under_api_is_json(api, method, path, status):
    _assert_json_error(getattr(api, method)(path), status)


# Roles: asking for an occlusion map is a write.


def test_a_viewer_cannot_ask_for_an_occlusion_map(client):
    """Asking writes a map and queues work: a viewer gets 403 and nothing is written (it answered 500 on a model
    whose contract did not parse, and queued work on any other)."""
    membership = MembershipFactory(role=Membership.Role.VIEWER)
    version = ModelVersion.objects.create(
        name="m", kind="classifier", file="models/m.onnx", sha256=hashlib.sha256(b"m").hexdigest(), contract={},
        status="active",
    )  # fmt: skip
    ModelHead.objects.create(model_version=version, task="color", output="color", labels=[], is_active=True)
    placement = PlacementFactory(
        listing=ListingFactory(sitemap__advertiser=membership.advertiser), status="ok", asset=ImageAssetFactory()
    )
    client.raise_request_exception = False
    client.force_login(membership.user)

    response = client.post(reverse("reviews:portal-occlusion", args=[placement.pk]), {"task": "color"}, **HTMX)
    page = client.get(reverse("reviews:portal-image", args=[placement.pk])).content.decode()

    assert response.status_code == 403
    assert not OcclusionMap.objects.exists()
    assert "Where does the model look?" not in page  # no button that can only be refused
