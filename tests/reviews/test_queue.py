"""The review queue: its count and the day's progress, paging beyond the first 50, filters, the crop box on the
thumbnail, decisions recorded as change sets and their undo, and no question the tag rules make moot."""

import re

import pytest
from django.urls import reverse

from catalog.models import Task
from classifier.models import Classification
from reviews import health
from reviews.models import ChangeSet, ManualFix
from reviews.services import FixError, review_decision_record
from reviews.services.decisions import last_decision, review_decision_undo
from tests.factories import AdvertiserFactory, ImageAssetFactory, SitemapFactory, UserFactory
from tests.reviews.test_health import active_model, classify, fix, image

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = UserFactory(is_staff=True)
    client.force_login(user)
    client.user = user
    return client


def hesitant(sitemap, version, n, task="image_type", label="Dealer", **kwargs):
    """n images the model hesitated on (margins 0.01, 0.02, ...: the first is the most urgent)."""
    placements = [image(sitemap) for _ in range(n)]
    for i, placement in enumerate(placements):
        classify(placement.asset, version, task, label, confidence=0.5, margin=round(0.01 * (i + 1) / 10, 4), **kwargs)
    return placements


def test_the_queue_pages_beyond_the_first_50_in_one_order(staff):
    version = active_model("image_type")
    placements = hesitant(SitemapFactory(), version, 120)

    assert health.review_queue_count() == 120
    everything = [item.placement_id for item in health.review_queue(limit=120)]
    assert everything == [p.pk for p in placements]  # most hesitant first
    assert [item.placement_id for item in health.review_queue(limit=50, offset=50)] == everything[50:100]

    first = staff.get(reverse("reviews:staff-queue"))
    third = staff.get(reverse("reviews:staff-queue"), {"page": 3})
    assert [item.placement_id for item in first.context["items"]] == everything[:50]
    assert [item.placement_id for item in third.context["items"]] == everything[100:]
    assert (third.context["pages"], third.context["remaining"]) == (3, 120)
    html = third.content.decode()
    assert "Items 101\u2013120 of 120" in html
    assert 'rel="next"' not in html
    assert 'href="/staff/queue/?page=2" rel="prev"' in html


def test_the_queue_filters_by_advertiser_task_and_reason(staff):
    version = active_model("image_type", "color")
    ours, theirs = SitemapFactory(), SitemapFactory()
    our_types = hesitant(ours, version, 2)
    our_colors = hesitant(ours, version, 3, task="color", label="Red")
    their_types = hesitant(theirs, version, 4)
    failed = image(ours)
    classify(failed.asset, version, "image_type", failed="onnxruntime: bad input")

    def ids(**params):
        response = staff.get(reverse("reviews:staff-queue"), params)
        return {item.placement_id for item in response.context["items"]}, response.context["remaining"]

    assert ids(advertiser=ours.advertiser_id) == ({p.pk for p in [*our_types, *our_colors, failed]}, 6)
    assert ids(task="color") == ({p.pk for p in our_colors}, 3)
    assert ids(reason="failed") == ({failed.pk}, 1)
    assert ids(advertiser=theirs.advertiser_id, task="image_type", reason="hesitated") == (
        {p.pk for p in their_types}, 4
    )  # fmt: skip
    assert ids(advertiser=theirs.advertiser_id, reason="failed") == (set(), 0)
    # Malformed filters are ignored, not errors.
    assert ids(advertiser="x", task="nope", reason="<script>")[1] == 10
    page = staff.get(reverse("reviews:staff-queue"), {"task": "color"}).content.decode()
    assert '<option value="color" selected>' in page
    assert '<input type="hidden" name="task" value="color">' in page  # decisions carry the filters along


def test_the_crop_box_is_drawn_on_the_thumbnail_scaled_to_it(staff):
    version = active_model("color")
    asset = ImageAssetFactory(width=1600, height=1200)
    placement = image(SitemapFactory(), asset)
    result = classify(asset, version, "color", "Red", margin=0.05)
    # The box is in the original's pixels: 400..1200 of 1600 is 25%..75%, wherever the thumbnail shows it.
    Classification.objects.filter(pk=result.pk).update(crop_box=[400, 300, 1200, 900])

    [item] = health.review_queue()
    assert (item.placement_id, item.crop_box) == (placement.pk, [400, 300, 1200, 900])
    html = staff.get(reverse("reviews:staff-queue")).content.decode()
    assert re.search(r'<span class="crop always" style="left:25.00%;top:25.00%;width:50.00%;height:50.00%"', html)


