"""Candidate training on the real vehicle starter model and real stored JPEGs: a drifted advertiser (booth photos
of real cars, labelled Dealer by its fixes, which the starter model often calls Stock) gets better, the other
advertiser does not get worse, refusals are clear, and a job that dies mid-training registers nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from classifier.models import Classification, FeatureVector, ModelVersion, TrainingJob
from classifier.runtime import make_session
from classifier.services import training
from classifier.services.training import TrainingError, training_run, training_start
from classifier.synth import drifted_sample, vehicle_sample
from classifier.tasks import training_job_task
from reviews.models import DatasetExport, ExportItem
from tests.classifier.test_features import classify, register_starter, store
from tests.factories import AdvertiserFactory

pytestmark = pytest.mark.django_db

SIZE = (480, 360)
DRIFTED, STEADY = "booth-motors", "lot-cars"


@dataclass
class Scenario:
    vehicle: ModelVersion
    manifest: dict
    timings: dict[str, float]


def _manifest(*, drifted_train: int, drifted_test: int, steady_train: int, steady_test: int, retain: int) -> dict:
    """Stored, production-classified assets and the manifest reviews would hand over for them.

    The drifted advertiser's items carry their true label (Dealer), as its fixes would; the steady advertiser's
    items carry their true image type (fixes and confirmations); retained rows are the starter model's own
    confident tags on other inventory.
    """
    items, retained = [], []
    drifted = [
        (store(s.image), s.image_type)
        for s in (drifted_sample(i, size=SIZE) for i in range(drifted_train + drifted_test))
    ]
    steady = [
        (store(s.image), s.image_type)
        for s in (vehicle_sample(1000 + i, size=SIZE) for i in range(steady_train + steady_test + retain))
    ]
    classify([asset for asset, _ in drifted + steady])
    for i, (asset, label) in enumerate(drifted):
        split = "train" if i < drifted_train else "test"
        items.append({"asset": asset.pk, "label": label, "split": split, "advertiser": DRIFTED, "group": f"d{i}"})
    for i, (asset, label) in enumerate(steady[: steady_train + steady_test]):
        split = "train" if i < steady_train else "test"
        items.append({"asset": asset.pk, "label": label, "split": split, "advertiser": STEADY, "group": f"s{i}"})
    model_tags = dict(
        Classification.objects.filter(task="image_type", confidence__gte=0.9).values_list("asset_id", "label")
    )
    for asset, _ in steady[steady_train + steady_test :]:
        if asset.pk in model_tags:
            retained.append({"asset": asset.pk, "label": model_tags[asset.pk], "advertiser": STEADY})
    return {
        "export": 7,
        "task": "image_type",
        "labels": ["Dealer", "Stock", "Placeholder"],
        "items": items,
        "retain": retained,
    }


@pytest.fixture
def vehicle() -> ModelVersion:
    register_starter("detector")
    return register_starter("vehicle")


def test_the_best_candidate_fixes_the_drifted_advertiser_and_keeps_the_other(vehicle):
    manifest = _manifest(drifted_train=100, drifted_test=60, steady_train=120, steady_test=150, retain=200)
    stages: list[str] = []

    job = training_start(task="image_type", export_id=7, manifest=manifest, enqueue=False)
    job = training_run(job_id=job.pk, progress=lambda fraction, stage: stages.append(stage))

    assert (job.status, job.error) == ("succeeded", "")
    result = job.result
    baseline = result["baseline"]
    best = next(c for c in result["candidates"] if c["model_version"] == result["best"])
    assert best["local_accuracy"][DRIFTED] >= baseline["local_accuracy"][DRIFTED] + 0.1
    assert best["local_accuracy"][STEADY] >= baseline["local_accuracy"][STEADY] - 0.01
    assert best["test"]["macro_f1"] == max(c["test"]["macro_f1"] for c in result["candidates"])
    assert set(best["test"]) >= {"accuracy", "macro_f1", "labels", "per_class", "confusion", "n"}
    assert stages[0].startswith("features ")
    assert [s for s in stages if s.startswith("candidate")] == [f"candidate {k} of 4" for k in range(1, 5)]
    assert stages[-3:] == ["evaluating", "registering", "done"]

    candidates = ModelVersion.objects.filter(status="candidate").order_by("pk")
    assert [c.pk for c in candidates] == [c["model_version"] for c in result["candidates"]]
    for k, candidate in enumerate(candidates, start=1):
        assert candidate.name == f"vehicle refit e7 #{k}"
        assert candidate.contract["name"] == candidate.name
        assert (candidate.parent, candidate.export_id, candidate.training_job) == (vehicle, 7, job)
        assert candidate.params == result["candidates"][k - 1]["params"]
        assert set(candidate.params) == {"anchor", "l2", "class_weight", "pseudo_label_weight"}
        assert candidate.metrics["test"] == result["candidates"][k - 1]["test"]
        assert not candidate.heads.filter(is_active=True).exists()
        assert {h.task for h in candidate.heads.all()} == {"image_type", "color"}
    assert len({c.params["anchor"] for c in candidates}) == 4


def test_only_the_trained_head_changes(vehicle):
    manifest = _manifest(drifted_train=30, drifted_test=10, steady_train=30, steady_test=10, retain=0)
    job = training_run(
        job_id=training_start(task="image_type", export_id=7, manifest=manifest, candidates=1, enqueue=False).pk
    )
    candidate = ModelVersion.objects.get(pk=job.result["best"])
    tensors = np.random.default_rng(0).normal(size=(4, 3, 224, 224)).astype(np.float32)
    outputs = {}
    for version in (vehicle, candidate):
        with version.file.open("rb") as handle:
            outputs[version.pk] = make_session(handle.read()).run(["image_type", "color"], {"image": tensors})
    np.testing.assert_array_equal(outputs[vehicle.pk][1], outputs[candidate.pk][1])  # color: the parent's
    assert not np.allclose(outputs[vehicle.pk][0], outputs[candidate.pk][0])  # image_type: refitted


def _small_manifest() -> dict:
    return _manifest(drifted_train=12, drifted_test=6, steady_train=12, steady_test=6, retain=8)


def test_refusals_say_why_and_create_nothing(vehicle):
    manifest = _small_manifest()

    with pytest.raises(TrainingError, match=r"^model vehicle does not tag intent$"):
        training_start(task="intent", parent=vehicle, export_id=7, manifest={**manifest, "task": "intent"})
    with pytest.raises(TrainingError, match=r"^no model is active for intent"):
        training_start(task="intent", export_id=7, manifest={**manifest, "task": "intent"})
    only_train = {**manifest, "items": [i for i in manifest["items"] if i["split"] == "train"]}
    with pytest.raises(TrainingError, match=r"^export 7 has no test items"):
        training_start(task="image_type", export_id=7, manifest=only_train)
    with pytest.raises(TrainingError, match=r"^export 7 has no train items"):
        training_start(task="image_type", export_id=7, manifest={**manifest, "items": []})
    with pytest.raises(TrainingError, match="'Purple' is not one of the model's image_type labels"):
        training_start(
            task="image_type", export_id=7, manifest={**manifest, "retain": [{"asset": 1, "label": "Purple"}]}
        )
    assert not TrainingJob.objects.exists()

    first = training_start(task="image_type", export_id=7, manifest=manifest, enqueue=False)
    with pytest.raises(TrainingError, match=rf"^export 7 is already being trained \(job {first.pk}\)$"):
        training_start(task="image_type", export_id=7, manifest=manifest, enqueue=False)
    assert TrainingJob.objects.count() == 1


def test_a_running_job_that_stopped_reporting_does_not_block_the_export_for_ever(vehicle, settings):
    settings.TRAINING_LEASE_SECONDS = 600
    manifest = _small_manifest()
    lost = training_start(task="image_type", export_id=7, manifest=manifest, enqueue=False)
    TrainingJob.objects.filter(pk=lost.pk).update(status="running", updated_at=timezone.now() - timedelta(minutes=5))
    with pytest.raises(TrainingError, match="already being trained"):  # still inside its lease
        training_start(task="image_type", export_id=7, manifest=manifest, enqueue=False)

    TrainingJob.objects.filter(pk=lost.pk).update(updated_at=timezone.now() - timedelta(minutes=11))
    again = training_start(task="image_type", export_id=7, manifest=manifest, enqueue=False)

    lost.refresh_from_db()
    assert (lost.status, lost.error) == ("failed", "its worker stopped reporting for over 600 s")
    assert again.status == "queued"


def test_two_jobs_racing_on_one_export_meet_the_database_constraint(vehicle, monkeypatch):
    manifest = _small_manifest()
    first = training_start(task="image_type", export_id=7, manifest=manifest, enqueue=False)
    real = training._already_training
    checks = iter([None])  # the second job's check runs before the first job's row is visible
    monkeypatch.setattr(training, "_already_training", lambda export_id: next(checks, None) or real(export_id))

    with pytest.raises(TrainingError, match=rf"^export 7 is already being trained \(job {first.pk}\)$"):
        training_start(task="image_type", export_id=7, manifest=manifest, enqueue=False)
    assert TrainingJob.objects.count() == 1


def test_a_job_that_dies_mid_training_registers_nothing_and_runs_again(vehicle, monkeypatch):
    manifest = _small_manifest()
    job = training_start(task="image_type", export_id=7, manifest=manifest, candidates=2, enqueue=False)
    real_fit = training._fit
    fits = []

    def dying_fit(*args, **kwargs):
        if fits:
            raise MemoryError("worker killed")
        fits.append(1)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(training, "_fit", dying_fit)
    job = training_run(job_id=job.pk)

    assert (job.status, job.error, job.stage) == ("failed", "MemoryError: worker killed", "failed at: candidate 2 of 2")
    assert not ModelVersion.objects.filter(status="candidate").exists()
    assert FeatureVector.objects.count() == len({r["asset"] for r in manifest["items"] + manifest["retain"]})

    monkeypatch.setattr(training, "_fit", real_fit)
    computed = []
    monkeypatch.setattr("classifier.services.features._compute", lambda **kw: computed.append(kw))
    job = training_run(job_id=job.pk)

    assert (job.status, job.error) == ("succeeded", "")
    assert computed == []  # the features were cached by the run that died
    assert ModelVersion.objects.filter(status="candidate", training_job=job).count() == 2
    assert training_run(job_id=job.pk).result == job.result  # a redelivered task leaves a succeeded job alone
    assert ModelVersion.objects.filter(status="candidate").count() == 2


def test_the_celery_task_runs_the_job_and_start_enqueues_it_after_commit(vehicle, django_capture_on_commit_callbacks):
    manifest = _small_manifest()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = training_start(task="image_type", export_id=7, manifest=manifest, candidates=1)
    assert len(callbacks) == 1  # enqueued after commit, never inside the transaction
    assert training_job_task.name == "classifier.training"

    training_job_task(job.pk)

    job.refresh_from_db()
    assert job.status == "succeeded"
    assert len(job.result["candidates"]) == 1


def _frozen_export(manifest: dict, model_version: ModelVersion) -> DatasetExport:
    """A frozen export holding the manifest's items (as reviews.exports builds them), for the command to read."""
    export = DatasetExport.objects.create(
        task="image_type", status="frozen", sha256="0" * 64, frozen_at=timezone.now(), model_version=model_version
    )
    advertisers = {slug: AdvertiserFactory(slug=slug) for slug in (DRIFTED, STEADY)}
    ExportItem.objects.bulk_create(
        ExportItem(
            export=export,
            advertiser=advertisers[item["advertiser"]],
            asset_id=item["asset"],
            label=item["label"],
            source="staff",
            split=item["split"],
            group=item["group"],
        )
        for item in manifest["items"]
    )
    return export


