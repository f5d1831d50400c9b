"""Scoped heads: a head trained for one advertiser, which answers a task for that advertiser's placements only.

Where one global head cannot lift a drifted advertiser without costing the others (the loop's evidence says so: no
global candidate passes the guard), a scoped head is refitted on that advertiser's reviewed labels alone, with the
global head as its prior (the L2-SP anchor of classifier.training.refit), by a TrainingJob with an advertiser
(classifier.services.training). It is a ModelVersion with `advertiser` set, never the active model of its task.

Promoted (`scoped_promote`, from model_promote), it is written in ScopedHead for (advertiser, task), and recorded as a
Promotion with the advertiser; rolled back (`scoped_rollback`), the row goes and the active model answers again. Its
results are Classification rows of its own version, classified on the production path (the active detector's crop,
the same decode), so:
- a picture two advertisers share keeps each advertiser's own answer (each reads its own head's row);
- the effective rule reads the scoped head's result where it has one and the active model's elsewhere
  (reviews.effective.annotate_inputs), so nothing changes for advertisers without a scoped head;
- its shadow pass classifies its advertiser's live images only, and every Run of its advertiser's sitemaps classifies
  the Run's new images with it before the Run finishes (`run_scoped_heads`, settings.RUN_BEFORE_FINISH).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from catalog.models import Advertiser, ImageAsset, Placement, Run
from classifier.models import ModelHead, ModelVersion, Promotion, ScopedHead
from classifier.signals import heads_switched
from core.errors import ApplicationError

from .inference import ActiveModels, classify_assets, needs_classification

logger = logging.getLogger(__name__)

BATCH_SIZE = 64


class ScopedError(ApplicationError):
    """A scoped head cannot be promoted or rolled back; the message says why in one line."""

    code = "promotion_refused"


def scoped_task(version: ModelVersion) -> str | None:
    """The task a scoped version was trained for (its training job's), None for a global version."""
    if version.advertiser_id is None:
        return None
    job = version.training_job
    if job is not None:
        return job.task
    heads = list(version.heads.values_list("task", flat=True))
    return heads[0] if len(heads) == 1 else None


def scoped_models(version: ModelVersion) -> ActiveModels:
    """The model set a scoped version runs: its trained task's head, and the active detector for its crops."""
    task = scoped_task(version)
    heads = {head.task: head for head in version.heads.select_related("model_version") if head.task == task}
    detector = ModelVersion.objects.filter(kind=ModelVersion.Kind.DETECTOR, status=ModelVersion.Status.ACTIVE).first()
    return ActiveModels(heads=heads, detector=detector)


def scoped_classify(*, version: ModelVersion, asset_ids: Any, since: object = None) -> int:
    """Classifies the given assets (ids or a subquery) that lack the scoped version's result, in batches through the
    production classify path; returns how many it classified. Idempotent: a second call classifies nothing."""
    models = scoped_models(version)
    if not models.heads:
        return 0
    pending = list(
        ImageAsset.objects.filter(needs_classification(asset_ids, models, since=since))
        .order_by("id")
        .values_list("id", flat=True)
    )
    for start in range(0, len(pending), BATCH_SIZE):
        batch = pending[start : start + BATCH_SIZE]
        classify_assets(list(ImageAsset.objects.filter(id__in=batch).only("id", "original").order_by("id")), models)
    return len(pending)


def run_scoped_heads(*, run: Run) -> None:
    """Before a Run finishes (settings.RUN_BEFORE_FINISH): the scoped heads of the Run's advertiser classify its live
    images lacking their results, for the tasks the sitemap tags."""
    sitemap = run.sitemap
    scoped = ScopedHead.objects.filter(advertiser_id=sitemap.advertiser_id, task__in=sitemap.tasks_enabled)
    for head in scoped.select_related("model_version__training_job"):
        assets = Placement.objects.filter(
            listing__sitemap=sitemap, is_gone=False, listing__is_gone=False, status=Placement.Status.OK
        ).values("asset_id")
        done = scoped_classify(version=head.model_version, asset_ids=assets)
        if done:
            logger.info("run %s: %s scoped head %s classified %s images", run.pk, head.task, head.model_version, done)


def scoped_promote(*, version: ModelVersion, user: Any = None, forced: bool, overrode: dict | None) -> Promotion:
    """Makes the scoped version answer its task for its advertiser (model_promote checked the shadow pass and the
    evidence, and holds the transaction): ScopedHead written, the advertiser's images it has not classified yet
    classified now (none after a finished shadow pass), the advertiser's stored tags refreshed, a Promotion recorded
    with the advertiser and the head it replaced (a former scoped head, else the active model)."""
    task = scoped_task(version)
    if task is None:
        raise ScopedError(f"{version.name} has no training job: its task is unknown")
    advertiser_id = version.advertiser_id
    assert advertiser_id is not None  # noqa: S101 - callers dispatch scoped versions only
    current = ScopedHead.objects.select_for_update().filter(advertiser_id=advertiser_id, task=task).first()
    if current is not None and current.model_version_id == version.pk:
        raise ScopedError(f"{version.name} already answers {task} for its advertiser")
    active = ModelHead.objects.filter(is_active=True, task=task).values_list("model_version_id", flat=True).first()
    if version.parent_id != active:
        raise ScopedError(
            f"{version.name} was refitted from another model than the active one of {task}: train it again"
        )
    from .shadow import live_asset_ids  # shadow reads scoped_models from here

    scoped_classify(version=version, asset_ids=live_asset_ids(version))
    previous = current.model_version_id if current is not None else active
    ScopedHead.objects.update_or_create(advertiser_id=advertiser_id, task=task, defaults={"model_version": version})
    return _switched(
        task, advertiser_id, previous, version.pk, Promotion.Kind.PROMOTE, user=user, forced=forced, overrode=overrode
    )


@transaction.atomic
def scoped_rollback(*, advertiser: Advertiser, task: str, user: Any = None) -> Promotion:
    """The advertiser's scoped head of the task stops answering: the active model answers its placements again (its
    results are still in the cache: instant). Recorded as a rollback with the advertiser."""
    current = ScopedHead.objects.select_for_update().filter(advertiser=advertiser, task=task).first()
    if current is None:
        raise ScopedError(f"{advertiser.slug} has no scoped head for {task}: there is nothing to roll back")
    active = ModelHead.objects.filter(is_active=True, task=task).values_list("model_version_id", flat=True).first()
    if active is None:
        raise ScopedError(f"{task} has no active model to answer {advertiser.slug} again")
    replaced = current.model_version_id
    current.delete()
    return _switched(task, advertiser.pk, replaced, active, Promotion.Kind.ROLLBACK, user=user)


def _switched(
    task: str,
    advertiser_id: int,
    from_version_id: int | None,
    to_version_id: int,
    kind: str,
    *,
    user: Any,
    forced: bool = False,
    overrode: dict | None = None,
) -> Promotion:
    """Records a switch of the advertiser's head (a Promotion with the advertiser) and refreshes its stored tags."""
    promotion = Promotion.objects.create(
        task=task,
        advertiser_id=advertiser_id,
        from_version_id=from_version_id,
        to_version_id=to_version_id,
        kind=kind,
        forced=forced,
        overrode_regressions=overrode,
        user=user,
    )
    heads_switched.send(sender=ModelVersion, tasks=[task], advertiser_id=advertiser_id)
    return promotion
