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
