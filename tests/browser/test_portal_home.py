"""An advertiser logs in and lands on the portal's home: what needs attention, the staff decisions on its labels,
the image types with its own examples, and nothing of another advertiser."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.factories import MembershipFactory, SitemapFactory, UserFactory
from tests.reviews.portal_helpers import advertiser_fix, image_type_model, staff_decision, tagged, unfetched

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-for-tests"


def test_an_advertiser_lands_on_its_home_and_sees_only_its_own(browser_page, live_server):
    page = browser_page
    model = image_type_model()
    mine = SitemapFactory(name="Used cars of mine")
    dealer = tagged(mine, model, "Dealer")
    stock = tagged(mine, model, "Stock")
    tagged(mine, model, None, error="no result")  # failed: the model gave no answer
    unfetched(mine)  # failed: no picture
    advertiser_fix(stock, "Placeholder")
    staff_decision(stock, "Stock")  # staff changed the advertiser's Placeholder back to Stock
    theirs = SitemapFactory(name="Their inventory")
    their_images = [tagged(theirs, model, "Placeholder") for _ in range(3)] + [unfetched(theirs) for _ in range(4)]
    their_stock = tagged(theirs, model, "Dealer")
    advertiser_fix(their_stock, "Stock")
    staff_decision(their_stock, "Dealer")
    MembershipFactory(advertiser=mine.advertiser, user=UserFactory(username="dealer"))

    log_in(page, live_server, "dealer", PASSWORD)

    expect(page).to_have_url(f"{live_server.url}{reverse('reviews:portal-home')}")
    expect(page.locator("#failed-total")).to_have_text("2 images failed")
    expect(page.locator("#unreviewed-total")).to_have_text("3 of 4 images not reviewed yet")
    expect(page.locator("#decisions-total")).to_have_text("1 staff decision on your labels")
    decision = page.locator("#decisions tr.decision")
    expect(decision).to_have_count(1)
    expect(decision).to_contain_text("Placeholder → Stock")
    expect(decision).to_contain_text("changed your label")
    thumbnail = decision.locator("img")
    expect(thumbnail).to_have_attribute("src", reverse("reviews:portal-thumbnail", args=[stock.pk]))
    assert page.request.get(f"{live_server.url}{thumbnail.get_attribute('src')}").status == 200
    expect(page.locator("#image-types .example[data-label=Placeholder]")).to_contain_text("no example yet")
    dealer_example = page.locator("#image-types .example[data-label=Dealer] img")
    expect(dealer_example).to_have_attribute("src", reverse("reviews:portal-thumbnail", args=[dealer.pk]))

    main = page.inner_text("main")
    assert "Used cars of mine" in main
    assert "Their inventory" not in main
    html = page.content()
    for placement in [*their_images, their_stock]:
        assert reverse("reviews:portal-image", args=[placement.pk]) not in html
        assert reverse("reviews:portal-thumbnail", args=[placement.pk]) not in html
    assert "Dealer → Stock" not in main  # the other advertiser's decision

    page.locator("#sitemaps-attention .failed-count a").click()
    expect(page).to_have_url(re.compile(r"/portal/sitemaps/\d+/\?failed=1$"))
    expect(page.locator("#grid .card")).to_have_count(2)
