"""Drift: how unlike what the model knows a Run's new images are, measured at every Run, before anyone reviews.

The model's reference, per active image_type version: the penultimate features (FeatureVector, cached per asset) of
up to settings.DRIFT_REFERENCE_SIZE live images of other advertisers that this version classified, the accepted live
images, leaving out those that a Run found unfamiliar (they are what the model does not know). Images with features
already cached come first, so a full reference costs no model pass. A reference of fewer than
settings.DRIFT_REFERENCE_MIN images gives no measure, so no drift flag: there is nothing to compare with (the first
advertisers after a model's promotion). Measured on the synthetic styles (classifier.synth), a reference of 240
images or less hardly separates the drifted style from the usual one; from 300 on, 11-19% of usual new images and
43-77% of the drifted style's are above the 0.8 quantile (DRIFT_QUANTILE), the more apart the bigger the reference.

A Run's new images are the live images of its sitemap that the version first classified during the Run; at most
settings.DRIFT_SAMPLE of them, evenly spread, are measured (classifier.novelty: mean cosine distance to their
settings.DRIFT_NEIGHBOURS nearest reference images; unfamiliar above the settings.DRIFT_QUANTILE quantile of the
reference's own distances). Each measured image keeps its score (Novelty), which the review queue orders by.

Cost: one model pass per image whose features are not cached yet (~10 ms with its decode): the Run's sample
(at most DRIFT_SAMPLE a Run), and the reference once per model version (up to DRIFT_REFERENCE_SIZE). It is done by
run_drift_features (settings.RUN_BEFORE_FINISH) outside the finishing transaction; the health step then reads cached
vectors. A Run that brought no new image costs one query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db.models import Exists, OuterRef

from catalog.models import ImageAsset, Placement, Run, Task
from classifier.models import Classification, FeatureVector, ModelHead, ModelVersion, Novelty
from classifier.novelty import Reference

from .features import FeatureError, asset_features

logger = logging.getLogger(__name__)

TASK = Task.IMAGE_TYPE


@dataclass(frozen=True)
class DriftPlan:
    """What a Run's drift measure compares: its new images (all, and the measured sample) and the reference."""

    version: ModelVersion
    new_images: int
    sample: list[int]
    reference: list[int]


@dataclass(frozen=True)
class DriftMeasure:
    """The Run's new images against the model's reference."""

    model_version: int
    new_images: int  # first classified by the version during the Run
    measured: int  # the sample measured (at most settings.DRIFT_SAMPLE)
    unfamiliar: int  # of the measured, above the reference's threshold
    reference: int  # reference images
    usual_share: float  # share of the reference itself above its threshold (about 1 - DRIFT_QUANTILE)
    threshold: float

    @property
    def share(self) -> float:
        return self.unfamiliar / self.measured if self.measured else 0.0


def _active_version(run: Run) -> ModelVersion | None:
    if TASK not in run.sitemap.tasks_enabled:
        return None
    head = ModelHead.objects.filter(task=TASK, is_active=True).select_related("model_version").first()
    return head.model_version if head is not None else None


def run_new_asset_ids(*, run: Run, version: ModelVersion) -> list[int]:
    """Live images of the Run's sitemap that `version` first classified (image_type, ok) during the Run."""
    if run.started_at is None:
        return []
    return list(
        Classification.objects.filter(
            model_version=version,
            task=TASK,
            status=Classification.Status.OK,
            created_at__gte=run.started_at,
            asset_id__in=Placement.objects.filter(
                listing__sitemap_id=run.sitemap_id, is_gone=False, listing__is_gone=False, status=Placement.Status.OK
            ).values("asset_id"),
        )
        .order_by("asset_id")
        .values_list("asset_id", flat=True)
    )


