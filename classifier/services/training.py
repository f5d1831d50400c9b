"""Candidate models from a dataset export: refit the parent's head on cached features, evaluate, register.

A training job reads a manifest (built by reviews from a frozen DatasetExport; classifier never imports
reviews): the labelled items with their split and advertiser, and `retain` rows, confident model tags that no
human changed. It runs on the `training` queue, so tagging never waits for it:

1. features of every item, retained row and guard row under the parent (`features.asset_features`, cached per
   asset);
2. N candidate heads, one per `refit.default_grid(N)` setting (class-balanced; anchors a decade apart);
3. the parent's own head (the baseline) and each candidate on the test split: accuracy, macro F1, per class,
   confusion, and local accuracy per advertiser; and on the manifest's `guard` rows (live images of every
   advertiser that no human labelled, where the parent's stored tag is confident), the share of those tags each
   candidate would flip, per advertiser: the evidence for the advertisers the test split does not hold;
4. every candidate written as ONNX (only the trained head's weights differ from the parent's) and registered
   in ONE transaction, as ModelVersions with status candidate.

Registration is last and atomic, so a worker killed at any point leaves no half-registered model: the job is
failed or still running, and running it again restarts from the (cached) features.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import numpy as np
import onnx
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import Advertiser
from classifier.contract import parse_contract
from classifier.models import Classification, ModelHead, ModelVersion, TrainingJob
from classifier.services.features import FeatureError, asset_features
from classifier.services.registry import RegistryError, model_register
from classifier.training.adapter import GRID, adapter_features_name, with_input_adapter
from classifier.training.metrics import LocalAccuracy
from classifier.training.refit import (
    CandidateSettings,
    HeadLayer,
    RefitError,
    default_grid,
    evaluate,
    find_head,
    fit_with_settings,
    kind_weights,
    predict,
    write_refit_model,
)
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
# Share of the job's progress each stage takes (features dominate the first run; fits dominate re-runs).
_FEATURES, _FITTING, _EVALUATING = 0.5, 0.4, 0.05


class TrainingError(ApplicationError):
    """A training job is refused or cannot go on; the message says why in one line (shown as 400/409)."""

    code = "training_refused"


def _active_version(task: str) -> ModelVersion:
    head = ModelHead.objects.filter(task=task, is_active=True).select_related("model_version").first()
    if head is None:
        raise TrainingError(f"no model is active for {task}: nothing to refit")
    return head.model_version


def scope_manifest(manifest: dict[str, Any], slug: str) -> dict[str, Any]:
    """The manifest narrowed to one advertiser's rows (items, retained and guard rows): what a scoped head trains
    and is judged on. The rest of the inventory is not its business: it answers for this advertiser only."""
    scoped = dict(manifest)
    for key in ("items", "retain", "guard"):
        if key in manifest:
            scoped[key] = [row for row in manifest[key] if str(row.get("advertiser", "")) == slug]
    scoped["advertiser"] = slug
    return scoped


def _check_manifest(*, task: str, export_id: int, manifest: dict[str, Any], labels: list[str]) -> None:
    if manifest.get("task", task) != task:
        raise TrainingError(f"export {export_id} is a {manifest['task']} dataset, not {task}")
    items = manifest.get("items") or []
    for split in ("train", "test"):
        if not any(item.get("split") == split for item in items):
            raise TrainingError(f"export {export_id} has no {split} items: nothing to {split} on")
    unknown = sorted({row["label"] for row in [*items, *manifest.get("retain", [])]} - set(labels))
    if unknown:
        raise TrainingError(f"label {unknown[0]!r} is not one of the model's {task} labels ({', '.join(labels)})")


def _lease_seconds() -> int:
    return int(getattr(settings, "TRAINING_LEASE_SECONDS", 900))


def _fail_abandoned(export_id: int) -> None:
    """A running job that has not reported for a lease lost its worker (and its task, or it would have been
    redelivered): fail it, so that the export can be trained again. Queued jobs wait for a worker, untouched."""
    cutoff = timezone.now() - timedelta(seconds=_lease_seconds())
    TrainingJob.objects.filter(export_id=export_id, status=TrainingJob.Status.RUNNING, updated_at__lt=cutoff).update(
        status=TrainingJob.Status.FAILED,
        error=f"its worker stopped reporting for over {_lease_seconds()} s",
        finished_at=timezone.now(),
        updated_at=timezone.now(),
    )


def _already_training(export_id: int) -> TrainingError | None:
    job = TrainingJob.objects.filter(export_id=export_id, status__in=TrainingJob.ACTIVE).first()
    if job is None:
        return None
    return TrainingError(f"export {export_id} is already being trained (job {job.pk})")


def training_start(
    *,
    task: str,
    export_id: int,
    manifest: dict[str, Any],
    candidates: int = 4,
    user: AbstractBaseUser | None = None,
    parent: ModelVersion | None = None,
    advertiser: Advertiser | None = None,
    enqueue: bool = True,
) -> TrainingJob:
    """Creates a queued TrainingJob for `candidates` candidates refitted from `parent` (by default the active
    model of `task`) on the export's manifest, and enqueues it on the training queue after commit.

    Raises TrainingError when there is no such parent, the parent does not tag `task`, the manifest has no
    train or no test items or labels the head does not know, the number of candidates is out of range, or
    another job of this export is queued or running (a running job silent for settings.TRAINING_LEASE_SECONDS,
    900 by default, lost its worker: it is failed and no longer stands in the way).

    With `advertiser`, the candidates are scoped heads (classifier.services.scoped): the manifest is narrowed to that
    advertiser's rows (`scope_manifest`), which must hold train and test items, and the parent's head is their prior.
    """
    parent = parent or _active_version(task)
    head = ModelHead.objects.filter(model_version=parent, task=task).first()
    if head is None:
        raise TrainingError(f"model {parent.name} does not tag {task}")
    if parent.advertiser_id is not None:
        raise TrainingError(f"model {parent.name} is a scoped head: refit from the global model")
    if advertiser is not None:
        manifest = scope_manifest(manifest, advertiser.slug)
    _check_manifest(task=task, export_id=export_id, manifest=manifest, labels=list(head.labels))
    try:
        default_grid(candidates)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    _fail_abandoned(export_id)
    refusal = _already_training(export_id)
    if refusal is not None:
        raise refusal
    try:
        with transaction.atomic():
            job = TrainingJob.objects.create(
                task=task,
                parent=parent,
                export_id=export_id,
                manifest=manifest,
                candidates_wanted=candidates,
                advertiser=advertiser,
                created_by=user,  # type: ignore[misc]
                stage="queued",
            )
    except IntegrityError as exc:  # the other job was created between the check and here
        raise _already_training(export_id) or TrainingError(f"export {export_id}: {exc}") from exc
    if enqueue:
        from classifier.tasks import training_job_task

        training_job_task.delay_on_commit(job.pk)  # type: ignore[attr-defined]  # not in celery-types yet
    return job


def _one_line(error: BaseException, limit: int = 500) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, TrainingError | FeatureError | RefitError | RegistryError):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Reporter:
    """Writes the job's stage and progress (at most once per 1% or stage change) and echoes to `progress`."""

    def __init__(self, job: TrainingJob, progress: Progress | None) -> None:
        self.job = job
        self.callback = progress
        self.written = (-1.0, "")

    def __call__(self, fraction: float, stage: str) -> None:
        fraction = min(1.0, max(0.0, fraction))
        if stage != self.written[1] or fraction - self.written[0] >= 0.01:
            # updated_at is the heartbeat that `_fail_abandoned` reads.
            TrainingJob.objects.filter(pk=self.job.pk).update(
                progress=fraction, stage=stage[:200], updated_at=timezone.now()
            )
            self.job.progress, self.job.stage = fraction, stage
            self.written = (fraction, stage)
        if self.callback is not None:
            self.callback(fraction, stage)


