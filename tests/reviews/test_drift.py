"""Drift seen before anyone reviews: a Run's new images are measured against what the model knows (the features of
other advertisers' live images), on the real starter models and real Runs over local HTTP. The drifted advertiser's
first Run is flagged `drift` (API, Run page, advertisers screen, a notification), a Run of the usual style is not,
and the review queue asks about the most unfamiliar images first."""

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils.html import escape
from rest_framework.test import APIClient

from catalog.models import Placement, Run
from catalog.services.runs import run_execute, run_start
from classifier.models import FeatureVector, Novelty
from notifications.models import Notification, NotificationSetting
from reviews.health import review_queue
from reviews.loop_scenario import DRIFTED, LoopScenario
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

USUAL = "alpha-cars"  # its first Run has nothing to compare with; its images are the reference
LATER = "beta-auto"  # the usual style, measured against alpha's images


def _codes(run: Run) -> list[str]:
    return [flag["code"] for flag in run.health_flags]


def _novelty(slug: str) -> dict[int, float]:
    assets = Placement.objects.filter(listing__sitemap__advertiser__slug=slug).values("asset_id")
    return dict(Novelty.objects.filter(asset_id__in=assets).values_list("asset_id", "ratio"))


@pytest.fixture
def scenario():
    call_command("register_starter_models")
    NotificationSetting.objects.create(emails="ops@imagetagger.example")
    scenario = LoopScenario(sizes={USUAL: 350, LATER: 150, DRIFTED: 150})
    scenario.generate()
    with scenario.serving():
        scenario.run_all()  # alpha, beta, then the drifted newcomer
        yield scenario


def test_the_drifted_advertisers_first_run_is_flagged_and_a_usual_one_is_not(scenario, client):
    alpha, beta, drifted = (Run.objects.get(pk=scenario.shops[slug].runs[0]) for slug in (USUAL, LATER, DRIFTED))

    # Nothing to compare the first advertiser with: no measure, no flag.
    assert "drift" not in _codes(alpha)
    assert _novelty(USUAL) == {}

    # The usual style, measured against alpha's 350 images: not flagged.
    later = _novelty(LATER)
    assert len(later) == 150
    assert "drift" not in _codes(beta), beta.health_flags
    assert sum(ratio > 1 for ratio in later.values()) / len(later) < 0.3

    # The drifted style, against alpha's and beta's images: flagged, with its figures.
    [flag] = [flag for flag in drifted.health_flags if flag["code"] == "drift"]
    beta_unfamiliar = sum(ratio > 1 for ratio in later.values())  # left out of the reference
    assert (flag["new_images"], flag["measured"], flag["reference"]) == (150, 150, 500 - beta_unfamiliar)
    assert flag["share"] >= 0.3
    # Apart from the usual share (the starter models that know five vehicle kinds find the booth less strange than
    # the car-only ones did: 35% against 20%, where it was 66-85%).
    assert flag["share"] > 1.5 * flag["usual_share"]
    assert flag["message"].startswith(f"{round(flag['share'] * 100)}% of the Run's 150 new images are unlike")

    staff = UserFactory(is_staff=True)
    api = APIClient()
    api.force_authenticate(staff)
    assert "drift" in [f["code"] for f in api.get(f"/api/runs/{drifted.pk}/").json()["health_flags"]]
    assert "drift" not in [f["code"] for f in api.get(f"/api/runs/{beta.pk}/").json()["health_flags"]]

    # Shown on the Run page and the advertisers screen, with a link to the queue's unfamiliar images.
    client.force_login(staff)
    queue_link = f"{reverse('reviews:staff-queue')}?advertiser={drifted.sitemap.advertiser_id}&amp;reason=unfamiliar"
    for url in (reverse("reviews:staff-run", args=[drifted.pk]), reverse("reviews:staff-advertisers")):
        page = client.get(url).content.decode()
        assert 'data-code="drift"' in page, url
        assert escape(flag["message"]) in page
        assert queue_link in page
    assert 'data-code="drift"' not in client.get(reverse("reviews:staff-run", args=[beta.pk])).content.decode()

    # Notified like the other flags.
    [notification] = Notification.objects.filter(run=drifted)
    assert [f["code"] for f in notification.payload["flags"]] == ["drift"]
    assert not Notification.objects.filter(run__in=[alpha, beta]).exists()

    # The review queue asks about the unfamiliar images first, those a label would teach most (the most unfamiliar
    # and least sure: reviews.health.queue.teaching_value) ahead, one near-duplicate cluster at a time.
    ratios = {**later, **_novelty(DRIFTED)}
    first = review_queue(limit=20)
    assert [item.kind for item in first] == ["unfamiliar"] * 20
    assert [item.priority for item in first] == sorted((item.priority for item in first), reverse=True)
    for item in first:
        assert item.margin is not None
        assert item.priority == round(0.5 + ((1 - item.margin) + (1 - 1 / ratios[item.asset_id])) / 2, 4)
    assert {item.spread for item in first} == {0}
    drifted_assets = set(_novelty(DRIFTED))
    assert sum(item.asset_id in drifted_assets for item in first) >= 15

    # An unchanged re-run brings no new image: no model pass, no measure, no flag.
    vectors = FeatureVector.objects.count()
    again = run_start(sitemap=drifted.sitemap, enqueue=False)
    run_execute(run_id=again.pk, inline=True)
    again.refresh_from_db()
    assert again.classified == 0
    assert "drift" not in _codes(again)
    assert FeatureVector.objects.count() == vectors
