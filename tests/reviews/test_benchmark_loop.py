"""manage.py benchmark_loop per task (--tasks), at a tiny size on the real starter models: the color loop labels
colors only (none for a placeholder), promotes a color candidate and leaves image_type's model alone. Figures are
asserted for shape and range, never time."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from classifier.contract import VEHICLE_KINDS
from classifier.models import ModelHead, Promotion, TrainingJob
from reviews.models import ManualFix

pytestmark = pytest.mark.django_db(transaction=True)
TINY = ["--assets", "120", "--drifted", "50", "--others", "1", "--unlabelled", "0", "--fixes", "30"]
TINY += ["--other-fixes", "20", "--candidates", "1"]


def test_the_color_loop_labels_colors_and_promotes_a_color_model():
    call_command("register_starter_models", stdout=io.StringIO())
    image_type_model = ModelHead.objects.get(task="image_type", is_active=True).model_version_id
    out = io.StringIO()
    call_command("benchmark_loop", *TINY, "--tasks", "color", "--json", stdout=out, stderr=io.StringIO())
    figures = json.loads(out.getvalue())

    assert figures["tasks"] == ["color"]
    assert "image_type" not in figures
    assert len(figures["load_average"]) == 3
    color = figures["color"]
    assert set(color["timings_s"]) == {"export", "1 candidates", "shadow pass", "promotion"}
    assert set(color["others_held_out"]) == {"shop-0"}
    for value in (color["drifted"]["held_out_before"], color["drifted"]["held_out_after"]):
        assert 0.0 <= value <= 1.0
    # Only color labels (a fix or a confirmation each), at most one per chosen image (none on a placeholder).
    assert set(ManualFix.objects.values_list("task", flat=True)) == {"color"}
    assert 0 < ManualFix.objects.count() <= 50
    assert ModelHead.objects.get(task="color", is_active=True).model_version_id == color["best"]["model_version"]
    assert ModelHead.objects.get(task="image_type", is_active=True).model_version_id == image_type_model
    assert list(Promotion.objects.values_list("task", flat=True)) == ["color"]


@pytest.mark.parametrize("value", ["bogus", "color,nope", ","])
def test_an_unknown_task_is_a_one_line_error(value):
    with pytest.raises(CommandError, match=r"^--tasks .*: a comma-separated list of image_type, color$"):
        call_command("benchmark_loop", "--tasks", value)


def test_the_kinds_mode_prints_each_kinds_accuracy_before_and_after_both_retrains():
    call_command("register_starter_models", stdout=io.StringIO())
    active = dict(ModelHead.objects.filter(is_active=True).values_list("task", "model_version_id"))
    out = io.StringIO()
    arguments = ["--kinds", "--assets", "150", "--fixes", "40", "--candidates", "1", "--tasks", "image_type"]
    call_command("benchmark_loop", *arguments, "--json", stdout=out, stderr=io.StringIO())
    figures = json.loads(out.getvalue())

    assert figures["labels"] == {"cars-north": 40, "cars-south": 40, "fleet-motors": 4}
    kinds = figures["kinds"]["image_type"]
    assert {"car", "motorcycle", "bus_rv", "truck"} <= set(kinds) <= set(VEHICLE_KINDS)
    for row in kinds.values():
        assert row["images"] > 0
        for name in ("before", "not rebalanced", "rebalanced"):
            assert 0.0 <= row[name] <= 1.0
    # Car-heavy labels: cars are the kind labelled most, and far more than motorcycles or buses.
    labelled = figures["labelled_kinds"]
    assert max(labelled, key=labelled.__getitem__) == "car"
    assert labelled["car"] > 2 * max(labelled.get("motorcycle", 0), labelled.get("bus_rv", 0))
    expected_loss = max(0.0, *(row["before"] - row["rebalanced"] for row in kinds.values()))
    assert figures["largest_loss_rebalanced"]["image_type"] == pytest.approx(expected_loss, abs=1e-4)
    # Two retrains of one export, nothing promoted.
    assert dict(ModelHead.objects.filter(is_active=True).values_list("task", "model_version_id")) == active
    assert not Promotion.objects.exists()
    assert TrainingJob.objects.filter(status="succeeded").count() == 2
