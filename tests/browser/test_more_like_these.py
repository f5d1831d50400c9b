"""More like these: on the grid, two selected images (space) and *More like these* open the grid of the images most
like either of them: both series, ready for one bulk retag."""

import numpy as np
import pytest
from playwright.sync_api import expect

from reviews import similar
from tests.browser.conftest import log_in
from tests.classifier.test_features import register_starter
from tests.factories import UserFactory
from tests.reviews.test_screens import make_sitemap
from tests.reviews.test_similar import DIM, cache_features

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_selected_images_bring_both_their_series(browser_page, live_server):
    similar.forget_indexes()
    register_starter("vehicle")
    rng = np.random.default_rng(5)
    first, second = rng.standard_normal(DIM), rng.standard_normal(DIM)
    sitemap, placements = make_sitemap(12)
    for i, placement in enumerate(placements):
        vector = (first if i < 3 else second if i < 6 else rng.standard_normal(DIM)) + 0.05 * rng.standard_normal(DIM)
        cache_features(placement, vector)
    page = browser_page
    UserFactory(username="reviewer", is_staff=True)
    log_in(page, live_server, "reviewer", "pw-for-tests")
    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/?task=image_type")
    expect(page.locator("#grid .card")).to_have_count(12)

    for placement in (placements[0], placements[3]):
        page.locator(f'#grid .card[data-id="{placement.pk}"]').focus()
        page.keyboard.press(" ")
    page.click("#more-like-selected")
    page.wait_for_url(f"**similar_to={placements[0].pk}%2C{placements[3].pk}*")
    page.goto(page.url + "&similar_count=6")
    expect(page.locator("#grid .card")).to_have_count(6)
    shown = {int(card.get_attribute("data-id")) for card in page.locator("#grid .card").all()}
    assert shown == {p.pk for p in placements[:6]}
    expect(page.locator("#grid")).to_contain_text("and 1 more selected")
    similar.forget_indexes()
