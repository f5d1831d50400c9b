"""The same picture means the same colors: a stock render in another paint lands within the carry-forward distance
of pHash (computed in grey), but it is another picture. A fix is carried, and pictures are clustered, only between
near-duplicates (catalog.services.clusters.near_duplicates: the bits and the color signature)."""

import io

import pytest
from django.conf import settings

from catalog.imaging import inspect_image, phash_distance
from catalog.inventory_server import InventoryServer
from catalog.models import ImageAsset, Placement
from classifier.synth import vehicle_sample
from reviews.crosscheck import sitemap_clusters
from reviews.expressions import advertiser_conflicts
from reviews.models import ManualFix
from reviews.selectors import Source, effective_tags
from reviews.services import manual_fix_create
from tests.factories import SitemapFactory, UserFactory
from tests.reviews.test_carry_forward_order import reencode, run_sync

pytestmark = pytest.mark.django_db(transaction=True)

SCENE = 1  # a stock render whose black and blue paints have the same pHash


def render(color: str) -> bytes:
    sample = vehicle_sample(SCENE, image_type="Stock", color=color, size=(800, 600), repaintable=True)
    buffer = io.BytesIO()
    sample.image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def paints():
    black, blue = render("Black"), render("Blue")
    copy = reencode(black, quality=70, scale=0.8)
    black_keys, blue_keys, copy_keys = inspect_image(black), inspect_image(blue), inspect_image(copy)
    # What made the bug: the blue render is as near in bits as the re-encode is.
    assert phash_distance(black_keys.phash, blue_keys.phash) <= settings.CARRY_FORWARD_MAX_DISTANCE
    assert phash_distance(black_keys.phash, copy_keys.phash) <= settings.CARRY_FORWARD_MAX_DISTANCE
    return {"black": black, "blue": blue, "copy": copy}


def placement_of(sitemap, server, index):
    return Placement.objects.select_related("asset", "listing__sitemap").get(
        listing__sitemap=sitemap, url=server.image_url(index)
    )


def test_a_color_fix_is_carried_to_a_copy_never_to_the_same_render_in_another_paint(paints):
    staff = UserFactory(is_staff=True)
    with InventoryServer(images=[paints["black"]], images_per_listing=1) as cdn:
        sitemap = SitemapFactory(url=cdn.sitemap_url)
        run_sync(sitemap)
        black = placement_of(sitemap, cdn, 0)
        fix = manual_fix_create(placement=black, task="color", label="Black", user=staff, source="staff")

        # The maker publishes the same car in blue, and another site a re-encoded copy of the black one.
        cdn.images += [paints["blue"], paints["copy"]]
        run = run_sync(sitemap)
        blue, copy = placement_of(sitemap, cdn, 1), placement_of(sitemap, cdn, 2)

    assert run.downloaded == 2
    carried = ManualFix.objects.get(advertiser=sitemap.advertiser, asset=copy.asset)
    assert (carried.source, carried.origin, carried.new_label) == (ManualFix.Source.CARRIED, fix, "Black")
    assert not ManualFix.objects.filter(asset=blue.asset).exists()
    tags = effective_tags([blue, copy])
    assert (tags[copy.pk]["color"].label, tags[copy.pk]["color"].fix_source) == ("Black", "carried")
    assert tags[blue.pk]["color"].source != Source.FIX
    assert tags[blue.pk]["color"].label != "Black"
    # One rule: the copy is in the black render's cluster, the blue render is a picture of its own.
    clusters = dict(ImageAsset.objects.values_list("id", "cluster_id"))
    assert clusters[copy.asset_id] == clusters[black.asset_id] == black.asset_id
    assert clusters[blue.asset_id] == blue.asset_id


def test_review_by_cluster_and_conflicts_keep_the_paints_apart(paints):
    staff = UserFactory(is_staff=True)
    with (
        InventoryServer(images=[paints["black"]], images_per_listing=1) as mine_cdn,
        InventoryServer(images=[paints["blue"], paints["copy"]], images_per_listing=1) as theirs_cdn,
    ):
        mine, theirs = SitemapFactory(url=mine_cdn.sitemap_url), SitemapFactory(url=theirs_cdn.sitemap_url)
        run_sync(mine)
        run_sync(theirs)
        black = placement_of(mine, mine_cdn, 0)
        blue, copy = placement_of(theirs, theirs_cdn, 0), placement_of(theirs, theirs_cdn, 1)

    # Review by cluster: the blue render is a row of its own, the copy shares none with it.
    page = sitemap_clusters(sitemap=theirs, task="color")
    assert sorted(sorted(member.placement.pk for member in row.members) for row in page.rows) == sorted(
        [[blue.pk], [copy.pk]]
    )

    # Conflicts by cluster: A says Black on the black render, B says Blue on the blue one: no conflict...
    manual_fix_create(placement=black, task="color", label="Black", user=staff, source="advertiser")
    manual_fix_create(placement=blue, task="color", label="Blue", user=staff, source="advertiser")
    assert not advertiser_conflicts().exists()
    # ...but B saying Red on a copy of A's black render is one.
    manual_fix_create(placement=copy, task="color", label="Red", user=staff, source="advertiser")
    assert set(advertiser_conflicts().values_list("asset_id", flat=True)) == {black.asset_id, copy.asset_id}


def test_an_image_without_a_color_signature_receives_no_carried_fix(paints):
    staff = UserFactory(is_staff=True)
    with InventoryServer(images=[paints["black"]], images_per_listing=1) as cdn:
        sitemap = SitemapFactory(url=cdn.sitemap_url)
        run_sync(sitemap)
        manual_fix_create(
            placement=placement_of(sitemap, cdn, 0), task="color", label="Black", user=staff, source="staff"
        )
        # The copy was downloaded before signatures existed (and its thumbnail could not be read back).
        cdn.images.append(paints["copy"])
        cdn.rename()
        copy_keys = inspect_image(paints["copy"])
        ImageAsset.objects.create(
            sha256=copy_keys.sha256, phash=copy_keys.phash, width=copy_keys.width, height=copy_keys.height,
            format=copy_keys.format, byte_size=copy_keys.byte_size, original="originals/x.jpg",
            thumbnail="thumbnails/x.jpg", color_signature="",
        )  # fmt: skip
        run = run_sync(sitemap)

    assert run.cache_hits == 2
    assert list(ManualFix.objects.values_list("source", flat=True)) == [ManualFix.Source.STAFF]