def evenly_spread(ids: list[int], size: int) -> list[int]:
    """At most `size` of the ids, evenly spread over them (all when there are no more)."""
    if len(ids) <= size:
        return list(ids)
    return [ids[i * len(ids) // size] for i in range(size)]


def reference_asset_ids(*, run: Run, version: ModelVersion, exclude: list[int]) -> list[int]:
    """The model's reference for the Run: up to DRIFT_REFERENCE_SIZE live images of other advertisers that `version`
    classified (image_type, ok), none that a Run found unfamiliar; those with features of the version cached first,
    then the newest. One query."""
    advertiser = run.sitemap.advertiser_id
    rows = (
        ImageAsset.objects.filter(
            Exists(
                Placement.objects.filter(
                    asset_id=OuterRef("pk"), is_gone=False, listing__is_gone=False, status=Placement.Status.OK
                ).exclude(listing__sitemap__advertiser_id=advertiser)
            ),
            Exists(
                Classification.objects.filter(
                    asset_id=OuterRef("pk"), model_version=version, task=TASK, status=Classification.Status.OK
                )
            ),
        )
        .exclude(Exists(Novelty.objects.filter(asset_id=OuterRef("pk"), model_version=version, ratio__gt=1.0)))
        .exclude(pk__in=exclude)
        .annotate(cached=Exists(FeatureVector.objects.filter(asset_id=OuterRef("pk"), model_version=version)))
        .order_by("-cached", "-pk")
        .values_list("pk", flat=True)[: settings.DRIFT_REFERENCE_SIZE]
    )
    return list(rows)


def run_drift_plan(*, run: Run) -> DriftPlan | None:
    """What the Run's drift measure compares, or None when there is nothing to measure (no active image_type model
    for its tasks, no new image) or nothing to compare with (a reference under DRIFT_REFERENCE_MIN images)."""
    version = _active_version(run)
    if version is None:
        return None
    new = run_new_asset_ids(run=run, version=version)
    if not new:
        return None
    sample = evenly_spread(new, settings.DRIFT_SAMPLE)
    reference = reference_asset_ids(run=run, version=version, exclude=new)
    if len(reference) < max(settings.DRIFT_REFERENCE_MIN, settings.DRIFT_NEIGHBOURS + 1):
        return None
    return DriftPlan(version=version, new_images=len(new), sample=sample, reference=reference)


def run_drift_features(*, run: Run) -> None:
    """Computes (and caches) the features the Run's drift measure reads: its sample of new images and the reference
    (settings.RUN_BEFORE_FINISH, outside the finishing transaction, so the model passes hold no lock)."""
    plan = run_drift_plan(run=run)
    if plan is not None:
        asset_features(version=plan.version, task=TASK, asset_ids=plan.reference + plan.sample)


def run_drift_measure(*, run: Run) -> DriftMeasure | None:
    """Measures the Run's new images against the model's reference and stores each measured image's Novelty
    (idempotent: measured again, the rows are overwritten). None when there is nothing to measure or compare with
    (run_drift_plan), or when features cannot be computed (an unreadable original: logged)."""
    plan = run_drift_plan(run=run)
    if plan is None:
        return None
    try:
        features = asset_features(version=plan.version, task=TASK, asset_ids=plan.reference + plan.sample)
    except FeatureError as exc:
        logger.warning("run %s: no drift measure: %s", run.pk, exc)
        return None
    reference = Reference.fit(
        features[: len(plan.reference)], k=settings.DRIFT_NEIGHBOURS, quantile=settings.DRIFT_QUANTILE
    )
    scores = reference.scores(features[len(plan.reference) :])
    ratios = scores / max(reference.threshold, 1e-12)
    Novelty.objects.bulk_create(
        [
            Novelty(asset_id=asset_id, model_version=plan.version, score=float(score), ratio=float(ratio))
            for asset_id, score, ratio in zip(plan.sample, scores, ratios, strict=True)
        ],
        update_conflicts=True,
        unique_fields=["asset", "model_version"],
        update_fields=["score", "ratio", "updated_at"],
    )
    return DriftMeasure(
        model_version=plan.version.pk,
        new_images=plan.new_images,
        measured=len(plan.sample),
        unfamiliar=int(np.sum(ratios > 1.0)),
        reference=len(plan.reference),
        usual_share=reference.usual_share,
        threshold=reference.threshold,
    )
