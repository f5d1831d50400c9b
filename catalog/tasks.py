"""Celery tasks of the catalog: thin wrappers that take ids and call services."""

from celery import shared_task
from celery.signals import worker_ready


@shared_task(name="catalog.run_execute", acks_late=True, reject_on_worker_lost=True)
def run_execute_task(run_id: int) -> None:
    from catalog.services.runs import run_execute

    run_execute(run_id=run_id)


@shared_task(name="catalog.runs_nightly")
def runs_nightly_task() -> None:
    from catalog.services.runs import runs_start_nightly

    runs_start_nightly()


@shared_task(name="catalog.runs_resume_orphaned")
def runs_resume_orphaned_task() -> None:
    from catalog.services.runs import runs_resume_orphaned

    runs_resume_orphaned()


@worker_ready.connect
def resume_orphaned_runs_on_worker_ready(**kwargs: object) -> None:
    """A worker that comes back picks up the Runs of the worker that died: at once when that worker's process is
    gone, and once more when its lease has run out (heartbeats stop), whether or not beat runs the sweep."""
    from django.conf import settings
    from django.db import connections

    from catalog.services.runs import runs_resume_orphaned

    try:
        runs_resume_orphaned()
        runs_resume_orphaned_task.apply_async(countdown=settings.RUN_LEASE_SECONDS + 5)
    finally:
        connections.close_all()
