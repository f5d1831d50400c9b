"""Vehicle kinds in the loop (issue 20 §2): training judges every candidate per kind on the test split as per
advertiser, the best-candidate rule and the promotion guard treat a kind like an advertiser, and the fit can weigh
each kind alike so that a kind few labels show does not fade."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from classifier.models import ModelVersion, TrainingJob
from classifier.services import training
from classifier.services.promotion import promotion_regressions
from classifier.services.training import training_run, training_start
from classifier.training.refit import kind_weights
from tests.classifier.test_training_candidates import DRIFTED, _manifest, vehicle  # noqa: F401


def candidate(f1: float, kinds: dict[str, float]) -> SimpleNamespace:
    return SimpleNamespace(
        test={"macro_f1": f1, "accuracy": f1},
        local_accuracy={"lot": 0.95},
        local_counts={"lot": {"reviewed": 200}},
        confident_flips={},
        kind_accuracy=kinds,
        kind_counts={kind: {"reviewed": 200} for kind in kinds},
    )


def test_a_candidate_that_lifts_cars_but_costs_motorcycles_is_not_the_best():
    versions = [ModelVersion(pk=1), ModelVersion(pk=2)]
    costly = candidate(0.95, {"car": 0.97, "motorcycle": 0.85})  # motorcycles 0.90 -> 0.85
    keeping = candidate(0.93, {"car": 0.95, "motorcycle": 0.90})
    baseline = {"car": 0.90, "motorcycle": 0.90}
    chosen = training._best(versions, [costly, keeping], {"lot": 0.95}, trained_for=["lot"], baseline_kinds=baseline)
    assert chosen.pk == 2
    # Without the kinds, the costly one would win on macro F1.
    assert training._best(versions, [costly, keeping], {"lot": 0.95}, trained_for=["lot"]).pk == 1


def test_each_kind_weighs_the_same_and_rows_without_a_kind_keep_their_weight():
    weights = kind_weights(["car"] * 8 + ["motorcycle"] * 2 + [""] * 3)
    assert weights[:8].sum() == pytest.approx(weights[8:10].sum())
    assert weights[:10].sum() == pytest.approx(10)
    assert list(weights[10:]) == [1.0, 1.0, 1.0]
    assert list(kind_weights(["", ""])) == [1.0, 1.0]


@pytest.mark.django_db
def test_training_reports_each_kind_and_the_promotion_guard_reads_it(vehicle, settings):  # noqa: F811
    manifest = _manifest(drifted_train=30, drifted_test=20, steady_train=40, steady_test=30, retain=0)
    for item in manifest["items"]:
        item["kind"] = "motorcycle" if item["advertiser"] == DRIFTED else "car"
    job = training_run(job_id=training_start(task="image_type", export_id=7, manifest=manifest, enqueue=False).pk)
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error

    baseline = job.result["baseline"]
    assert set(baseline["kind_accuracy"]) == {"car", "motorcycle"}
    assert baseline["kind_counts"]["motorcycle"]["reviewed"] == 20
    for row in job.result["candidates"]:
        assert set(row["kind_accuracy"]) == {"car", "motorcycle"}
    best = ModelVersion.objects.get(pk=job.result["best"])
    assert best.metrics["kind_accuracy"] == next(
        c["kind_accuracy"] for c in job.result["candidates"] if c["model_version"] == best.pk
    )

    # A candidate whose motorcycles fell is refused by the promotion guard, naming the kind.
    best.metrics = {**best.metrics, "kind_accuracy": {**best.metrics["kind_accuracy"], "motorcycle": 0.0}}
    best.save(update_fields=["metrics"])
    regressions = promotion_regressions(version=best, tasks=["image_type"])
    assert any(r.advertiser == "motorcycle vehicles" for r in regressions), regressions
    assert np.isfinite(baseline["kind_accuracy"]["car"])
