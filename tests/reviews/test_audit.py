"""The audit sample (reviews.audit): one membership rule in SQL and Python, audited images in the review queue
whatever the model's confidence, and the unbiased audited accuracy beside the biased one."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F, Value
from django.urls import reverse

from catalog.models import Advertiser
from classifier.training.metrics import LocalAccuracy
from reviews import health
from reviews.accuracy import audit_accuracies, local_accuracies
from reviews.audit import audited, is_audited
from reviews.models import ManualFix
from tests.factories import AdvertiserFactory, SitemapFactory, UserFactory
from tests.reviews.test_health import active_model, classify, fix, image

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True))
    return client


def split_by_audit(sitemap, n, task="image_type"):
    """New live images of the sitemap, as (audited, not audited) placements by the Python rule: n in all, more if
    needed until each side has at least n // 4 (ids differ between runs and backends; the rate of each test is high
    enough that this takes a few more at most)."""
    inside, outside = [], []
    while len(inside) + len(outside) < n or min(len(inside), len(outside)) < n // 4:
        placement = image(sitemap)
        (inside if is_audited(sitemap.advertiser_id, placement.asset_id, task) else outside).append(placement)
    return inside, outside


# The rule -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.02, 0.3])
def test_the_sql_rule_and_its_python_twin_agree_on_many_ids(settings, rate):
    settings.QUEUE_AUDIT_RATE = rate
    Advertiser.objects.bulk_create(Advertiser(name=f"a{n}", slug=f"a{n}") for n in range(250))
    ids = list(Advertiser.objects.values_list("pk", flat=True))
    checked = audited_count = 0
    for task in ("image_type", "color"):
        for step in (1, 7, 1000):
            rows = Advertiser.objects.annotate(
                asset=F("pk") * step + 3,
                audited=audited(advertiser=F("pk"), asset=F("pk") * step + 3, task=Value(task)),
            ).values_list("pk", "asset", "audited")
            for advertiser_id, asset_id, in_sql in rows:
                assert bool(in_sql) is is_audited(advertiser_id, asset_id, task), (advertiser_id, asset_id, task)
                checked += 1
                audited_count += bool(in_sql)
    assert checked == 6 * len(ids) == 1500
    assert abs(audited_count / checked - rate) < max(0.02, rate / 5)  # about the rate: a random-looking share


def test_rates_of_none_and_all_and_a_bad_rate(settings):
    AdvertiserFactory()
    settings.QUEUE_AUDIT_RATE = 0.0
    assert not Advertiser.objects.filter(audited(advertiser=F("pk"), asset=F("pk"), task=Value("color"))).exists()
    assert not is_audited(1, 2, "color")
    settings.QUEUE_AUDIT_RATE = 1.0
    assert Advertiser.objects.filter(audited(advertiser=F("pk"), asset=F("pk"), task=Value("color"))).exists()
    assert is_audited(1, 2, "color")
    settings.QUEUE_AUDIT_RATE = 1.5
    with pytest.raises(ImproperlyConfigured, match=r"QUEUE_AUDIT_RATE must be a share between 0 and 1, not 1\.5$"):
        is_audited(1, 2, "color")


# The queue ----------------------------------------------------------------------------------------------------


def test_audited_unlabelled_images_enter_the_queue_whatever_the_confidence(settings):
    settings.QUEUE_AUDIT_RATE = 0.4
    version = active_model("image_type")
    advertiser = AdvertiserFactory()
    sitemap = SitemapFactory(advertiser=advertiser)
    inside, outside = split_by_audit(sitemap, 24)
    for placement in inside + outside:
        classify(placement.asset, version, "image_type", "Dealer", confidence=0.99, margin=0.98)  # sure of itself
    confirmed, carried, hesitant, *asked = inside
    fix(advertiser, confirmed.asset, "image_type", "Dealer", ManualFix.Source.ADVERTISER)  # a human looked
    origin = fix(advertiser, outside[0].asset, "image_type", "Stock", ManualFix.Source.ADVERTISER)
    fix(advertiser, carried.asset, "image_type", "Dealer", ManualFix.Source.CARRIED, origin=origin)  # no human look
    hesitant.asset.classifications.filter(model_version=version).update(confidence=0.5, margin=0.05)

    items = health.review_queue(limit=100)

    kinds = {item.placement_id: item.kind for item in items}
    assert kinds[hesitant.pk] == "hesitated"  # in the queue for another reason: it keeps that reason, once
    assert kinds[outside[0].pk] == "disagreement"  # the advertiser's fix overturns the model
    audit = {pk for pk, kind in kinds.items() if kind == "audit"}
    assert audit == {p.pk for p in asked} | {carried.pk}  # a carried fix is no human's look
    assert confirmed.pk not in kinds
    assert not {p.pk for p in outside[1:]} & set(kinds)  # confident and not audited: not asked
    assert len(items) == len(kinds)  # one item per image and task
    order = [item.kind for item in items]
    assert order.index("disagreement") < order.index("audit") < order.index("hesitated")  # interleaved by priority
    assert {item.priority for item in items if item.kind == "audit"} == {1.0}
    assert all("random check" in item.reason for item in items if item.kind == "audit")
    assert health.review_queue_count(kind="audit") == len(audit)
    assert {item.placement_id for item in health.review_queue(kind="audit", limit=100)} == audit
    assert health.QUEUE_KINDS["audit"] == "a random check: keeps the accuracy honest"

    settings.QUEUE_AUDIT_RATE = 0.0
    assert health.review_queue_count(kind="audit") == 0


# The accuracy -------------------------------------------------------------------------------------------------


def test_the_wilson_interval_on_known_values():
    low, high = LocalAccuracy(reviewed=10, correct=8).interval
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    # At 0 or n successes the bounds are n / (n + z**2) and z**2 / (n + z**2): 10 / 13.8415 and 3.8415 / 13.8415.
    assert LocalAccuracy(reviewed=10, correct=0).interval == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert LocalAccuracy(reviewed=10, correct=10).interval == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_audited_accuracy_counts_only_audited_images(settings):
    settings.QUEUE_AUDIT_RATE = 0.5
    version = active_model("image_type", "color")
    advertiser = AdvertiserFactory()
    sitemap = SitemapFactory(advertiser=advertiser)
    inside, outside = split_by_audit(sitemap, 40)
    for placement in inside + outside:
        classify(placement.asset, version, "image_type", "Dealer")
    for n, placement in enumerate(inside):
        fix(advertiser, placement.asset, "image_type", "Stock" if n % 4 == 0 else "Dealer", ManualFix.Source.ADVERTISER)
    for placement in outside:  # the hard ones the queue picked: the model was wrong on all of them
        fix(advertiser, placement.asset, "image_type", "Stock")
    correct = sum(1 for n in range(len(inside)) if n % 4)

    key = (advertiser.pk, "image_type")
    audit = audit_accuracies()[key]
    assert (audit.reviewed, audit.correct) == (len(inside), correct)
    assert audit.interval == LocalAccuracy(reviewed=len(inside), correct=correct).interval
    local = local_accuracies()[key]
    assert (local.reviewed, local.correct) == (len(inside) + len(outside), correct)
    assert (advertiser.pk, "color") not in audit_accuracies()  # nothing reviewed: no figure, not 100%

    settings.QUEUE_AUDIT_RATE = 0.0
    assert audit_accuracies() == {}


def test_the_advertisers_screen_shows_both_figures_with_their_labels(settings, staff_client):
    settings.QUEUE_AUDIT_RATE = 0.5
    version = active_model("image_type")
    advertiser = AdvertiserFactory(name="Acme")
    sitemap = SitemapFactory(advertiser=advertiser)
    inside, outside = split_by_audit(sitemap, 16)
    for placement in inside + outside:
        classify(placement.asset, version, "image_type", "Dealer")
        fix(advertiser, placement.asset, "image_type", "Dealer" if placement in inside else "Stock")
    audit = LocalAccuracy(reviewed=len(inside), correct=len(inside))
    low = round(100 * audit.interval[0])

    html = staff_client.get(reverse("reviews:staff-advertisers")).content.decode()

    assert "accuracy on reviewed images (biased toward hard ones): <strong>" in html
    assert f'<span class="reviewed">{len(inside)} of {len(inside) + len(outside)} reviewed</span>' in html
    assert (
        f"audited accuracy (random sample, unbiased): <strong>100%</strong> ({low}%\u2013100%, n={len(inside)})" in html
    )