def test_a_decision_is_a_change_set_that_undo_writes_back(staff):
    version = active_model("image_type")
    sitemap = SitemapFactory()
    [placement] = hesitant(sitemap, version, 1)
    [before] = health.review_queue()

    answer = staff.post(
        reverse("reviews:staff-queue-decide"),
        {"placement": placement.pk, "task": "image_type", "label": "Stock"},
        HTTP_HX_REQUEST="true",
    )
    decision = ManualFix.objects.get()
    assert (decision.change_set.kind, decision.change_set.user, decision.old_label) == (
        "decision",
        staff.user,
        "Dealer",
    )
    html = answer.content.decode()
    assert f'data-change-set="{decision.change_set_id}"' in html
    assert '<div id="queue-progress" class="queue-progress" hx-swap-oob="true">' in html
    assert re.search(r'class="queue-decided">1<', html)
    assert health.review_queue() == []
    assert health.queue_decided_today() == 1

    undone = staff.post(
        reverse("reviews:staff-queue-undo"), {"change_set": decision.change_set_id}, HTTP_HX_REQUEST="true"
    )
    assert "undone: image_type is asked again (no fix: Dealer again)" in undone.content.decode()
    back = ManualFix.objects.order_by("-id").first()  # no fix was in effect before the decision: a withdrawal
    assert (back.old_label, back.new_label, back.withdraws, back.reverts, back.source) == (
        "Stock", "", True, decision, "staff"
    )  # fmt: skip
    assert back.change_set.undoes == decision.change_set
    assert ManualFix.objects.count() == 2  # history is append-only: the decision stays
    # The question comes back exactly as it was asked, and the day's count forgets the undone decision.
    assert [(i.placement_id, i.kind, i.reason) for i in health.review_queue()] == [
        (before.placement_id, before.kind, before.reason)
    ]
    assert health.queue_decided_today() == 0
    again = staff.post(
        reverse("reviews:staff-queue-undo"), {"change_set": decision.change_set_id}, HTTP_HX_REQUEST="true"
    )
    assert again.status_code == 409
    assert "undone already" in again.content.decode()


def test_undoing_a_confirmation_withdraws_it_and_asks_again(staff):
    version = active_model("image_type")
    [placement] = hesitant(SitemapFactory(), version, 1)
    staff.post(
        reverse("reviews:staff-queue-decide"), {"placement": placement.pk, "task": "image_type", "label": "Dealer"}
    )
    confirmation = ManualFix.objects.get()
    assert confirmation.is_confirmation
    assert health.review_queue() == []

    response = staff.post(reverse("reviews:staff-queue-undo"), follow=True)  # no id: the user's last decision

    assert "undone: image_type is asked again" in response.content.decode()
    assert ManualFix.objects.order_by("id").last().withdraws  # the model's Dealer is no human label any more
    assert ChangeSet.objects.get(kind="undo").undoes == confirmation.change_set
    assert [item.kind for item in health.review_queue()] == ["hesitated"]
    assert last_decision(user=staff.user) is None


def test_a_conflict_decided_then_undone_is_a_conflict_again():
    version = active_model("image_type")
    placement = image(SitemapFactory())
    advertiser = placement.listing.sitemap.advertiser
    classify(placement.asset, version, "image_type", "Dealer")
    fix(advertiser, placement.asset, "image_type", "Stock")
    fix(advertiser, placement.asset, "image_type", "Dealer", ManualFix.Source.ADVERTISER, old_label="Stock")
    [before] = health.review_queue()
    assert before.kind == "conflict"
    user = UserFactory(is_staff=True)

    decision = review_decision_record(placement=placement, task="image_type", label="Stock", user=user)
    assert health.review_queue() == []
    review_decision_undo(change_set=decision.change_set, user=user)

    assert [(i.kind, i.reason) for i in health.review_queue()] == [(before.kind, before.reason)]


