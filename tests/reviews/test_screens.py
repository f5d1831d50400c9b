"""The staff grid and the advertiser portal, through Django's test client."""

import pytest
from django.urls import reverse

from catalog.models import Membership
from classifier.models import Classification
from reviews.effective_store import effective_tags_refresh
from reviews.models import ManualFix
from tests.factories import (
    ImageAssetFactory,
    ListingFactory,
    MembershipFactory,
    PlacementFactory,
    SitemapFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(register_tiny):
    return register_tiny()  # color (red/green/blue) and sensitive heads, active


def classify(placement, model, label, confidence=0.9, margin=0.5):
    Classification.objects.create(
        asset=placement.asset, model_version=model, task="color", label=label, confidence=confidence,
        margin=margin, scores={label: confidence},
    )  # fmt: skip


def make_sitemap(n, model=None, **kwargs):
    sitemap = SitemapFactory(**kwargs)
    listing = ListingFactory(sitemap=sitemap)
    placements = [
        PlacementFactory(listing=listing, position=i, status="ok", asset=ImageAssetFactory()) for i in range(n)
    ]
    if model:
        for i, placement in enumerate(placements):
            classify(placement, model, "red" if i % 2 else "green", confidence=0.2 + 0.07 * i)
    effective_tags_refresh(sitemap_id=sitemap.pk)  # rows made here, not by the services: the stored tags follow
    return sitemap, placements


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True))
    return client


def test_the_grid_shows_tags_with_their_source_in_constant_queries(staff_client, model, django_assert_max_num_queries):
    small, _ = make_sitemap(3, model)
    large, _ = make_sitemap(12, model)
    url = reverse("reviews:staff-grid", args=[large.pk])

    with django_assert_max_num_queries(12) as few:
        staff_client.get(reverse("reviews:staff-grid", args=[small.pk]), {"task": "color"})
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = staff_client.get(url, {"task": "color"})

    html = page.content.decode()
    assert page.status_code == 200
    assert html.count('tabindex="0" data-id=') == 12
    assert "model 0.27" in html  # the confidence of the model's tag


def test_filters_narrow_the_grid_in_sql(staff_client, model):
    sitemap, placements = make_sitemap(10, model)
    url = reverse("reviews:staff-grid", args=[sitemap.pk])

    reds = staff_client.get(url, {"task": "color", "label": "red"})
    assert reds.context["page"].total == 5
    unsure = staff_client.get(url, {"task": "color", "confidence_below": "0.5"})
    assert unsure.context["page"].total == 5  # 0.20, 0.27, 0.34, 0.41, 0.48
    ordered = staff_client.get(url, {"task": "color", "sort": "confidence"})
    assert [i.placement for i in ordered.context["page"].items][:2] == placements[:2]
    assert staff_client.get(url, {"task": "color", "fixed": "yes"}).context["page"].total == 0


def test_update_saves_every_pending_change_in_one_post(staff_client, model):
    sitemap, placements = make_sitemap(4, model)
    url = reverse("reviews:staff-fixes", args=[sitemap.pk])

    response = staff_client.post(
        url,
        {
            "task": "color",
            "change": [
                f"{placements[0].pk}:color:Blue",
                f"{placements[1].pk}:color:Green",
                f"{placements[2].pk}:color:Green",
            ],
        },
    )

    assert response.status_code == 302
    fixes = ManualFix.objects.order_by("asset_id")
    assert [(f.asset_id, f.old_label, f.new_label, f.source) for f in fixes] == [
        (placements[0].asset_id, "green", "Blue", "staff"),
        (placements[1].asset_id, "red", "Green", "staff"),
    ]  # placements[2] is green already (the model's "green"): no fix recorded
    grid = staff_client.get(reverse("reviews:staff-grid", args=[sitemap.pk]), {"task": "color", "fixed": "yes"})
    assert grid.context["page"].total == 2


def test_bulk_retag_of_everything_the_filter_matches(staff_client, model):
    sitemap, _ = make_sitemap(6, model)
    bulk = {"task": "color", "label": "green", "bulk_label": "White", "bulk_task": "color", "select_all": "filter"}
    url = reverse("reviews:staff-fixes", args=[sitemap.pk])
    confirmation = staff_client.post(url, bulk)  # first the count and a sample, nothing written
    assert (confirmation.context["bulk"].count, len(confirmation.context["sample"])) == (3, 3)
    assert not ManualFix.objects.exists()
    response = staff_client.post(url, {**bulk, "bulk_token": confirmation.context["token"]})
    assert response.status_code == 302
    assert set(ManualFix.objects.values_list("new_label", flat=True)) == {"White"}
    assert ManualFix.objects.count() == 3  # the three green ones only


