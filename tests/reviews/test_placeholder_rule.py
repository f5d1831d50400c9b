"""A placeholder has no color: none with source "rule" in the grid, the API (null), the queue and health."""

import pytest
from rest_framework.test import APIClient

from catalog.models import Sitemap
from classifier.models import Classification
from reviews import health
from reviews.effective_store import effective_tags_refresh
from reviews.grid import GridFilters, sitemap_grid
from reviews.models import ManualFix
from reviews.services.fixes import Change, manual_fixes_apply
from tests.factories import ImageAssetFactory, ListingFactory, PlacementFactory, SitemapFactory, UserFactory
from tests.reviews.test_effective_rule import two_head_model

pytestmark = pytest.mark.django_db


def result(asset, version, task, label, margin=0.9):
    Classification.objects.create(
        asset=asset, model_version=version, task=task, label=label, confidence=0.4, margin=margin
    )


def test_a_placeholder_shows_no_color_everywhere_and_a_reviewer_gets_the_model_color_back():
    version = two_head_model()
    sitemap = SitemapFactory()
    placement = PlacementFactory(listing=ListingFactory(sitemap=sitemap), asset=ImageAssetFactory(), status="ok")
    sitemap.live_images = 1
    sitemap.save()
    result(placement.asset, version, "image_type", "Placeholder")
    result(placement.asset, version, "color", "Blue", margin=0.05)  # a hesitant color: moot on a placeholder
    effective_tags_refresh()  # rows made here, not by the services: the stored tags follow

    item = sitemap_grid(sitemap=sitemap, filters=GridFilters()).items[0]
    assert (item.tags["color"].label, item.tags["color"].source) == (None, "rule")
    assert sitemap_grid(sitemap=sitemap, filters=GridFilters(task="color", source="rule")).total == 1
    staff = UserFactory(is_staff=True)
    api = APIClient()
    api.force_authenticate(staff)
    tag = api.get(f"/api/images/{placement.pk}/").json()["tags"]["color"]
    assert (tag["label"], tag["source"]) == (None, "rule")
    assert [item.task for item in health.review_queue()] == ["image_type"]  # the color question never comes up

    # A reviewer who says Dealer gets the model's color back; Placeholder again, and it is gone.
    placement = Sitemap.objects.get(pk=sitemap.pk).listings.get().placements.get()
    manual_fixes_apply(changes=[Change(placement, "image_type", "Dealer")], user=staff, source="staff")
    item = sitemap_grid(sitemap=sitemap, filters=GridFilters()).items[0]
    assert (item.tags["color"].label, item.tags["color"].source) == ("Blue", "model")
    assert {item.task for item in health.review_queue()} == {"color"}
    manual_fixes_apply(changes=[Change(placement, "image_type", "Placeholder")], user=staff, source="staff")
    assert sitemap_grid(sitemap=sitemap, filters=GridFilters()).items[0].tags["color"].source == "rule"

    # Only a color fix on a placeholder is a health flag: someone gave a placeholder a color.
    assert health.sitemap_placeholders_with_color_fix(sitemap=sitemap, heads={"image_type": version.pk}) == 0
    ManualFix.objects.create(
        advertiser=sitemap.advertiser, asset=placement.asset, task="color", new_label="Red", source="advertiser"
    )
    assert health.sitemap_placeholders_with_color_fix(sitemap=sitemap, heads={"image_type": version.pk}) == 1
