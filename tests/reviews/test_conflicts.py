"""Conflicts: an advertiser against any staff-side source, and two advertisers on the same picture (same SHA-256 or
the same near-duplicate cluster), counted, queued, shown on the image page, until staff settle them."""

import pytest
from django.urls import reverse

from catalog.models import ImageAsset
from classifier.models import Classification
from reviews import health
from reviews.effective_store import effective_tags_refresh
from reviews.expressions import advertiser_conflicts, disagreements
from reviews.models import ManualFix
from reviews.services import review_decision_record
from tests.factories import ImageAssetFactory, ListingFactory, PlacementFactory, SitemapFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(register_tiny):
    return register_tiny()  # color (red/green/blue) and sensitive heads, active


def image(sitemap, asset=None):
    return PlacementFactory(listing=ListingFactory(sitemap=sitemap), asset=asset or ImageAssetFactory(), status="ok")


def classify(asset, version, label="red"):
    Classification.objects.create(
        asset=asset, model_version=version, task="color", label=label, confidence=0.99, margin=0.9
    )


def fix(sitemap, asset, label, source, **kwargs):
    return ManualFix.objects.create(
        advertiser=sitemap.advertiser, asset=asset, task="color", new_label=label, source=source, **kwargs
    )


@pytest.mark.parametrize("staff_source", [ManualFix.Source.STAFF, ManualFix.Source.API])
def test_every_staff_side_source_counts_against_the_advertiser(version, staff_source):
    sitemap = SitemapFactory()
    placement = image(sitemap)
    classify(placement.asset, version)
    fix(sitemap, placement.asset, "Green", ManualFix.Source.ADVERTISER)
    fix(sitemap, placement.asset, "Yellow", staff_source)

    assert disagreements().count() == 1
    assert [(item.kind, item.reason) for item in health.review_queue()] == [
        ("conflict", "advertiser and staff disagree: Green vs Yellow")
    ]
    [row] = health.advertisers_health()
    assert row.disagreements == 1

    # Staff settle it in the queue: counted no more, gone from the queue, until someone fixes the scope again.
    review_decision_record(placement=placement, task="color", label="Yellow", user=UserFactory(is_staff=True))
    assert disagreements().count() == 0
    assert health.review_queue() == []
    fix(sitemap, placement.asset, "Green", ManualFix.Source.ADVERTISER)
    assert disagreements().count() == 1


def test_a_carried_fix_is_no_side():
    sitemap = SitemapFactory()
    asset = ImageAssetFactory()
    origin = fix(sitemap, asset, "Green", ManualFix.Source.ADVERTISER)
    fix(sitemap, ImageAssetFactory(), "Yellow", ManualFix.Source.STAFF)
    fix(sitemap, asset, "Green", ManualFix.Source.CARRIED, origin=origin)
    assert disagreements().count() == 0


@pytest.mark.parametrize("same", ["sha256", "cluster"])
def test_two_advertisers_who_label_the_same_picture_otherwise_are_a_conflict(version, client, same):
    ours, theirs = SitemapFactory(), SitemapFactory()
    asset = ImageAssetFactory()
    if same == "sha256":
        their_asset = asset
    else:  # a re-encoded copy: another asset in the same near-duplicate cluster
        their_asset = ImageAssetFactory()
        ImageAsset.objects.filter(pk__in=[asset.pk, their_asset.pk]).update(cluster_id=asset.pk)
    our_placement, their_placement = image(ours, asset), image(theirs, their_asset)
    for each in {asset, their_asset}:
        classify(each, version)
    fix(ours, asset, "Green", ManualFix.Source.ADVERTISER)
    fix(theirs, their_asset, "Blue", ManualFix.Source.ADVERTISER)
    fix(SitemapFactory(), ImageAssetFactory(), "Pink", ManualFix.Source.ADVERTISER)  # another picture: no conflict

    assert {(c.advertiser_id, c.new_label) for c in advertiser_conflicts()} == {
        (ours.advertiser_id, "Green"), (theirs.advertiser_id, "Blue")
    }  # fmt: skip
    queue = health.review_queue()
    assert {(item.placement_id, item.kind) for item in queue} == {
        (our_placement.pk, "advertisers"), (their_placement.pk, "advertisers")
    }  # fmt: skip
    counts = {row.advertiser.pk: row.advertiser_conflicts for row in health.advertisers_health()}
    assert (counts[ours.advertiser_id], counts[theirs.advertiser_id]) == (1, 1)

    client.force_login(UserFactory(is_staff=True))
    page = client.get(reverse("reviews:staff-image", args=[our_placement.pk]))
    assert [(fix.advertiser_id, fix.new_label) for fix in page.context["history"].conflicts] == [
        (theirs.advertiser_id, "Blue")
    ]
    assert "Other advertisers disagree" in page.content.decode()

    # Agreeing labels are no conflict; staff settling both scopes in the queue ends it too.
    fix(theirs, their_asset, "Green", ManualFix.Source.ADVERTISER)
    assert not advertiser_conflicts().exists()
    fix(theirs, their_asset, "Blue", ManualFix.Source.ADVERTISER)
    staff = UserFactory(is_staff=True)
    review_decision_record(placement=our_placement, task="color", label="Green", user=staff)
    assert advertiser_conflicts().count() == 2  # theirs is not settled yet
    review_decision_record(placement=their_placement, task="color", label="Blue", user=staff)
    assert not advertiser_conflicts().exists()


def test_an_advertiser_never_sees_another_advertisers_labels_on_the_image_page(version, client):
    ours, theirs = SitemapFactory(), SitemapFactory()
    asset = ImageAssetFactory()
    our_placement = image(ours, asset)
    image(theirs, asset)
    fix(ours, asset, "Green", ManualFix.Source.ADVERTISER)
    fix(theirs, asset, "Blue", ManualFix.Source.ADVERTISER)
    user = UserFactory()
    ours.advertiser.memberships.create(user=user, role="editor")
    client.force_login(user)
    page = client.get(reverse("reviews:portal-image", args=[our_placement.pk]))
    assert page.status_code == 200
    assert page.context["history"].conflicts == []
    assert "Blue" not in page.content.decode()


def test_a_picture_reused_in_many_listings_that_the_model_calls_dealer_reaches_the_queue(settings):
    from tests.reviews.test_effective_rule import two_head_model

    settings.REUSED_PICTURE_LISTINGS = 3
    version = two_head_model()
    sitemap = SitemapFactory()
    logo = ImageAssetFactory()
    for _ in range(3):
        image(sitemap, logo)
    Classification.objects.create(
        asset=logo, model_version=version, task="image_type", label="Dealer", confidence=0.99, margin=0.9
    )
    effective_tags_refresh()  # rows made here, not by the services: the stored tags follow
    [item] = [item for item in health.review_queue() if item.kind == "reused"]
    assert (item.asset_id, item.task) == (logo.pk, "image_type")
    assert item.reason == "appears in 3 listings, and the model calls it Dealer: a placeholder or stock render?"
    # Once a human looked at its type, it leaves the queue.
    ManualFix.objects.create(
        advertiser=sitemap.advertiser, asset=logo, task="image_type", new_label="Placeholder", source="staff"
    )
    assert not [item for item in health.review_queue() if item.kind == "reused"]