def test_the_image_page_shows_history_and_reverts(staff_client, model):
    sitemap, placements = make_sitemap(1, model)
    placement = placements[0]
    staff_client.post(reverse("reviews:staff-fixes", args=[sitemap.pk]), {"change": f"{placement.pk}:color:Blue"})
    fix = ManualFix.objects.get()

    page = staff_client.get(reverse("reviews:staff-image", args=[placement.pk])).content.decode()
    assert "green → <strong>Blue</strong>" in page
    staff_client.post(reverse("reviews:staff-revert", args=[fix.pk]), {"placement": placement.pk})
    revert = ManualFix.objects.order_by("-id").first()  # no fix was in effect before: withdrawn, the model's green
    assert (revert.withdraws, revert.reverts) == (True, fix)
    page = staff_client.get(reverse("reviews:staff-image", args=[placement.pk])).content.decode()
    assert 'Blue → <em class="withdrawn">withdrawn: back to the model</em>' in page


def test_the_portal_shows_an_advertiser_only_its_own(client, model):
    mine, my_placements = make_sitemap(2, model)
    theirs, their_placements = make_sitemap(2, model)
    user = MembershipFactory(advertiser=mine.advertiser).user
    client.force_login(user)

    assert client.get(reverse("reviews:portal-sitemaps")).context["sitemaps"].get() == mine
    assert client.get(reverse("reviews:portal-grid", args=[mine.pk])).status_code == 200
    for url in (
        reverse("reviews:portal-grid", args=[theirs.pk]),
        reverse("reviews:portal-image", args=[their_placements[0].pk]),
    ):
        response = client.get(url)
        assert response.status_code == 404
        assert their_placements[0].url.encode() not in response.content
    forged = client.post(
        reverse("reviews:portal-fixes", args=[theirs.pk]), {"change": f"{their_placements[0].pk}:color:Blue"}
    )
    assert forged.status_code == 404
    # A placement of theirs smuggled into a post on my own sitemap is ignored, not fixed.
    client.post(reverse("reviews:portal-fixes", args=[mine.pk]), {"change": f"{their_placements[0].pk}:color:Blue"})
    assert not ManualFix.objects.exists()
    assert client.get(reverse("reviews:staff-grid", args=[mine.pk])).status_code == 403  # not staff

    client.post(reverse("reviews:portal-fixes", args=[mine.pk]), {"change": f"{my_placements[0].pk}:color:Blue"})
    assert ManualFix.objects.get().source == "advertiser"


def test_a_viewer_cannot_change_tags(client, model):
    sitemap, placements = make_sitemap(1, model)
    user = MembershipFactory(advertiser=sitemap.advertiser, role=Membership.Role.VIEWER).user
    client.force_login(user)
    response = client.post(
        reverse("reviews:portal-fixes", args=[sitemap.pk]), {"change": f"{placements[0].pk}:color:Blue"}
    )
    assert response.status_code == 403
    assert not ManualFix.objects.exists()


def test_the_advertisers_screen_and_the_queue_render(staff_client, model):
    sitemap, placements = make_sitemap(3, model)
    Classification.objects.filter(asset=placements[0].asset).update(margin=0.01, confidence=0.4)

    health = staff_client.get(reverse("reviews:staff-advertisers"))
    assert health.status_code == 200
    assert str(sitemap.advertiser) in health.content.decode()

    queue = staff_client.get(reverse("reviews:staff-queue"))
    assert queue.status_code == 200
    first = queue.context["items"][0]
    assert (first.placement, first.task) == (placements[0], "color")

    decided = staff_client.post(
        reverse("reviews:staff-queue-decide"), {"placement": placements[0].pk, "task": "color", "label": "green"}
    )
    assert decided.status_code == 302
    decision = ManualFix.objects.get()
    assert (decision.note, decision.is_confirmation, decision.settles) == (
        "confirmed: decided in the review queue",
        True,
        True,
    )
    assert all(
        item.placement != placements[0] for item in staff_client.get(reverse("reviews:staff-queue")).context["items"]
    )
