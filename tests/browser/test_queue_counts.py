"""The review queue's header after quick decisions and an undo counts what a reload counts: no quick key is lost,
and no older answer leaves its count in the header."""

import pytest
from playwright.sync_api import expect

from reviews.models import ChangeSet
from tests.browser.conftest import log_in
from tests.browser.test_runs_and_queue import hesitant_images
from tests.factories import AdvertiserFactory, SitemapFactory, UserFactory
from tests.reviews.test_health import active_model

pytestmark = pytest.mark.django_db(transaction=True)


def header(page):
    return page.inner_text("#queue-progress .queue-remaining"), page.inner_text("#queue-progress .queue-decided")


def test_quick_decisions_and_an_undo_leave_the_counts_a_reload_shows(browser_page, live_server):
    page = browser_page
    hesitant_images(SitemapFactory(advertiser=AdvertiserFactory(name="Autohaus Ost")), active_model("image_type"), 9)
    UserFactory(username="reviewer", is_staff=True)
    log_in(page, live_server, "reviewer", "pw-for-tests")
    page.goto(f"{live_server.url}/staff/queue/")
    expect(page.locator(".queue-item")).to_have_count(9)
    page.locator(".queue-item").first.focus()

    for key in "a2a1":  # four decisions as fast as the keys go: accept, Stock, accept, Dealer
        page.keyboard.press(key)
    expect(page.locator(".queue-item .decision [data-change-set]")).to_have_count(4)  # none was dropped
    expect(page.locator("#queue-progress .queue-decided")).to_have_text("4")
    assert header(page) == ("5", "4")
    page.keyboard.press("u")
    expect(page.locator(".queue-item .decision [data-undone]")).to_have_count(1)
    expect(page.locator("#queue-progress .queue-decided")).to_have_text("3")
    after_htmx = header(page)
    decisions = ChangeSet.objects.filter(kind="decision")
    assert (decisions.count(), decisions.filter(undone_by__isnull=True).count()) == (4, 3)

    page.reload()
    expect(page.locator(".queue-item")).to_have_count(6)
    assert header(page) == after_htmx == ("6", "3")
