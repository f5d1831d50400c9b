import pytest
from django.db import IntegrityError, transaction

from catalog.models import Run, Sitemap
from tests.factories import (
    AdvertiserFactory,
    ImageAssetFactory,
    ListingFactory,
    MembershipFactory,
    PlacementFactory,
    RunFactory,
    SitemapFactory,
)

pytestmark = pytest.mark.django_db


def assert_refused(factory, **kwargs):
    with pytest.raises(IntegrityError), transaction.atomic():
        factory(**kwargs)


def test_asset_sha256_is_unique_and_hex():
    asset = ImageAssetFactory()
    assert_refused(ImageAssetFactory, sha256=asset.sha256)
    assert_refused(ImageAssetFactory, sha256="not-a-hash")


def test_placement_url_unique_per_listing_and_ok_needs_asset():
    placement = PlacementFactory()
    assert_refused(PlacementFactory, listing=placement.listing, url=placement.url, position=3)
    # The same URL in another listing is another placement.
    PlacementFactory(url=placement.url)
    assert_refused(PlacementFactory, status="ok", asset=None)


def test_listing_key_unique_per_sitemap():
    listing = ListingFactory()
    assert_refused(ListingFactory, sitemap=listing.sitemap, key=listing.key, url="https://other.example/")
    ListingFactory(key=listing.key)


def test_one_membership_per_user_and_advertiser():
    membership = MembershipFactory()
    assert_refused(MembershipFactory, user=membership.user, advertiser=membership.advertiser)


def test_sitemap_url_unique_per_advertiser_and_required_unless_feed():
    sitemap = SitemapFactory()
    assert_refused(SitemapFactory, advertiser=sitemap.advertiser, url=sitemap.url)
    SitemapFactory(url=sitemap.url)  # another advertiser may list the same URL
    assert_refused(SitemapFactory, url="", kind=Sitemap.Kind.SITEMAP)
    advertiser = AdvertiserFactory()
    SitemapFactory(advertiser=advertiser, url="", kind=Sitemap.Kind.FEED)
    SitemapFactory(advertiser=advertiser, url="", kind=Sitemap.Kind.FEED)


def test_at_most_one_active_run_per_sitemap():
    run = RunFactory(status=Run.Status.RUNNING)
    assert_refused(RunFactory, sitemap=run.sitemap, status=Run.Status.QUEUED)
    RunFactory(sitemap=run.sitemap, status=Run.Status.SUCCEEDED)
    run.status = Run.Status.PARTIAL
    run.save()
    RunFactory(sitemap=run.sitemap, status=Run.Status.QUEUED)
