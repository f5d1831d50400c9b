"""The labels that teach most, first (issue 19 §4): the review queue ranks its model-side questions by what a label
would teach (uncertainty and unfamiliarity, reviews.health.queue.teaching_value), spreads them over near-duplicate
clusters, and the scripted loop picks its labels in the same order (teaching_order, LoopScenario.label(pick=...))."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import ImageAsset
from classifier.models import Novelty
from reviews import health
from reviews.health.queue import teaching_order
from reviews.loop_scenario import DRIFTED, TASK, LoopScenario
from tests.factories import SitemapFactory
from tests.reviews.test_health import active_model, classify, fix, image

pytestmark = pytest.mark.django_db


def question(sitemap, version, *, margin, ratio=None, confidence=0.6):
    """A live image whose image type the model gave with this margin, and its Novelty ratio when given."""
    placement = image(sitemap)
    classify(placement.asset, version, "image_type", "Dealer", confidence=confidence, margin=margin)
    if ratio is not None:
        Novelty.objects.create(asset=placement.asset, model_version=version, score=0.1 * ratio, ratio=ratio)
    return placement


def same_cluster(placements):
    ImageAsset.objects.filter(pk__in=[p.asset_id for p in placements]).update(cluster_id=placements[0].asset_id)


def test_an_unfamiliar_and_hesitant_image_comes_before_a_merely_hesitant_or_merely_unfamiliar_one():
    version = active_model("image_type")
    sitemap = SitemapFactory()
    hesitant = question(sitemap, version, margin=0.05)
    familiar = question(sitemap, version, margin=0.05, ratio=0.8)  # measured, and like what the model knows
    unfamiliar = question(sitemap, version, margin=0.9, ratio=2.0, confidence=0.95)
    both = question(sitemap, version, margin=0.05, ratio=1.5)

    items = health.review_queue()
    assert [item.placement_id for item in items] == [both.pk, hesitant.pk, familiar.pk, unfamiliar.pk]
    assert [item.kind for item in items] == ["unfamiliar", "hesitated", "hesitated", "unfamiliar"]
    # 0.5 + (uncertainty + unfamiliarity) / 2: uncertainty 1 - margin, unfamiliarity 1 - 1 / ratio above 1.
    assert [item.priority for item in items] == [
        round(0.5 + (0.95 + (1 - 1 / 1.5)) / 2, 4),
        0.975,
        0.975,
        round(0.5 + (0.1 + 0.5) / 2, 4),
    ]


def test_near_duplicates_do_not_crowd_the_top_of_the_queue(settings):
    version = active_model("image_type")
    sitemap = SitemapFactory()
    copies = [question(sitemap, version, margin=0.01 * (i + 1), ratio=3.0) for i in range(5)]  # the most urgent
    same_cluster(copies)
    others = [question(sitemap, version, margin=m) for m in (0.1, 0.12, 0.15)]
    audited = question(sitemap, version, margin=0.9)
    settings.QUEUE_AUDIT_RATE = 1.0  # every image is audited: the confident one is asked as "audit"

    def order(**kwargs):
        return [item.placement_id for item in health.review_queue(**kwargs)]

    # The cluster's first keeps its place; the other copies wait until every other image had its turn. The audit
    # sample keeps its fixed place (priority 1), right after the most teaching question.
    everything = [copies[0].pk, audited.pk, *(p.pk for p in others), *(p.pk for p in copies[1:])]
    assert order() == everything
    assert [item.spread for item in health.review_queue()] == [0] * 5 + [1, 2, 3, 4]
    assert order(limit=3, offset=3) == everything[3:6]  # pages agree with the whole
    assert health.review_queue_count() == 9
    assert order(kind="unfamiliar") == [p.pk for p in copies]  # one cluster, nothing else: in turn

    settings.QUEUE_PER_CLUSTER = 2
    assert order() == [copies[0].pk, copies[1].pk, audited.pk, *(p.pk for p in others), *(p.pk for p in copies[2:])]

    # The spread is a window in the same query: the queue's query count does not grow with the clusters.
    with CaptureQueriesContext(connection) as few:
        health.review_queue()
    more = [question(sitemap, version, margin=0.02 * (i + 1), ratio=2.0) for i in range(30)]
    same_cluster(more[:15])
    with CaptureQueriesContext(connection) as many:
        assert len(health.review_queue(limit=100)) == 39
    assert len(many.captured_queries) == len(few.captured_queries)

    settings.QUEUE_PER_CLUSTER = 0
    with pytest.raises(ImproperlyConfigured, match="QUEUE_PER_CLUSTER must be a whole number of at least 1"):
        health.review_queue()


def test_teaching_order_is_the_queue_s_order_then_the_images_nothing_asks_about():
    version = active_model("image_type")
    sitemap, elsewhere = SitemapFactory(), SitemapFactory()
    copies = [question(sitemap, version, margin=0.01 * (i + 1), ratio=2.0) for i in range(3)]
    same_cluster(copies)
    hesitant = [question(sitemap, version, margin=m) for m in (0.1, 0.05)]
    confident = [question(sitemap, version, margin=m, confidence=0.9) for m in (0.8, 0.4, 0.6)]
    labelled = question(sitemap, version, margin=0.01)
    fix(sitemap.advertiser, labelled.asset, "image_type", "Dealer")  # a human confirmed it: no question
    question(elsewhere, version, margin=0.0)  # another advertiser's question is not in this advertiser's order
    mine = [*copies, *hesitant, *confident, labelled]

    queue = [item.placement_id for item in health.review_queue(user_advertiser_ids=[sitemap.advertiser_id])]
    assert queue == [copies[0].pk, hesitant[1].pk, hesitant[0].pk, copies[1].pk, copies[2].pk]
    ordered = [placement.pk for placement in teaching_order(placements=mine, task="image_type")]
    # The queue's order, then the confident tags by teaching value (the least sure first), then the labelled one.
    assert ordered == [*queue, confident[1].pk, confident[2].pk, confident[0].pk, labelled.pk]

    with pytest.raises(ValueError, match="unknown task 'shape'"):
        teaching_order(placements=mine, task="shape")


@pytest.mark.django_db(transaction=True)
def test_the_loop_labels_what_the_queue_asks_first_or_a_seeded_random_sample(settings):
    settings.DRIFT_REFERENCE_MIN = 50  # alpha's 60 images are enough to measure the drifted ones against
    call_command("register_starter_models")
    scenario = LoopScenario(sizes={"alpha-cars": 60, DRIFTED: 40})
    scenario.generate()
    with scenario.serving():
        scenario.run_all()
    drifted = scenario.shops[DRIFTED]
    advertiser_id = drifted.sitemap.advertiser_id
    asked = [item.asset_id for item in health.review_queue(user_advertiser_ids=[advertiser_id], task=TASK)]
    assert len(asked) >= 3  # the starter model hesitates on, or does not know, some of this style
    assert Novelty.objects.filter(asset_id__in=asked).exists()

    # The queue's questions first, in its order, then the images it does not ask about.
    chosen = [placement.asset_id for placement in scenario.pick(drifted, 10, pick="queue")]
    assert chosen[: len(asked)] == asked[:10]
    assert len(set(chosen)) == 10
    assert scenario.label(fixes={DRIFTED: 10}, pick="queue") == 10
    assert scenario.labelled == set(chosen)
    after = {item.asset_id for item in health.review_queue(user_advertiser_ids=[advertiser_id], task=TASK)}
    assert not after & scenario.labelled  # a human labelled them: no question any more

    scenario.unlabel()  # undone: the queue asks them again, in the same order
    assert scenario.labelled == set()
    assert [item.asset_id for item in health.review_queue(user_advertiser_ids=[advertiser_id], task=TASK)] == asked

    scenario.label(fixes={DRIFTED: 10}, pick="random", seed=3)
    randomly = set(scenario.labelled)
    assert len(randomly) == 10
    assert randomly == {p.asset_id for p in scenario.pick(drifted, 10, pick="random", seed=3)}
    assert randomly != {p.asset_id for p in scenario.pick(drifted, 10, pick="random", seed=4)}
    with pytest.raises(ValueError, match="unknown pick 'best'"):
        scenario.pick(drifted, 10, pick="best")
