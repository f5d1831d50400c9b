"""A bulk "Set ... to" the label that the filter's images have already: the confirmation step says they are
confirmed, and confirming records a confirmation for each (no hidden key sequence needed)."""

import pytest
from playwright.sync_api import expect

from reviews.models import ChangeSet, ManualFix
from tests.browser.conftest import log_in
from tests.browser.grid_helpers import settled, sitemap_of
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_setting_the_filter_to_its_own_label_confirms_every_image(browser_page, live_server, register_tiny):
    page = browser_page
    UserFactory(username="reviewer", is_staff=True)
    log_in(page, live_server, "reviewer", "pw-for-tests")
    sitemap, placements = sitemap_of(register_tiny(), 30, pictures=0)  # 10 of each color
    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/?task=color&label=Red")
    expect(page.locator("#grid .card")).to_have_count(10)
    expect(page.locator("#reviewed-progress")).to_contain_text("0 of 10 reviewed")

    page.check("#select-all-filter")
    page.select_option("#bulk-label", "Red")
    page.click("#bulk-apply")
    expect(page.locator("#bulk-effect")).to_contain_text("10 are Red already: they are confirmed")
    expect(page.locator("#bulk-confirm-button")).to_have_text("Confirm 10 images as Red")
    settled(page)
    assert not ManualFix.objects.exists()

    page.click("#bulk-confirm-button")
    expect(page.locator("#grid .messages")).to_contain_text("10 tags confirmed (already that label: marked reviewed)")
    expect(page.locator("#reviewed-progress")).to_contain_text("10 of 10 reviewed")
    reds = {p.asset_id for i, p in enumerate(placements) if i % 3 == 0}
    fixes = list(ManualFix.objects.all())
    assert {fix.asset_id for fix in fixes} == reds
    assert all(fix.is_confirmation for fix in fixes)
    assert ChangeSet.objects.get().kind == "bulk"