def test_undo_refuses_when_someone_fixed_the_image_since():
    version = active_model("image_type")
    [placement] = hesitant(SitemapFactory(), version, 1)
    user = UserFactory(is_staff=True)
    decision = review_decision_record(placement=placement, task="image_type", label="Stock", user=user)
    fix(placement.listing.sitemap.advertiser, placement.asset, "image_type", "Placeholder", ManualFix.Source.ADVERTISER)

    with pytest.raises(FixError, match="changed by someone since"):
        review_decision_undo(change_set=decision.change_set, user=user)
    assert not ChangeSet.objects.filter(kind="undo").exists()


def test_a_viewer_or_editor_cannot_undo(client):
    version = active_model("image_type")
    [placement] = hesitant(SitemapFactory(), version, 1)
    decision = review_decision_record(placement=placement, task="image_type", label="Stock", user=None)
    client.force_login(UserFactory())
    assert client.post(reverse("reviews:staff-queue-undo"), {"change_set": decision.change_set_id}).status_code == 403
    assert not ChangeSet.objects.filter(kind="undo").exists()


def test_no_color_or_intent_question_about_a_placeholder():
    version = active_model("image_type", "color", "intent")
    sitemap = SitemapFactory()
    placeholder, dealer = image(sitemap), image(sitemap)
    for placement, kind in ((placeholder, "Placeholder"), (dealer, "Dealer")):
        classify(placement.asset, version, "image_type", kind, confidence=0.99, margin=0.9)
        classify(placement.asset, version, "color", "Red", confidence=0.4, margin=0.05)
        classify(placement.asset, version, "intent", "No Shopping Intent", confidence=0.4, margin=0.05)

    assert {(i.placement_id, i.task) for i in health.review_queue()} == {(dealer.pk, "color"), (dealer.pk, "intent")}
    assert health.review_queue_count(task=Task.INTENT) == 1
    # A placeholder by a fix, too; and a model that failed on its intent asks nothing either.
    fix(sitemap.advertiser, dealer.asset, "image_type", "Placeholder")
    other = image(sitemap)
    classify(other.asset, version, "image_type", "Placeholder", confidence=0.99, margin=0.9)
    classify(other.asset, version, "intent", failed="onnxruntime: bad input")
    assert health.review_queue() == []


def test_no_question_about_the_models_color_where_the_scrape_gave_one():
    version = active_model("color")
    sitemap = SitemapFactory()
    configured = image(sitemap, attributes={"color": "red"})
    classify(configured.asset, version, "color", failed="onnxruntime: bad input")
    unconfigured = image(sitemap)
    classify(unconfigured.asset, version, "color", failed="onnxruntime: bad input")

    assert [item.placement_id for item in health.review_queue()] == [unconfigured.pk]
    # A fix makes it a question again: the fix beats the scrape, and someone may disagree with it.
    fix(sitemap.advertiser, configured.asset, "color", "Blue", ManualFix.Source.ADVERTISER)
    assert {item.placement_id for item in health.review_queue()} == {configured.pk, unconfigured.pk}


def test_the_count_and_the_day_s_decisions_follow_the_filters(staff):
    version = active_model("image_type", "color")
    ours, theirs = SitemapFactory(advertiser=AdvertiserFactory()), SitemapFactory()
    [ours_type] = hesitant(ours, version, 1)
    hesitant(theirs, version, 2)
    review_decision_record(placement=ours_type, task="image_type", label="Stock", user=staff.user)

    assert health.queue_decided_today(user_advertiser_ids=[ours.advertiser_id]) == 1
    assert health.queue_decided_today(user_advertiser_ids=[theirs.advertiser_id]) == 0
    assert health.queue_decided_today(task="color") == 0
    page = staff.get(reverse("reviews:staff-queue"), {"advertiser": theirs.advertiser_id})
    assert (page.context["remaining"], page.context["decided_today"]) == (2, 0)
    page = staff.get(reverse("reviews:staff-queue"))
    assert (page.context["remaining"], page.context["decided_today"]) == (2, 1)
    assert '<progress max="3" value="1"' in page.content.decode()
