"""Review by cluster in a real browser: one key tags every image of a near-duplicate cluster."""

import io

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from catalog.models import ImageAsset
from reviews.effective_store import effective_tags_refresh
from reviews.models import ManualFix
from tests.browser.conftest import log_in
from tests.factories import ImageAssetFactory, ListingFactory, PlacementFactory, SitemapFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-for-tests"
TIMES = "\u00d7"  # the badge's multiplication sign


def picture(rgb):
    asset = ImageAssetFactory()
    buffer = io.BytesIO()
    Image.new("RGB", (160, 120), rgb).save(buffer, "JPEG")
    default_storage.save(asset.thumbnail.name, io.BytesIO(buffer.getvalue()))
    return asset


def test_staff_tag_a_whole_cluster_with_one_key(browser_page, live_server):
    page = browser_page
    sitemap = SitemapFactory()
    copies = [picture((200, 30, 30)) for _ in range(3)]
    ImageAsset.objects.filter(pk__in=[a.pk for a in copies]).update(cluster_id=copies[0].pk)
    members = [
        PlacementFactory(listing=ListingFactory(sitemap=sitemap), position=0, status="ok", asset=asset)
        for asset in [*copies, copies[0]]  # the first copy in two listings
    ]
    other = PlacementFactory(listing=ListingFactory(sitemap=sitemap), status="ok", asset=picture((30, 180, 40)))
    effective_tags_refresh()  # rows made here, not by the services: the stored tags follow
    UserFactory(username="reviewer", is_staff=True)
    log_in(page, live_server, "reviewer", PASSWORD)

    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/?task=image_type")
    badge = page.locator("#grid .card .cluster-badge").first
    assert badge.inner_text() == f"{TIMES}4"
    badge.click()
    page.wait_for_selector("#cluster-toolbar[data-task=image_type]")
    assert page.locator(".cluster-row").count() == 1  # the badge opens its own cluster

    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/clusters/?task=image_type")
    rows = page.locator(".cluster-row")
    assert rows.count() == 2
    page.wait_for_selector(".cluster-row:focus")  # not wait_for_function: the CSP forbids evaluating strings
    assert page.evaluate("document.activeElement.dataset.cluster") == str(copies[0].pk)  # the biggest first
    page.keyboard.press("j")
    page.keyboard.press("k")
    page.keyboard.press("2")  # Stock, the second image type
    page.wait_for_selector(".cluster-row .cluster-notice:has-text('3 tags changed')")

    row = page.locator(f".cluster-row[data-cluster='{copies[0].pk}']")
    assert row.locator(".cluster-member .label").all_inner_texts() == ["Stock"] * 4
    assert f"image_type: Stock {TIMES}4" in row.inner_text()
    fixes = {(f.asset_id, f.new_label, f.source, f.user.username) for f in ManualFix.objects.all()}
    assert fixes == {(asset.pk, "Stock", "staff", "reviewer") for asset in copies}
    assert other.asset_id not in {f.asset_id for f in ManualFix.objects.all()}
    assert page.evaluate("document.activeElement.dataset.cluster") == str(copies[0].pk)  # focus stays for the next key
    assert len(members) == 4
