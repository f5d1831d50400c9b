"""Carry-forward whatever Run first downloaded the copy: a re-encode that another advertiser's Run brought in
first reaches this advertiser's Run as a cache hit, and this advertiser's fix must still follow it."""

import io

import pytest
from django.conf import settings
from PIL import Image

from catalog.imaging import inspect_image, phash_distance
from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Placement
from catalog.services.runs import run_execute, run_start
from reviews.models import ManualFix
from reviews.selectors import Source, effective_tags
from reviews.services import manual_fix_create
from tests.factories import SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)


def run_sync(sitemap):
    run = run_start(sitemap=sitemap, enqueue=False)
    run_execute(run_id=run.pk, inline=True)
    run.refresh_from_db()
    assert run.status == run.Status.SUCCEEDED, run.error
    return run


def reencode(data, *, quality, scale):
    image = Image.open(io.BytesIO(data))
    image = image.resize((int(image.width * scale), int(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_a_fix_is_carried_to_a_copy_that_another_advertisers_run_downloaded_first():
    photos = make_inventory_images(3, seed=53)
    copy = reencode(photos[0], quality=70, scale=0.8)
    assert phash_distance(inspect_image(photos[0]).phash, inspect_image(copy).phash) <= (
        settings.CARRY_FORWARD_MAX_DISTANCE
    )
    others = make_inventory_images(2, seed=59)
    with (
        InventoryServer(images=list(photos), images_per_listing=1) as cdn_a,
        InventoryServer(images=[copy, *others], images_per_listing=1) as cdn_b,
    ):
        mine, theirs = SitemapFactory(url=cdn_a.sitemap_url), SitemapFactory(url=cdn_b.sitemap_url)

        # 1. Advertiser A's Run downloads X; A fixes it.
        assert run_sync(mine).downloaded == 3
        original = Placement.objects.get(listing__sitemap=mine, url=cdn_a.image_url(0))
        fix = manual_fix_create(placement=original, task="color", label="Burgundy", user=None, source="advertiser")

        # 2. Advertiser B's Run (another CDN) downloads X', the re-encode, first: nothing of A's is B's.
        assert run_sync(theirs).downloaded == 3
        assert not ManualFix.objects.filter(advertiser=theirs.advertiser).exists()

        # 3. A's CDN switches to the re-encoded file: A's Run finds bytes it already knows (a cache hit).
        cdn_a.images[0] = copy
        cdn_a.rename()
        run = run_sync(mine)
        placement = Placement.objects.select_related("asset", "listing__sitemap").get(
            listing__sitemap=mine, url=cdn_a.image_url(0)
        )
        rerun = run_sync(mine)  # everything not modified: nothing is carried twice

    assert (run.downloaded, run.cache_hits) == (0, 3)
    assert placement.asset_id != original.asset_id
    carried = ManualFix.objects.get(advertiser=mine.advertiser, asset=placement.asset)
    assert (carried.source, carried.origin, carried.new_label) == (ManualFix.Source.CARRIED, fix, "Burgundy")
    tag = effective_tags([placement])[placement.pk]["color"]
    assert (tag.label, tag.source, tag.fix_source) == ("Burgundy", Source.FIX, "carried")
    assert not ManualFix.objects.filter(advertiser=theirs.advertiser).exists()
    # The copy and the original are one near-duplicate cluster, rooted at the original.
    assert placement.asset.cluster_id == original.asset_id
    assert rerun.not_modified == 3
    assert ManualFix.objects.filter(advertiser=mine.advertiser).count() == 2