def _test_result(
    probabilities: np.ndarray, y_true: np.ndarray, advertisers: list[str], labels: list[str]
) -> tuple[dict[str, Any], dict[str, float], dict[str, dict[str, Any]]]:
    """TEST, {slug: accuracy}, {slug: LocalAccuracy.as_dict()} of predictions on the test items."""
    y_pred = probabilities.argmax(axis=1)
    test = evaluate([int(v) for v in y_true], [int(v) for v in y_pred], labels)
    reviewed: dict[str, int] = defaultdict(int)
    correct: dict[str, int] = defaultdict(int)
    for slug, truth, guess in zip(advertisers, y_true, y_pred, strict=True):
        reviewed[slug] += 1
        correct[slug] += int(truth == guess)
    local = {slug: LocalAccuracy(reviewed=reviewed[slug], correct=correct[slug]) for slug in sorted(reviewed)}
    accuracy = {slug: float(value.accuracy or 0.0) for slug, value in local.items()}
    return test, accuracy, {slug: value.as_dict() for slug, value in local.items()}


def _by_kind(
    probabilities: np.ndarray, y_true: np.ndarray, kinds: list[str], labels: list[str]
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """{kind: accuracy}, {kind: LocalAccuracy.as_dict()} on the test items whose vehicle kind is known."""
    known = [i for i, kind in enumerate(kinds) if kind]
    if not known:
        return {}, {}
    _, accuracy, counts = _test_result(probabilities[known], y_true[known], [kinds[i] for i in known], labels)
    return accuracy, counts


@dataclasses.dataclass
class _Candidate:
    settings: CandidateSettings
    weight: np.ndarray
    bias: np.ndarray
    test: dict[str, Any]
    local_accuracy: dict[str, float]
    local_counts: dict[str, dict[str, Any]]
    confident_flips: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    kind_accuracy: dict[str, float] = dataclasses.field(default_factory=dict)  # per vehicle kind, on the test split
    kind_counts: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def _candidate_bytes(parent_data: bytes, head: HeadLayer, candidate: _Candidate, job: TrainingJob, k: int) -> bytes:
    """The parent's ONNX with only this head's weights replaced, and where it comes from in its metadata.

    The metadata makes each job's files distinct: refitting is deterministic, so two jobs on the same export
    would otherwise write byte-identical files, which the registry (idempotent by SHA-256) would merge.
    """
    model = onnx.load_from_string(write_refit_model(parent_data, head.output, candidate.weight, candidate.bias))
    for key, value in (
        ("imagetagger.parent_sha256", job.parent.sha256),
        ("imagetagger.advertiser", str(job.manifest.get("advertiser", ""))),
        ("imagetagger.export", str(job.export_id)),
        ("imagetagger.training_job", str(job.pk)),
        ("imagetagger.candidate", str(k)),
        ("imagetagger.settings", json.dumps(dataclasses.asdict(candidate.settings))),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def _register(
    *, job: TrainingJob, parent_data: bytes, head: HeadLayer, candidates: list[_Candidate], trained_for: list[str]
) -> list[ModelVersion]:
    """Registers every candidate; the caller holds the transaction, so it is all of them or none.

    Its metrics keep what the promotion guard reads: `local_accuracy` / `local_counts` on the test split,
    `confident_flips` on the guard rows, and `trained_for`, the advertisers whose reviewed labels were in the export.
    """
    files = [_candidate_bytes(parent_data, head, c, job, k) for k, c in enumerate(candidates, start=1)]
    versions = []
    for k, (candidate, data) in enumerate(zip(candidates, files, strict=True), start=1):
        scope = f" for {job.manifest['advertiser']}" if job.advertiser_id else ""
        name = f"{job.parent.name} refit{scope} e{job.export_id} #{k}"
        contract = {**job.parent.contract, "name": name}
        metrics: dict[str, object] = {
            "test": candidate.test,
            "local_accuracy": candidate.local_accuracy,
            "local_counts": candidate.local_counts,
            "confident_flips": candidate.confident_flips,
            "trained_for": trained_for,
            "kind_accuracy": candidate.kind_accuracy,
            "kind_counts": candidate.kind_counts,
        }
        if head.features == adapter_features_name(head.output):
            metrics["adapter"] = {"cells": GRID * GRID, "features": head.n_features}
        version = model_register(data=data, contract=contract, activate=False, metrics=metrics)
        version.name = name
        version.status = ModelVersion.Status.CANDIDATE
        version.parent = job.parent
        version.export_id = job.export_id
        version.training_job = job
        version.params = dataclasses.asdict(candidate.settings)
        version.metrics = metrics
        version.advertiser_id = job.advertiser_id
        version.notes = (
            f"Head {job.task} refitted from {job.parent.name}{scope} on export {job.export_id} (job {job.pk})."
        )
        version.save()
        versions.append(version)
    return versions


@dataclasses.dataclass
class _Guard:
    """The manifest's guard rows whose stored parent tag is confident: asset, advertiser (slug), the stored label."""

    assets: list[int]
    advertisers: list[str]
    labels: list[str]


def _guard(manifest: dict[str, Any], *, parent: ModelVersion, task: str, labelled: set[int]) -> _Guard:
    """The guard rows (live images of every advertiser that no human labelled) on which the parent's stored result
    for the task has a confidence of CONFIDENT or more, with that stored label: the tags a candidate must not flip.

    The stored label is read here, from the parent's own Classification rows, so the rule holds for any parent."""
    rows = [row for row in manifest.get("guard", []) if int(row["asset"]) not in labelled]
    ids = sorted({int(row["asset"]) for row in rows})
    stored: dict[int, str] = {}
    for start in range(0, len(ids), 5000):
        stored.update(
            Classification.objects.filter(
                model_version=parent,
                task=task,
                status=Classification.Status.OK,
                confidence__gte=CONFIDENT,
                asset_id__in=ids[start : start + 5000],
            ).values_list("asset_id", "label")
        )
    kept = [row for row in rows if int(row["asset"]) in stored]
    return _Guard(
        assets=[int(row["asset"]) for row in kept],
        advertisers=[str(row["advertiser"]) for row in kept],
        labels=[stored[int(row["asset"])] for row in kept],
    )


def _confident_flips(probabilities: np.ndarray, guard: _Guard, labels: list[str]) -> dict[str, dict[str, int]]:
    """{slug: {"confident": n, "flipped": k}}: of the advertiser's confident stored tags, how many these
    predictions change."""
    out: dict[str, dict[str, int]] = {}
    for slug, stored, guess in zip(guard.advertisers, guard.labels, probabilities.argmax(axis=1), strict=True):
        entry = out.setdefault(slug, {"confident": 0, "flipped": 0})
        entry["confident"] += 1
        entry["flipped"] += int(labels[int(guess)] != stored)
    return dict(sorted(out.items()))


def _fit(
    features: np.ndarray,
    labels: np.ndarray,
    head: HeadLayer,
    setting: CandidateSettings,
    pseudo: np.ndarray,
    row_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One candidate head (a seam: tests make it fail to play a worker that dies mid-training)."""
    return fit_with_settings(features, labels, head, setting, pseudo=pseudo, row_weight=row_weight)


def _train(job: TrainingJob, report: _Reporter) -> None:
    """The work of `training_run`; raises on any failure, registers nothing before the very end.

    Retained knowledge, and why two mechanisms: fixes come from the advertisers whose photos the model gets
    wrong, so a head fitted on them alone drifts toward those advertisers and the others lose accuracy (the
    issue allows them at most 1 point). (1) The manifest's `retain` rows, confident model tags on live
    inventory that nobody changed, go in as pseudo-labels weighted by the setting's `pseudo_label_weight`: they
    show the fit what the rest of the inventory looks like and how the parent labels it, in the regions of
    feature space the fixes never visit. (2) The L2-SP anchor pulls the weights toward the parent's, which
    keeps the parent's behaviour for classes and directions that neither fixes nor retained rows cover (a label
    with no rows at all). Pseudo-labels alone would not bound how far an under-determined weight moves; the
    anchor alone, strong enough to protect everyone, stops the drifted advertiser from being learnt. The grid
    spans anchors a decade apart, and the evidence picks (`_best`): measured accuracy on the held-out test split
    for the advertisers whose reviewed labels are in the export, and for every other advertiser with live images
    (the test split does not hold them) the share of its confident model tags, on images no human labelled, that
    the candidate would flip.
    """
    manifest = job.manifest
    parent = job.parent
    model_head = ModelHead.objects.filter(model_version=parent, task=job.task).first()
    if model_head is None:
        raise TrainingError(f"model {parent.name} does not tag {job.task}")
    labels = list(model_head.labels)
    _check_manifest(task=job.task, export_id=job.export_id, manifest=manifest, labels=labels)
    grid = default_grid(job.candidates_wanted)
    index = {label: i for i, label in enumerate(labels)}

    items = manifest["items"]
    train = [item for item in items if item["split"] == "train"]
    test = [item for item in items if item["split"] == "test"]
    labelled = {item["asset"] for item in items}
    # A retained row on an image that humans labelled would contradict or duplicate it (and on a test image
    # it would leak the answer into training): the human label wins.
    retain = [row for row in manifest.get("retain", []) if row["asset"] not in labelled]

    rows = [*train, *retain, *test]
    guard = _guard(manifest, parent=parent, task=job.task, labelled=labelled)
    ids = [int(row["asset"]) for row in rows] + guard.assets

    def features_progress(done: int, total: int) -> None:
        report(_FEATURES * done / max(total, 1), f"features {done}/{total}")

    # A scoped head also reads the input's coarse colors (classifier.training.adapter): one advertiser's style may be
    # one the embedding keeps too little of (settings.SCOPED_HEAD_ADAPTER).
    adapter = job.advertiser_id is not None and settings.SCOPED_HEAD_ADAPTER
    features = asset_features(version=parent, task=job.task, asset_ids=ids, progress=features_progress, adapter=adapter)
    n_fit = len(train) + len(retain)
    x_fit, x_test, x_guard = features[:n_fit], features[n_fit : len(rows)], features[len(rows) :]
    y_fit = np.array([index[row["label"]] for row in [*train, *retain]], dtype=np.int64)
    pseudo = np.r_[np.zeros(len(train), dtype=bool), np.ones(len(retain), dtype=bool)]
    y_test = np.array([index[item["label"]] for item in test], dtype=np.int64)
    advertisers = [str(item.get("advertiser", "")) for item in test]
    # Vehicle kinds (the active detector's, in the manifest): the test split is judged per kind as per advertiser,
    # and, with settings.TRAINING_BALANCE_KINDS, each kind weighs the same in the fit, so that a kind few labels
    # show does not fade from one retrain to the next.
    kinds_test = [str(item.get("kind", "")) for item in test]
    kinds_fit = [str(row.get("kind", "")) for row in [*train, *retain]]
    row_weight = kind_weights(kinds_fit) if settings.TRAINING_BALANCE_KINDS else None

    with parent.file.open("rb") as handle:
        parent_data = handle.read()
    if adapter:  # the parent with its head on the adapter, the added weights zero: it answers as the parent does
        spec = parse_contract(parent.contract).input
        size = (spec.height, spec.width)
        parent_data = with_input_adapter(
            parent_data, model_head.output, layout=spec.layout, size=size
        ).SerializeToString()
    head = find_head(onnx.load_from_string(parent_data), model_head.output)

    fitted = []
    for k, setting in enumerate(grid, start=1):
        report(_FEATURES + _FITTING * (k - 1) / len(grid), f"candidate {k} of {len(grid)}")
        fitted.append((setting, *_fit(x_fit, y_fit, head, setting, pseudo, row_weight)))

    report(_FEATURES + _FITTING, "evaluating")
    baseline_test, baseline_local, baseline_counts = _test_result(
        predict(x_test, head.weight, head.bias), y_test, advertisers, labels
    )
    # Stored tags the parent's own head no longer gives on the computed features (a crop or decode that differs
    # from the one classified): the floor under every candidate's flips, shown beside them.
    baseline_flips = _confident_flips(predict(x_guard, head.weight, head.bias), guard, labels)
    baseline_kinds, baseline_kind_counts = _by_kind(predict(x_test, head.weight, head.bias), y_test, kinds_test, labels)
    candidates = []
    for setting, weight, bias in fitted:
        probabilities = predict(x_test, weight, bias)
        test_result, local, counts = _test_result(probabilities, y_test, advertisers, labels)
        flips = _confident_flips(predict(x_guard, weight, bias), guard, labels)
        kind_accuracy, kind_counts = _by_kind(probabilities, y_test, kinds_test, labels)
        candidates.append(
            _Candidate(setting, weight, bias, test_result, local, counts, flips, kind_accuracy, kind_counts)
        )
    trained_for = sorted({str(item.get("advertiser", "")) for item in items})

    report(_FEATURES + _FITTING + _EVALUATING, "registering")
    # The candidates and the job's success in one transaction: a worker killed before the commit leaves no
    # candidate and a job to run again; after it, a succeeded job that a redelivered task returns as it is.
    with transaction.atomic():
        versions = _register(
            job=job, parent_data=parent_data, head=head, candidates=candidates, trained_for=trained_for
        )
        best = _best(versions, candidates, baseline_local, trained_for=trained_for, baseline_kinds=baseline_kinds)
        job.result = {
            "export": job.export_id,
            "baseline": {
                "model_version": parent.pk,
                "test": baseline_test,
                "local_accuracy": baseline_local,
                "local_counts": baseline_counts,
                "confident_flips": baseline_flips,
                "kind_accuracy": baseline_kinds,
                "kind_counts": baseline_kind_counts,
            },
            "candidates": [
                {
                    "model_version": version.pk,
                    "params": version.params,
                    "test": candidate.test,
                    "local_accuracy": candidate.local_accuracy,
                    "local_counts": candidate.local_counts,
                    "confident_flips": candidate.confident_flips,
                    "kind_accuracy": candidate.kind_accuracy,
                    "kind_counts": candidate.kind_counts,
                }
                for version, candidate in zip(versions, candidates, strict=True)
            ],
            "best": best.pk,
            "max_drop": MAX_ADVERTISER_DROP,
            "max_confident_flips": MAX_CONFIDENT_FLIPS,
            "trained_for": trained_for,
            "sizes": {"train": len(train), "retain": len(retain), "test": len(test), "guard": len(guard.assets)},
        }
        job.status = TrainingJob.Status.SUCCEEDED
        job.progress = 1.0
        job.stage = "done"
        job.error = ""
        job.finished_at = timezone.now()
        job.save(update_fields=["result", "status", "progress", "stage", "error", "finished_at", "updated_at"])


# A candidate that makes any advertiser's local accuracy on the test split drop by more than this is not picked
# as the best while another candidate keeps every advertiser: the loop must not buy one advertiser's recovery
# with another's accuracy. On a small test split one image is more than a point: one image of an advertiser is
# then tolerated (noise, not forgetting). The screens still show every candidate; staff may promote any.
MAX_ADVERTISER_DROP = 0.01


def drop_tolerance(test_items: int) -> float:
    """The drop allowed for an advertiser with this many test items: a point, or one of its images if more."""
    return max(MAX_ADVERTISER_DROP, 1.0 / test_items if test_items else 0.0) + 1e-9


def over_tolerance(local: dict[str, float], baseline_local: dict[str, float], counts: dict[str, Any]) -> float:
    """How far the worst advertiser falls beyond its tolerance on the test split (0: every one is kept)."""
    excess = [
        baseline_local[slug] - value - drop_tolerance(int(counts.get(slug, {}).get("reviewed", 0)))
        for slug, value in local.items()
        if slug in baseline_local
    ]
    return max([0.0, *excess])


# A model tag this confident is one the model "knew": nobody reviews it, everybody relies on it. Changing one is a
# likely regression (the export's retained pseudo-labels, the training guard and the promotion guard read it).
CONFIDENT = 0.9
# The evidence for an advertiser with no reviewed labels in the export: a candidate that flips more than this share
# of its confident model tags (or one of them when the advertiser has fewer than 100) is not picked as the best
# while another candidate keeps everyone, and is promoted only with an explicit, recorded override.
MAX_CONFIDENT_FLIPS = 0.01


def flip_tolerance(confident: int) -> float:
    """The share of an advertiser's confident tags a candidate may flip: 1%, or one of them if that is more."""
    return max(MAX_CONFIDENT_FLIPS, 1.0 / confident if confident else 0.0) + 1e-9


def flips_over_tolerance(confident_flips: dict[str, dict[str, int]], trained_for: Iterable[str]) -> dict[str, float]:
    """{slug: how far the flipped share goes beyond its tolerance} for every advertiser over it, except those in
    `trained_for` (their reviewed labels were in the export: measured accuracy judges them, and changing their
    confident tags may be the very point)."""
    exempt = set(trained_for)
    over = {}
    for slug, counts in confident_flips.items():
        confident, flipped = int(counts.get("confident", 0)), int(counts.get("flipped", 0))
        if slug in exempt or not confident:
            continue
        excess = flipped / confident - flip_tolerance(confident)
        if excess > 0:
            over[slug] = excess
    return over


def _best(
    versions: list[ModelVersion],
    candidates: list[Any],
    baseline_local: dict[str, float],
    *,
    trained_for: Iterable[str] = (),
    baseline_kinds: dict[str, float] | None = None,
) -> ModelVersion:
    """The best candidate: the highest macro F1 (then accuracy) among those that keep every advertiser and every
    vehicle kind, both within its measured-accuracy tolerance on the test split and, for the advertisers not in the
    export, within its confident-flip tolerance (flips_over_tolerance); if none does, the one that oversteps least."""
    trained_for = list(trained_for)
    pairs = list(zip(versions, candidates, strict=True))
    drops = {
        version.pk: max(
            [
                over_tolerance(candidate.local_accuracy, baseline_local, candidate.local_counts),
                over_tolerance(
                    getattr(candidate, "kind_accuracy", {}), baseline_kinds or {}, getattr(candidate, "kind_counts", {})
                ),
                *flips_over_tolerance(candidate.confident_flips, trained_for).values(),
            ]
        )
        for version, candidate in pairs
    }
    keeping = [pair for pair in pairs if drops[pair[0].pk] <= 0.0]
    if not keeping:
        return min(pairs, key=lambda pair: (drops[pair[0].pk], -pair[1].test["macro_f1"], pair[0].pk))[0]
    return max(keeping, key=lambda pair: (pair[1].test["macro_f1"], pair[1].test["accuracy"], -pair[0].pk))[0]


def training_run(*, job_id: int, progress: Progress | None = None) -> TrainingJob:
    """Runs a training job to the end: features, candidates, evaluation, then registration in one transaction.

    Idempotent and resumable: a succeeded job is returned as it is; a queued, running (its worker died) or
    failed job starts again from the features, which are cached, since nothing was registered before the end.
    Any error fails the job with a one-line reason and registers nothing. `progress(fraction, stage)` echoes
    what is written to the job (stages "features 1200/3000", "candidate 2 of 4", "evaluating", "registering").
    """
    job = TrainingJob.objects.select_related("parent").get(pk=job_id)
    if job.status == TrainingJob.Status.SUCCEEDED:
        return job
    try:
        with transaction.atomic():
            TrainingJob.objects.filter(pk=job.pk).update(
                status=TrainingJob.Status.RUNNING,
                started_at=timezone.now(),
                finished_at=None,
                progress=0.0,
                stage="starting",
                error="",
                updated_at=timezone.now(),
            )
    except IntegrityError as exc:  # a failed job re-run while another job of its export is active
        raise _already_training(job.export_id) or TrainingError(str(exc)) from exc
    job.refresh_from_db()
    report = _Reporter(job, progress)
    try:
        _train(job, report)
    except Exception as exc:
        logger.exception("training job %s failed", job.pk)
        job.status = TrainingJob.Status.FAILED
        job.error = _one_line(exc)
        job.stage = f"failed at: {job.stage}"[:200]
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "stage", "finished_at", "updated_at"])
        return job
    if progress is not None:
        progress(1.0, "done")
    return job


