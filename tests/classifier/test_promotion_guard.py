"""The promotion guard (issue 19): a candidate trained on one advertiser's labels that flips over 1% of another
advertiser's confident model tags (its shadow pass says so) is refused, by the service, the command and the admin,
unless the regressions are explicitly accepted; the override is recorded with who and the figures. Measured
accuracy on the candidate's export test split counts too."""

import pytest
from django.core.management import CommandError, call_command

from classifier.models import ModelHead, Promotion, TrainingJob
from classifier.services.inference import active_models, classify_assets, forget_sessions
from classifier.services.promotion import PromotionError, model_promote, promotion_regressions
from classifier.services.registry import model_register
from classifier.services.shadow import shadow_run, shadow_start
from reviews.comparison import confident_flips
from reviews.models import ManualFix
from tests.classifier.onnx_builders import classifier_contract, mean_classifier
from tests.classifier.test_shadow_promotion import ACTIVE_LABELS, CANDIDATE_LABELS, place, stored_asset
from tests.factories import AdvertiserFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_sessions():
    forget_sessions()
    yield
    forget_sessions()


@pytest.fixture
def world():
    return guarded_world()


def guarded_world() -> dict:
    """An active model confident on plain colors, and a candidate (green and blue swapped) trained on the labels of
    "first" only. "first" shows red, green and blue; "second" four reds and three blues, one blue fixed by staff:
    of second's six confident model tags, the candidate flips two (33%, over the tolerance of one tag in six)."""
    active = model_register(
        data=mean_classifier(size=(8, 8), color_gain=20),
        contract=classifier_contract(name="active", color_labels=ACTIVE_LABELS),
        activate=True,
    )
    candidate = model_register(
        data=mean_classifier(size=(16, 16), color_gain=20),
        contract=classifier_contract(name="candidate", size=(16, 16), color_labels=CANDIDATE_LABELS),
        metrics={"trained_for": ["first"]},
    )
    first, second = AdvertiserFactory(slug="first", name="First"), AdvertiserFactory(slug="second", name="Second")
    width = iter(range(64, 200))
    assets = {
        "first": [stored_asset(color, next(width)) for color in ("red", "green", "blue")],
        "second": [stored_asset(color, next(width)) for color in ["red"] * 4 + ["blue"] * 3],
    }
    for asset in assets["first"]:
        place(first, asset)
    for asset in assets["second"]:
        place(second, asset)
    classify_assets([*assets["first"], *assets["second"]], active_models())
    ManualFix.objects.create(
        advertiser=second, asset=assets["second"][-1], task="color", old_label="Blue", new_label="Blue", source="staff"
    )
    shadow_run(pass_id=shadow_start(version=candidate, enqueue=False).pk)
    return {"active": active, "candidate": candidate}


def active_color():
    return ModelHead.objects.get(task="color", is_active=True).model_version.name


def test_confident_flips_per_advertiser_leave_the_trained_for_advertiser_to_measured_accuracy(world):
    flips = {entry.advertiser.slug: entry for entry in confident_flips(version=world["candidate"], task="color")}

    assert {slug: (e.confident, e.flipped, e.trained_for, e.over) for slug, e in flips.items()} == {
        "second": (6, 2, False, True),  # the fixed blue is a human's tag, not the model's
        "first": (3, 2, True, False),
    }
    assert [(p.flip_from, p.flip_to) for p in flips["second"].samples] == [("Blue", "Green")] * 2
    assert [r.describe() for r in promotion_regressions(version=world["candidate"])] == [
        "second 33.3% of its confident color tags flipped (2 of 6)"
    ]


def test_the_command_refuses_naming_the_advertiser_and_promotes_with_the_recorded_override(world, capsys):
    candidate = world["candidate"]

    with pytest.raises(CommandError) as refused:
        call_command("activate_model", str(candidate.pk))
    message = str(refused.value)
    assert "\n" not in message
    assert "second 33.3% of its confident color tags flipped (2 of 6)" in message
    assert message.endswith("or accept them with --override-regressions")
    assert (active_color(), Promotion.objects.count()) == ("active", 0)
    with pytest.raises(CommandError, match="--override-regressions"):
        call_command("activate_model", str(candidate.pk), "--force")  # --force is not the override

    call_command("activate_model", str(candidate.pk), "--override-regressions")

    assert active_color() == "candidate"
    assert "regressions accepted, recorded: second 33.3%" in capsys.readouterr().out
    record = Promotion.objects.get(task="color")
    assert record.overrode_regressions["by"].startswith("manage.py activate_model (")
    [accepted] = record.overrode_regressions["regressions"]
    assert {k: accepted[k] for k in ("task", "advertiser", "kind", "count", "changed", "share")} == {
        "task": "color",
        "advertiser": "second",
        "kind": "confident_flips",
        "count": 6,
        "changed": 2,
        "share": 0.3333,
    }
    assert Promotion.objects.get(task="sensitive").overrode_regressions is None  # nothing regressed there


def test_the_service_and_the_admin_action_refuse_without_the_override(world, admin_client):
    candidate, user = world["candidate"], UserFactory(username="lead")
    with pytest.raises(PromotionError, match=r"would likely regress second .*: retrain, or override$"):
        model_promote(version=candidate, user=user)

    admin_client.post(
        "/admin/classifier/modelversion/", {"action": "activate", "_selected_action": [candidate.pk]}, follow=True
    )
    assert (active_color(), Promotion.objects.count()) == ("active", 0)

    promotion = model_promote(version=candidate, user=user, override_regressions=True)
    assert promotion.overrode_regressions["by"] == "lead"
    assert promotion.user == user


def test_a_measured_drop_on_the_export_test_split_is_a_regression_too(world):
    candidate = world["candidate"]
    candidate.metrics = {
        **candidate.metrics,
        "local_accuracy": {"first": 0.80, "second": 0.95},
        "local_counts": {"first": {"reviewed": 200}, "second": {"reviewed": 200}},
    }
    candidate.training_job = TrainingJob.objects.create(
        task="color",
        parent=world["active"],
        export_id=3,
        result={"baseline": {"local_accuracy": {"first": 0.90, "second": 0.95}}},
    )
    candidate.save()

    described = [r.describe() for r in promotion_regressions(version=candidate)]

    assert described == [
        "first color accuracy 90.0% -> 80.0% on 200 reviewed test images",
        "second 33.3% of its confident color tags flipped (2 of 6)",
    ]
