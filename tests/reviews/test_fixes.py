"""Manual fixes: history that is never rewritten, scoped per advertiser, keyed by content, carried forward."""

import io

import pytest
from django.db import DatabaseError, connection, transaction
from PIL import Image

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import ImageAsset, Placement
from catalog.services.runs import run_execute, run_start
from reviews.models import AppendOnly, ManualFix
from reviews.selectors import Source, effective_tags
from reviews.services import FixError, manual_fix_create, manual_fix_revert
from tests.factories import ImageAssetFactory, PlacementFactory, SitemapFactory, UserFactory


def run_sync(sitemap):
    run = run_start(sitemap=sitemap, enqueue=False)
    run_execute(run_id=run.pk, inline=True)
    run.refresh_from_db()
    return run


def tags_of(placement):
    placement = Placement.objects.select_related("listing__sitemap").get(pk=placement.pk)
    return effective_tags([placement])[placement.pk]


@pytest.mark.django_db
def test_a_fix_wins_and_every_change_is_history():
    staff = UserFactory(is_staff=True)
    placement = PlacementFactory(status="ok", asset=ImageAssetFactory())

    first = manual_fix_create(placement=placement, task="image_type", label="stock", user=staff, source="staff")
    second = manual_fix_create(placement=placement, task="image_type", label="Dealer", user=staff, source="staff")

    assert (first.old_label, first.new_label) == ("", "Stock")  # the vocabulary's spelling
    assert (second.old_label, second.new_label) == ("Stock", "Dealer")
    tag = tags_of(placement)["image_type"]
    assert (tag.label, tag.source, tag.fixed_by, tag.fix_id) == ("Dealer", Source.FIX, staff.username, second.pk)
    assert manual_fix_create(placement=placement, task="image_type", label="Dealer", user=staff, source="staff") is None

    revert = manual_fix_revert(fix=second, user=staff, source="staff")
    assert (revert.new_label, revert.reverts) == ("Stock", second)
    assert tags_of(placement)["image_type"].label == "Stock"
    assert ManualFix.objects.count() == 3


@pytest.mark.django_db
def test_labels_outside_the_task_vocabulary_are_refused():
    placement = PlacementFactory(status="ok", asset=ImageAssetFactory())
    with pytest.raises(FixError, match="not a color label"):
        manual_fix_create(placement=placement, task="color", label="Mauve", user=None, source="api")
    with pytest.raises(FixError, match="no downloaded picture"):
        manual_fix_create(placement=PlacementFactory(), task="color", label="Red", user=None, source="api")


@pytest.mark.django_db
def test_history_is_append_only_in_the_code_and_in_the_database():
    fix = manual_fix_create(
        placement=PlacementFactory(status="ok", asset=ImageAssetFactory()), task="color", label="Red", user=None,
        source="api",
    )  # fmt: skip
    fix.new_label = "Blue"
    with pytest.raises(AppendOnly):
        fix.save()
    with pytest.raises(AppendOnly):
        fix.delete()
    with pytest.raises(AppendOnly):
        ManualFix.objects.filter(pk=fix.pk).update(new_label="Blue")
    with pytest.raises(AppendOnly):
        ManualFix.objects.all().delete()
    if connection.vendor == "postgresql":  # the trigger refuses what raw SQL would do
        for sql in ("UPDATE reviews_manualfix SET new_label = 'Blue'", "DELETE FROM reviews_manualfix"):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
                cur.execute(sql)
    assert ManualFix.objects.get().new_label == "Red"


@pytest.mark.django_db
def test_two_advertisers_on_one_cdn_never_overwrite_each_other():
    asset = ImageAssetFactory()
    mine = PlacementFactory(status="ok", asset=asset, url="https://shared-cdn.example/car.jpg")
    theirs = PlacementFactory(status="ok", asset=asset, url="https://shared-cdn.example/car.jpg")
    assert mine.listing.sitemap.advertiser != theirs.listing.sitemap.advertiser

    manual_fix_create(placement=mine, task="color", label="Red", user=None, source="advertiser")
    manual_fix_create(placement=theirs, task="color", label="Blue", user=None, source="advertiser")

    assert tags_of(mine)["color"].label == "Red"
    assert tags_of(theirs)["color"].label == "Blue"


@pytest.mark.django_db(transaction=True)
def test_a_fix_survives_a_run_after_the_cdn_changed_urls_and_headers():
    with InventoryServer(images=make_inventory_images(4, seed=31), images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run_sync(sitemap)
        placement = Placement.objects.get(url=server.image_url(1))
        manual_fix_create(placement=placement, task="image_type", label="Stock", user=None, source="staff")

        server.rename()  # new URLs, new ETags, same bytes
        run = run_sync(sitemap)
        renamed = Placement.objects.get(url=server.image_url(1))

    assert (run.cache_hits, run.downloaded) == (4, 0)
    assert renamed.pk != placement.pk
    assert renamed.asset_id == placement.asset_id
    assert tags_of(renamed)["image_type"].label == "Stock"
    assert tags_of(renamed)["image_type"].source == Source.FIX


def reencode(data, *, quality, scale):
    image = Image.open(io.BytesIO(data))
    image = image.resize((int(image.width * scale), int(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.mark.django_db(transaction=True)
def test_fixes_are_carried_to_a_reencoded_copy_and_not_to_other_photos():
    images = make_inventory_images(4, seed=41)
    with InventoryServer(images=list(images), images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run_sync(sitemap)
        fixed = Placement.objects.get(url=server.image_url(0))
        origin = manual_fix_create(placement=fixed, task="color", label="Burgundy", user=None, source="staff")
        other_advertiser = SitemapFactory(url=server.sitemap_url)
        run_sync(other_advertiser)

        # The CDN re-encodes photo 0 (smaller, lower quality) and renames everything.
        server.images[0] = reencode(images[0], quality=70, scale=0.8)
        server.rename()
        run = run_sync(sitemap)
        copy = Placement.objects.select_related("asset").get(listing__sitemap=sitemap, url=server.image_url(0))
        untouched = Placement.objects.get(listing__sitemap=sitemap, url=server.image_url(1))

    assert run.downloaded == 1
    assert copy.asset_id != fixed.asset_id
    carried = ManualFix.objects.get(asset=copy.asset)
    assert (carried.source, carried.origin, carried.new_label) == ("carried", origin, "Burgundy")
    tag = tags_of(copy)["color"]
    assert (tag.label, tag.source, tag.fix_source) == ("Burgundy", Source.FIX, "carried")
    assert not ManualFix.objects.filter(asset_id=untouched.asset_id).exists()
    # Another advertiser's copy of the same CDN file is not theirs to inherit.
    assert not ManualFix.objects.filter(advertiser=other_advertiser.advertiser).exists()
    assert ImageAsset.objects.count() == 5
