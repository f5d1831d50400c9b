"""Promote, Promote anyway and Roll back ask first: the confirmation names the tasks that switch and the tags that
would flip per advertiser, and nothing changes until it is posted back. Roll back names what it would really make
active again, also after a rollback from the command line."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from classifier.models import ModelHead, Promotion
from classifier.services.promotion import model_promote
from classifier.services.registry import model_register
from classifier.services.shadow import shadow_run, shadow_start
from tests.classifier import test_promotion_guard as guard_tests
from tests.classifier import test_shadow_promotion as shadow_tests
from tests.classifier.onnx_builders import classifier_contract, mean_classifier
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
# The shadow-pass tests' fixtures: an active model and a candidate swapping green and blue, five live pictures.
_fresh_sessions, models, world = shadow_tests._fresh_sessions, shadow_tests.models, shadow_tests.world


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="reviewer", is_staff=True))
    return client


def active_color():
    return ModelHead.objects.get(task="color", is_active=True).model_version.name


def test_promote_shows_the_tasks_and_the_flips_per_advertiser_and_changes_nothing_until_confirmed(staff_client, world):
    _, candidate = world["models"]
    shadow_run(pass_id=shadow_start(version=candidate, enqueue=False).pk)  # green and blue swap
    promote = reverse("reviews:staff-model-promote", args=[candidate.pk])

    asked = staff_client.post(promote, {"task": "color"})

    html = asked.content.decode()
    assert "Promote candidate?" in html
    assert [change.task for change in asked.context["changes"]] == ["color", "sensitive"]
    color = asked.context["changes"][0]
    assert color.current.name == "active"
    flips = {row.advertiser.slug: (row.images, row.flips) for row in color.flips}
    assert flips == {
        "first": (3, {("Blue", "Green"): 1, ("Green", "Blue"): 1}),
        "second": (3, {("Blue", "Green"): 2, ("Green", "Blue"): 1}),
    }
    assert 'data-advertiser="first"' in html
    assert "Green → Blue: 1" in html
    assert "Promote candidate for color, sensitive" in html
    assert (active_color(), Promotion.objects.count()) == ("active", 0)

    stale = staff_client.post(promote, {"task": "color", "confirmed": "color:999,sensitive:999"})
    assert "changed since the confirmation" in stale.content.decode()
    assert (active_color(), Promotion.objects.count()) == ("active", 0)

    done = staff_client.post(promote, {"task": "color", "confirmed": asked.context["signature"]}, follow=True)
    assert "candidate is now the active model for color, sensitive" in done.content.decode()
    assert active_color() == "candidate"
    assert not Promotion.objects.get(task="color").forced


def test_promote_anyway_names_why_it_is_not_instant(staff_client, world):
    _, candidate = world["models"]
    asked = staff_client.post(reverse("reviews:staff-model-promote", args=[candidate.pk]), {"force": "1"})
    html = asked.content.decode()
    assert "Not instant: candidate has had no shadow pass" in html
    assert "Promote candidate anyway for color, sensitive" in html
    assert '<input type="hidden" name="force" value="1">' in html
    assert not Promotion.objects.exists()


def test_roll_back_asks_first_and_names_what_it_would_make_active_after_a_command_line_rollback(staff_client, models):
    _, second = models  # "active" and "candidate"
    third = model_register(data=mean_classifier(size=(4, 4)), contract=classifier_contract(name="third", size=(4, 4)))
    model_promote(version=second, force=True)  # active -> candidate
    model_promote(version=third, force=True)  # candidate -> third
    page = reverse("reviews:staff-models", args=["color"])
    assert "Roll back to candidate…" in staff_client.get(page).content.decode()

    call_command("rollback_model", "--task", "color")  # third -> candidate
    assert active_color() == "candidate"
    offered = staff_client.get(page).content.decode()
    assert "Roll back to third" not in offered  # third was just rolled back from: bringing it back is a promotion
    assert "Roll back to active…" in offered  # what the promotion of the candidate replaced

    rollback = reverse("reviews:staff-model-rollback", args=["color"])
    asked = staff_client.post(rollback)
    assert "Roll back to active?" in asked.content.decode()
    assert [change.task for change in asked.context["changes"]] == ["color", "sensitive"]
    assert active_color() == "candidate"
    staff_client.post(rollback, {"confirmed": asked.context["signature"]})
    assert active_color() == "active"

    nothing = staff_client.get(page).content.decode()
    assert "Nothing to roll back to: every promotion of color was rolled back already" in nothing
    refused = staff_client.post(rollback, follow=True)
    assert "Not rolled back: every promotion of color was rolled back already" in refused.content.decode()
    assert active_color() == "active"


@pytest.fixture
def guarded():
    return guard_tests.guarded_world()


def test_promote_shows_the_confident_flips_and_asks_to_accept_the_regressions_which_it_records(staff_client, guarded):
    candidate = guarded["candidate"]  # trained on "first" only; it flips 2 of "second"'s 6 confident color tags
    promote = reverse("reviews:staff-model-promote", args=[candidate.pk])

    asked = staff_client.post(promote, {"task": "color"})

    html = asked.content.decode()
    color = asked.context["changes"][0]
    assert {e.advertiser.slug: (e.confident, e.flipped, e.trained_for, e.over) for e in color.confident} == {
        "second": (6, 2, False, True),
        "first": (3, 2, True, False),
    }
    assert 'data-advertiser="second" data-confident="6" data-flipped="2" class="regression"' in html
    assert "second 33.3% of its confident color tags flipped (2 of 6)" in html
    assert 'name="override_regressions" value="1" required' in html
    assert "Promote candidate anyway (I accept these regressions) for color, sensitive" in html

    refused = staff_client.post(promote, {"task": "color", "confirmed": asked.context["signature"]}, follow=True)
    assert "Not promoted: promoting candidate would likely regress second 33.3%" in refused.content.decode()
    assert (active_color(), Promotion.objects.count()) == ("active", 0)

    accepted = staff_client.post(
        promote, {"task": "color", "confirmed": asked.context["signature"], "override_regressions": "1"}, follow=True
    )
    assert "(regressions accepted, recorded: second 33.3% of its confident" in accepted.content.decode()
    assert active_color() == "candidate"
    record = Promotion.objects.get(task="color")
    assert (record.user.username, record.overrode_regressions["by"]) == ("reviewer", "reviewer")
    assert [r["advertiser"] for r in record.overrode_regressions["regressions"]] == ["second"]
    models = staff_client.get(reverse("reviews:staff-models", args=["color"])).content.decode()
    assert "likely regressions accepted by reviewer: second 33.3% of its confident color tags flipped" in models


def test_a_confirmation_that_accepted_other_regressions_asks_again(staff_client, guarded):
    candidate = guarded["candidate"]
    promote = reverse("reviews:staff-model-promote", args=[candidate.pk])
    signature = staff_client.post(promote, {"task": "color"}).context["signature"]
    candidate.metrics = {**candidate.metrics, "trained_for": ["first", "second"]}  # no regression any more...
    candidate.save()
    again = staff_client.post(promote, {"task": "color", "confirmed": signature, "override_regressions": "1"})
    assert "changed since the confirmation" in again.content.decode()  # ...what was accepted is not what holds
    assert (active_color(), Promotion.objects.count()) == ("active", 0)
