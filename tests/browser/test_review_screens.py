"""A reviewer and an advertiser at work in a real browser."""

import io

import pytest
from django.core.files.storage import default_storage
from PIL import Image
from playwright.sync_api import expect

from classifier.models import Classification
from reviews.effective_store import effective_tags_refresh
from reviews.models import ManualFix
from tests.browser.conftest import log_in
from tests.factories import (
    ImageAssetFactory,
    ListingFactory,
    MembershipFactory,
    PlacementFactory,
    SitemapFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-for-tests"


def sitemap_with_images(model, colors):
    sitemap = SitemapFactory()
    listing = ListingFactory(sitemap=sitemap, external_id="VIN-1")
    placements = []
    for i, color in enumerate(colors):
        asset = ImageAssetFactory()
        buffer = io.BytesIO()
        Image.new("RGB", (160, 120), {"red": (200, 30, 30), "green": (30, 180, 40)}[color]).save(buffer, "JPEG")
        default_storage.save(asset.thumbnail.name, io.BytesIO(buffer.getvalue()))
        placement = PlacementFactory(listing=listing, position=i, status="ok", asset=asset)
        Classification.objects.create(
            asset=asset, model_version=model, task="color", label=color, confidence=0.6, margin=0.3,
            scores={color: 0.6},
        )  # fmt: skip
        placements.append(placement)
    effective_tags_refresh(sitemap_id=sitemap.pk)  # rows made here, not by the services: the stored tags follow
    return sitemap, placements


def test_staff_filter_retag_with_the_keyboard_save_and_see_the_history(browser_page, live_server, register_tiny):
    page = browser_page
    model = register_tiny()
    sitemap, placements = sitemap_with_images(model, ["red", "green", "red", "green", "red"])
    UserFactory(username="reviewer", is_staff=True)
    log_in(page, live_server, "reviewer", PASSWORD)

    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/")
    page.select_option("select[name=task]", "color")
    page.wait_for_selector("#fixes[data-task=color]")
    page.select_option("select[name=label]", "Red")  # the vocabulary; matching is case-insensitive
    # A locator wait, not wait_for_function: the screens' CSP (script-src 'self') forbids evaluating strings.
    expect(page.locator("#grid .card")).to_have_count(3)
    assert "3 images" in page.inner_text("#grid .count")

    page.locator("#grid .card").first.focus()
    page.keyboard.press("2")  # Blue (the second color label)
    page.keyboard.press("j")  # next image
    page.keyboard.press("=")  # Yellow (the twelfth)
    assert page.inner_text("#pending-count") == "2 pending"
    page.keyboard.press("s")  # Update
    page.wait_for_selector("text=2 tags changed")

    fixes = {(f.asset_id, f.new_label, f.user.username) for f in ManualFix.objects.all()}
    assert fixes == {(placements[0].asset_id, "Blue", "reviewer"), (placements[2].asset_id, "Yellow", "reviewer")}

    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/?task=color&fixed=yes")
    page.locator("#grid .card").first.focus()
    page.keyboard.press("o")  # open the image's history
    page.wait_for_selector("#fix-history")
    history = page.inner_text("#fix-history")
    assert "red → Blue" in history or "red → Yellow" in history
    assert "reviewer" in history


def test_an_advertiser_cannot_reach_another_advertisers_sitemap(browser_page, live_server, register_tiny):
    page = browser_page
    model = register_tiny()
    mine, _ = sitemap_with_images(model, ["red"])
    theirs, their_placements = sitemap_with_images(model, ["green"])
    MembershipFactory(advertiser=mine.advertiser, user=UserFactory(username="dealer"))
    log_in(page, live_server, "dealer", PASSWORD)

    page.goto(f"{live_server.url}/portal/")
    assert str(mine) in page.inner_text("main")
    assert str(theirs) not in page.inner_text("main")

    response = page.goto(f"{live_server.url}/portal/sitemaps/{theirs.pk}/")
    assert response.status == 404
    assert their_placements[0].url not in page.content()
    response = page.goto(f"{live_server.url}/staff/sitemaps/{theirs.pk}/")
    assert response.status == 403  # not staff: refused
    assert their_placements[0].url not in page.content()
