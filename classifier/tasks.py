"""Celery tasks of the classifier, on the inference queue: thin, ids in, services do the work."""

import random

from celery import Task, shared_task


@shared_task(name="classifier.classify_batch", acks_late=True, reject_on_worker_lost=True, bind=True)
def classify_batch_task(self: Task, run_id: int, asset_ids: list[int]) -> None:
    """A deadlock that escapes the batch's own retries (catalog.services.deadlocks) sends the task again at once, not
    after the Run's lease: the batch is idempotent, it classifies what still needs it."""
    from django.db import OperationalError

    from catalog.services.deadlocks import is_deadlock
    from classifier.services.pipeline import classify_batch

    try:
        classify_batch(run_id=run_id, asset_ids=asset_ids)
    except OperationalError as exc:
        if not is_deadlock(exc):
            raise
        raise self.retry(exc=exc, countdown=random.uniform(0.05, 0.5), max_retries=3) from exc  # noqa: S311


@shared_task(name="classifier.occlusion_map", acks_late=True, reject_on_worker_lost=True)
def occlusion_map_task(map_id: int) -> None:
    from classifier.services.occlusion import occlusion_compute

    occlusion_compute(map_id=map_id)


@shared_task(name="classifier.shadow_pass", acks_late=True, reject_on_worker_lost=True)
def shadow_pass_task(pass_id: int) -> None:
    """A candidate's shadow pass, on the training queue (settings.CELERY_TASK_ROUTES): resumes where it stopped."""
    from classifier.services.shadow import shadow_run

    shadow_run(pass_id=pass_id)


@shared_task(name="classifier.training", acks_late=True, reject_on_worker_lost=True)
def training_job_task(job_id: int) -> None:
    """Candidate models from a dataset export, on the training queue (settings.CELERY_TASK_ROUTES): a redelivered
    task after a worker died starts the job again from its cached features; a succeeded job is left as it is."""
    from classifier.services.training import training_run

    training_run(job_id=job_id)