def predictions_on_test_split(*, job: TrainingJob, version: ModelVersion) -> list[tuple[dict[str, Any], str, float]]:
    """What `version` (the job's parent, the baseline, or one of its candidates) says on each test item of the job's
    manifest, as training evaluated it: its head on the parent's cached features. [(item, predicted label,
    confidence)], in the manifest's order: the images behind each cell of the comparison's confusion matrices."""
    if version.pk != job.parent_id and version.training_job_id != job.pk:
        raise TrainingError(f"{version.name} is neither the parent nor a candidate of training job {job.pk}")
    model_head = ModelHead.objects.filter(model_version=job.parent, task=job.task).first()
    if model_head is None:
        raise TrainingError(f"model {job.parent.name} does not tag {job.task}")
    test = [item for item in job.manifest.get("items", []) if item.get("split") == "test"]
    if not test:
        return []
    with version.file.open("rb") as handle:
        head = find_head(onnx.load_from_string(handle.read()), model_head.output)
    adapted = head.features == adapter_features_name(model_head.output)  # a scoped candidate on the adapter
    features = asset_features(
        version=job.parent, task=job.task, asset_ids=[int(item["asset"]) for item in test], adapter=adapted
    )
    probabilities = predict(features, head.weight, head.bias)
    labels = list(model_head.labels)
    return [(item, labels[int(row.argmax())], float(row.max())) for item, row in zip(test, probabilities, strict=True)]
