"""Celery tasks of the reviews app, on the default queue: thin, ids in, services do the work."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="reviews.export_build", acks_late=True, reject_on_worker_lost=True)
def export_build_task(export_id: int) -> None:
    """Builds a dataset export (idempotent: a redelivered message after a crash redoes the build)."""
    from reviews.exports.services import ExportError, export_build

    try:
        export_build(export_id=export_id)
    except ExportError as exc:  # recorded on the export (failed, with the reason): nothing to retry
        logger.warning("export %s: %s", export_id, exc)


@shared_task(name="reviews.export_freeze", acks_late=True, reject_on_worker_lost=True)
def export_freeze_task(export_id: int, keep_pending: bool = False) -> None:
    """Freezes a dataset export: writes its manifest and zip to storage."""
    from reviews.exports.services import ExportError, export_freeze
    from reviews.models import DatasetExport

    export = DatasetExport.objects.filter(pk=export_id).first()
    if export is None or export.is_frozen:
        return
    try:
        export_freeze(export=export, keep_pending=keep_pending)
    except ExportError as exc:
        logger.warning("export %s: %s", export_id, exc)
        DatasetExport.objects.filter(pk=export_id).update(stage=f"freeze refused: {exc}"[:200])


# At most once (no acks_late): a retrain a dead worker left half done is proposed again by the next night's job, not
# redone from a redelivered message beside the export and job it already made.
@shared_task(name="reviews.retrain")
def retrain_task(tasks: list[str], user_id: int | None = None) -> None:
    """Retrains the tasks from reviews ("Retrain from reviews" on the Models screen), then emails staff."""
    from django.contrib.auth import get_user_model

    from reviews.services.retrain import retrain_tasks

    user = get_user_model().objects.filter(pk=user_id).first() if user_id is not None else None
    retrain_tasks(tasks=tasks, user=user)


@shared_task(name="reviews.retrain_nightly")
def retrain_nightly_task() -> None:
    """The beat job: each task with enough new labels since its last training is retrained, then staff are told."""
    from reviews.services.retrain import retrain_nightly

    retrain_nightly()


@shared_task(name="reviews.promotions_watch")
def promotions_watch_task() -> None:
    """The beat job: each promotion inside its watch is compared with the model it replaced; a clearly worse one is
    flagged `promotion_regressed` and staff are emailed (reviews.services.watch)."""
    from reviews.services.watch import promotions_watch

    promotions_watch()
