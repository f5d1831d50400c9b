"""Reviews across images: listings whose photos disagree on the color, and pictures reused in many listings."""

import hashlib
from itertools import count

import pytest
from django.urls import reverse

from catalog.models import ImageAsset, Placement
from classifier.models import Classification, ModelHead, ModelVersion
from reviews.crosscheck import listing_color_disagreements, picture_usage, reused_pictures
from reviews.effective_store import effective_tags_refresh
from reviews.grid import GridFilters, sitemap_grid, sitemap_placements
from tests.factories import (
    AdvertiserFactory,
    ImageAssetFactory,
    ListingFactory,
    MembershipFactory,
    PlacementFactory,
    SitemapFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
_serial = count()


def active_model(*tasks):
    """A classifier version with an active head per task: rows only, no ONNX."""
    n = next(_serial)
    version = ModelVersion.objects.create(
        name=f"crosscheck {n}",
        kind=ModelVersion.Kind.CLASSIFIER,
        file=f"models/crosscheck-{n}.onnx",
        sha256=hashlib.sha256(f"crosscheck {n}".encode()).hexdigest(),
        contract={},
        status=ModelVersion.Status.ACTIVE,
    )
    for task in tasks:
        ModelHead.objects.create(model_version=version, task=task, output=task, labels=[], is_active=True)
    return version


@pytest.fixture
def model():
    return active_model("image_type", "color")


def classify(asset, version, task, label, *, confidence=0.9, crop_source="detector"):
    Classification.objects.create(
        asset=asset, model_version=version, task=task, label=label, confidence=confidence, margin=0.5,
        scores={label: confidence}, crop_source=crop_source,
    )  # fmt: skip


def photo(listing, model, color=None, *, kind="Dealer", confidence=0.9, crop_source="detector", asset=None):
    """A live placement of the listing whose picture the model tags (kind, color)."""
    asset = asset or ImageAssetFactory()
    position = Placement.objects.filter(listing=listing).count()
    placement = PlacementFactory(listing=listing, position=position, status="ok", asset=asset)
    if kind and not Classification.objects.filter(asset=asset, task="image_type").exists():
        classify(asset, model, "image_type", kind, crop_source=crop_source)
    if color and not Classification.objects.filter(asset=asset, task="color").exists():
        classify(asset, model, "color", color, confidence=confidence, crop_source=crop_source)
    effective_tags_refresh(asset_ids=[asset.pk])  # rows made here, not by the services: the stored tags follow
    return placement


# Listing consistency -------------------------------------------------------------------------------------------


def test_a_listing_whose_photos_say_two_colors_disagrees(model):
    sitemap = SitemapFactory()
    mixed = ListingFactory(sitemap=sitemap)
    for color in ("Red", "Red", "Blue"):
        photo(mixed, model, color)
    consistent = ListingFactory(sitemap=sitemap)
    photo(consistent, model, "Red")
    photo(consistent, model, "red")  # a model may spell a label its own way
    photo(consistent, model, "Blue", kind="Placeholder")  # a placeholder has no color
    photo(consistent, model, "Blue", confidence=0.3)  # too unsure to count
    photo(consistent, model, "Black", crop_source="no_vehicle")  # no vehicle found: the seats, not the car
    photo(consistent, model, None)  # not classified for color yet

    rows = list(listing_color_disagreements(sitemap=sitemap))

    assert [(row["listing_id"], row["colors"], row["contradictions"]) for row in rows] == [(mixed.pk, 2, 0)]


def test_a_fix_counts_as_the_photos_word(model):
    from reviews.services import manual_fix_create

    sitemap = SitemapFactory()
    listing = ListingFactory(sitemap=sitemap)
    photo(listing, model, "Red")
    fixed = photo(listing, model, "Red")
    assert not listing_color_disagreements(sitemap=sitemap)

    manual_fix_create(placement=fixed, task="color", label="Green", user=None, source="staff")

    assert [row["listing_id"] for row in listing_color_disagreements(sitemap=sitemap)] == [listing.pk]


def test_the_filter_shows_disagreeing_listings_with_the_photos_contradicting_the_scrape_first(
    model, django_assert_max_num_queries
):
    sitemap = SitemapFactory()
    scraped = ListingFactory(sitemap=sitemap, attributes={"color": "red"})
    agrees = photo(scraped, model, "Red")
    contradicts = photo(scraped, model, "Blue")  # its effective color is the scrape's Red: the model says Blue
    mixed = ListingFactory(sitemap=sitemap)
    mixed_photos = [photo(mixed, model, color) for color in ("Green", "Green", "White")]
    calm = ListingFactory(sitemap=sitemap, attributes={"color": "Grey"})
    photo(calm, model, "grey")
    photo(calm, model, "Blue", confidence=0.2)

    filters = GridFilters(task="image_type", listing_disagrees=True)
    ordered = list(sitemap_placements(sitemap=sitemap, filters=filters))

    assert ordered[0] == contradicts
    assert set(ordered) == {agrees, contradicts, *mixed_photos}
    assert ordered[1:] == sorted(ordered[1:], key=lambda p: (p.listing_id, p.position, p.pk))
    with django_assert_max_num_queries(8):  # the filter is the stored listing check: no query of its own
        page = sitemap_grid(sitemap=sitemap, filters=filters)
    assert page.total == 5
    assert page.items[0].placement == contradicts


def test_the_new_filters_cost_the_same_queries_for_a_small_and_a_large_sitemap(model, django_assert_max_num_queries):
    def sitemap_of(listings):
        sitemap = SitemapFactory()
        for _ in range(listings):
            listing = ListingFactory(sitemap=sitemap)
            for color in ("Red", "Blue", "Red"):
                photo(listing, model, color)
        return sitemap

    small, large = sitemap_of(1), sitemap_of(12)
    for filters in (GridFilters(listing_disagrees=True), GridFilters(reused=True, task="color")):
        with django_assert_max_num_queries(13) as few:
            sitemap_grid(sitemap=small, filters=filters)
        with django_assert_max_num_queries(len(few.captured_queries)):
            sitemap_grid(sitemap=large, filters=filters)


def test_the_grid_filters_parse_from_the_query_string():
    filters = GridFilters.from_params({"listing_disagrees": "1", "reused": "on"})
    assert (filters.listing_disagrees, filters.reused, filters.needs_tags_in_sql) == (True, True, True)
    assert filters.as_params() == {"task": "image_type", "listing_disagrees": "1", "reused": "1"}
    assert not GridFilters.from_params({}).listing_disagrees


# Reused pictures -----------------------------------------------------------------------------------------------


def show(asset, model, kind, listings, *, advertisers=1):
    """The asset in `listings` live listings spread over `advertisers` advertisers (one sitemap each)."""
    sitemaps = [SitemapFactory() for _ in range(advertisers)]
    placements = [
        photo(ListingFactory(sitemap=sitemaps[i % advertisers]), model, asset=asset, kind=kind) for i in range(listings)
    ]
    return sitemaps, placements


def test_a_picture_in_five_listings_that_the_model_calls_a_dealer_photo_is_flagged(model, settings):
    settings.REUSED_PICTURE_LISTINGS = 5
    dealer, stock, fewer = ImageAssetFactory(), ImageAssetFactory(), ImageAssetFactory()
    show(dealer, model, "Dealer", 5, advertisers=2)
    show(stock, model, "Stock", 5)
    show(fewer, model, "Dealer", 4)

    rows = reused_pictures()

    assert [(r.picture, r.listings, r.advertisers, r.model_label) for r in rows] == [(dealer.pk, 5, 2, "Dealer")]
    assert rows[0].placement.asset_id == dealer.pk
    assert rows[0].placement.listing.sitemap.advertiser.name  # loaded with the row
    assert reused_pictures(min_listings=4)[1].picture == fewer.pk  # the most reused first
    assert picture_usage(asset=dealer) == (5, 2)


def test_near_duplicates_count_as_one_picture_and_gone_listings_do_not_count(model, settings):
    settings.REUSED_PICTURE_LISTINGS = 5
    original, copy = ImageAssetFactory(), ImageAssetFactory()
    ImageAsset.objects.filter(pk__in=[original.pk, copy.pk]).update(cluster_id=original.pk)
    show(original, model, "Dealer", 3)
    _, copies = show(copy, model, "Dealer", 2)

    assert [(r.picture, r.listings, r.advertisers) for r in reused_pictures()] == [(original.pk, 5, 2)]
    copy.refresh_from_db()
    assert picture_usage(asset=copy) == (5, 2)

    copies[0].listing.is_gone = True
    copies[0].listing.save()
    effective_tags_refresh()  # as the sync that marks a listing gone does
    assert reused_pictures() == []
    assert picture_usage(asset=copy) == (4, 2)


def test_reuse_counted_within_advertisers_and_in_the_grid_filter(model, settings):
    settings.REUSED_PICTURE_LISTINGS = 3
    shared = ImageAssetFactory()
    sitemaps, placements = show(shared, model, "Dealer", 4, advertisers=2)  # 2 listings at each advertiser
    mine = sitemaps[0]
    other = photo(ListingFactory(sitemap=mine), model, "Red")

    assert [r.listings for r in reused_pictures()] == [4]
    assert reused_pictures(advertiser_ids=[mine.advertiser_id]) == []
    assert picture_usage(asset=shared, advertiser_id=mine.advertiser_id) == (2, 1)
    # The grid counts within the sitemap's advertiser: 2 listings here are not 3.
    assert list(sitemap_placements(sitemap=mine, filters=GridFilters(reused=True))) == []

    photo(ListingFactory(sitemap=mine), model, asset=shared)
    flagged = set(sitemap_placements(sitemap=mine, filters=GridFilters(reused=True)))
    assert placements[0] in flagged
    assert other not in flagged
    assert len(flagged) == 3


def test_the_image_page_says_where_the_picture_appears(client, model):
    shared = ImageAssetFactory()
    sitemaps, placements = show(shared, model, "Dealer", 5, advertisers=2)
    client.force_login(UserFactory(is_staff=True))
    page = client.get(reverse("reviews:staff-image", args=[placements[0].pk])).content.decode()
    assert "appears in <strong>5 listings</strong> of 2 advertisers" in page

    dealer = UserFactory()
    MembershipFactory(user=dealer, advertiser=sitemaps[0].advertiser)
    client.force_login(dealer)
    page = client.get(reverse("reviews:portal-image", args=[placements[0].pk])).content.decode()
    assert "appears in <strong>3 of your listings</strong>" in page
    assert "advertisers" not in page.split("picture-usage")[1].split("</p>")[0]


def test_no_picture_is_flagged_without_an_active_image_type_model(settings):
    settings.REUSED_PICTURE_LISTINGS = 2
    version = active_model("color")
    asset = ImageAssetFactory()
    advertiser = AdvertiserFactory()
    for _ in range(3):
        photo(ListingFactory(sitemap=SitemapFactory(advertiser=advertiser)), version, asset=asset, kind=None)
    assert reused_pictures() == []
