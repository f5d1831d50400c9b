"""Celery tasks of the classifier, on the inference queue: thin, ids in, services do the work."""

from celery import shared_task


@shared_task(name="classifier.classify_batch", acks_late=True, reject_on_worker_lost=True)
def classify_batch_task(run_id: int, asset_ids: list[int]) -> None:
    from classifier.services.pipeline import classify_batch

    classify_batch(run_id=run_id, asset_ids=asset_ids)
