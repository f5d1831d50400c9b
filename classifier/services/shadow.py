"""The shadow pass: a candidate classifies every live asset in the background, before anyone promotes it.

It runs the production classify path (classifier.services.inference.classify_assets) with a model set made of
the candidate's heads and the active detector, so the crops are the ones production uses, the detector's boxes
come from the Detection cache, and the results land in the result cache as the candidate's own Classification
rows. Promotion is then instant: the Run finds every live asset already classified by the new active model.

A pass is resumable and idempotent: it only classifies assets still lacking a result of the candidate (a
failure from before the pass is tried again, one from this pass is not), so a worker killed mid-pass (the task
is `acks_late`) picks up where it stopped, and running it twice classifies nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from catalog.models import ImageAsset, Placement
from classifier.models import ModelVersion, ShadowPass
from core.errors import ApplicationError

from .inference import ActiveModels, classify_assets, needs_classification
from .scoped import scoped_models

logger = logging.getLogger(__name__)

# Assets per classify_assets call: one decode + one inference per model for the batch, then one upsert.
BATCH_SIZE = 64
# A running pass not heard from for this long lost its worker (and its message): starting it again resumes it.
STALE_AFTER = timedelta(minutes=15)


class ShadowError(ApplicationError):
    """A shadow pass cannot start; the message says why in one line."""

    code = "shadow_refused"


def live_asset_ids(version: ModelVersion | None = None) -> QuerySet[Placement, Any]:
    """The assets production tags: those of placements still listed and fetched (a subquery of asset ids); for a
    scoped version (classifier.services.scoped), those of its advertiser only."""
    live = Placement.objects.filter(
        is_gone=False, listing__is_gone=False, status=Placement.Status.OK, asset__isnull=False
    )
    if version is not None and version.advertiser_id is not None:
        live = live.filter(listing__sitemap__advertiser_id=version.advertiser_id)
    return live.values("asset_id")


def shadow_models(version: ModelVersion) -> ActiveModels:
    """The model set a shadow pass runs: every head of the version (a scoped version's trained head only), and the
    active detector for its crops."""
    if version.advertiser_id is not None:
        return scoped_models(version)
    heads = {head.task: head for head in version.heads.select_related("model_version")}
    detector = ModelVersion.objects.filter(kind=ModelVersion.Kind.DETECTOR, status=ModelVersion.Status.ACTIVE).first()
    return ActiveModels(heads=heads, detector=detector)


def live_asset_count(version: ModelVersion | None = None) -> int:
    return ImageAsset.objects.filter(id__in=live_asset_ids(version)).count()


def shadow_pending_ids(*, version: ModelVersion, since: object = None) -> list[int]:
    """Live assets still lacking a result of some head of the version (failures before `since` count as lacking)."""
    missing = needs_classification(live_asset_ids(version), shadow_models(version), since=since)
    return list(ImageAsset.objects.filter(missing).order_by("id").values_list("id", flat=True))


def shadow_start(*, version: ModelVersion, enqueue: bool = True) -> ShadowPass:
    """Creates a queued shadow pass of a classifier and (with `enqueue`) hands it to the training queue after
    commit. Refuses a detector, the active model (production already classifies with it) and a second pass of a
    version while one is queued or running, with a one-line ShadowError; a running pass silent for STALE_AFTER
    (its worker died) is returned and handed out again instead, to resume."""
    if version.kind != ModelVersion.Kind.CLASSIFIER:
        raise ShadowError(
            f"{version.name} is a {version.get_kind_display().lower()}: only classifiers have a shadow pass"
        )
    if version.status == ModelVersion.Status.ACTIVE:
        raise ShadowError(f"{version.name} is the active model: production already classifies every image with it")
    if not version.heads.exists():
        raise ShadowError(f"{version.name} has no heads: there is nothing to classify")
    running = ShadowPass.objects.filter(model_version=version, status__in=ShadowPass.ACTIVE).first()
    if running is not None and _stale(running):
        # Its worker died and the message is gone: hand the same pass out again; it resumes where it stopped.
        if enqueue:
            from classifier.tasks import shadow_pass_task

            shadow_pass_task.delay_on_commit(running.pk)  # type: ignore[attr-defined]  # not in celery-types yet
        return running
    if running is not None:
        raise ShadowError(_already_running(version, running))
    try:
        with transaction.atomic():
            shadow = ShadowPass.objects.create(model_version=version, total=live_asset_count(version), stage="queued")
            if enqueue:
                from classifier.tasks import shadow_pass_task

                shadow_pass_task.delay_on_commit(shadow.pk)  # type: ignore[attr-defined]  # not in celery-types yet
    except IntegrityError as exc:  # another request started one meanwhile: the database keeps one
        running = ShadowPass.objects.filter(model_version=version, status__in=ShadowPass.ACTIVE).first()
        raise ShadowError(_already_running(version, running)) from exc
    return shadow


def _stale(shadow: ShadowPass) -> bool:
    """A running pass saves its progress after every batch (seconds): silent for STALE_AFTER, its worker is gone."""
    return shadow.status == ShadowPass.Status.RUNNING and shadow.updated_at < timezone.now() - STALE_AFTER


def _already_running(version: ModelVersion, running: ShadowPass | None) -> str:
    where = f": pass {running.pk}, {running.done} of {running.total:,} images" if running else ""
    return f"a shadow pass of {version.name} is already {running.status if running else 'running'}{where}"


def shadow_run(*, pass_id: int, progress: Callable[[ShadowPass], None] | None = None) -> ShadowPass:
    """Runs (or resumes) a shadow pass to the end: the live assets lacking the candidate's results, in batches
    of BATCH_SIZE through the production classify path, saving done/total after each batch.

    A pass already succeeded or failed is returned as it is. An unexpected error fails the pass with its reason
    (and is raised again for the worker's log); a killed worker leaves it running, and the redelivered task
    resumes it.
    """
    shadow = ShadowPass.objects.select_related("model_version").get(pk=pass_id)
    if not shadow.is_active:
        return shadow
    version = shadow.model_version
    try:
        pending = shadow_pending_ids(version=version, since=shadow.created_at)
        total = live_asset_count(version)
        now = timezone.now()
        shadow.status, shadow.started_at = ShadowPass.Status.RUNNING, shadow.started_at or now
        _save_progress(shadow, total=total, done=total - len(pending), stage="classifying")
        if progress is not None:
            progress(shadow)
        models = shadow_models(version)
        for start in range(0, len(pending), BATCH_SIZE):
            batch = pending[start : start + BATCH_SIZE]
            assets = list(ImageAsset.objects.filter(id__in=batch).only("id", "original").order_by("id"))
            classify_assets(assets, models)
            _save_progress(shadow, total=total, done=min(total, shadow.done + len(batch)), stage="classifying")
            if progress is not None:
                progress(shadow)
    except Exception as exc:
        logger.exception("shadow pass %s of %s failed", pass_id, version)
        ShadowPass.objects.filter(pk=pass_id).update(
            status=ShadowPass.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
        raise
    shadow.status, shadow.finished_at, shadow.stage = ShadowPass.Status.SUCCEEDED, timezone.now(), "done"
    shadow.done, shadow.progress = shadow.total, 1.0
    shadow.save(update_fields=["status", "finished_at", "stage", "done", "progress", "updated_at"])
    if progress is not None:
        progress(shadow)
    return shadow


def _save_progress(shadow: ShadowPass, *, total: int, done: int, stage: str) -> None:
    shadow.total, shadow.done, shadow.stage = total, done, stage
    shadow.progress = done / total if total else 1.0
    shadow.save(update_fields=["status", "started_at", "total", "done", "progress", "stage", "updated_at"])


def shadow_latest(*, version: ModelVersion) -> ShadowPass | None:
    """The version's most recent shadow pass, if any."""
    return ShadowPass.objects.filter(model_version=version).order_by("-created_at", "-id").first()