def test_the_command_prints_the_json_the_issue_asks_for(vehicle, capsys):
    export = _frozen_export(_small_manifest(), vehicle)

    call_command("train_candidates", "--export", str(export.pk), "--candidates", "2", "--json")

    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"export", "baseline", "candidates", "best"}
    assert printed["export"] == export.pk
    assert printed["baseline"]["model_version"] == vehicle.pk
    assert set(printed["baseline"]) == {"model_version", "test"}
    assert [set(c) for c in printed["candidates"]] == [{"model_version", "params", "test", "local_accuracy"}] * 2
    assert printed["best"] in [c["model_version"] for c in printed["candidates"]]
    assert set(printed["candidates"][0]["local_accuracy"]) == {DRIFTED, STEADY}
    export.refresh_from_db()
    assert export.used_for_training_at is not None

    TrainingJob.objects.update(status="running")
    with pytest.raises(CommandError, match=rf"^export {export.pk} is already being trained \(job \d+\)$"):
        call_command("train_candidates", "--export", str(export.pk))
    TrainingJob.objects.update(status="succeeded")

    call_command("train_candidates", "--export", str(export.pk), "--candidates", "1")

    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"export {export.pk}, task image_type, test items: 12"
    assert table[2].split()[:2] == [str(vehicle.pk), "vehicle"]  # the baseline first, then the candidate
    assert table[3].startswith("*")  # one candidate: the best
    assert "anchor 0.01 l2 0.0001 balanced pseudo 0.5" in table[3]
    assert len(ModelVersion.objects.filter(status="candidate")) == 3  # a second job writes distinct files
    with pytest.raises(CommandError, match="export 999999 does not exist"):
        call_command("train_candidates", "--export", "999999")
