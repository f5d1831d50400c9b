"""Celery tasks of the catalog: thin wrappers that take ids and call services."""

import logging
import threading
import time

from celery import bootsteps, shared_task
from celery.signals import worker_ready

logger = logging.getLogger(__name__)


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
    """A worker that comes back picks up at once the Runs of a worker that died here (its process is gone); those
    whose lease runs out later are the business of RunLeaseCheck, whether or not beat runs the sweep."""
    from django.db import connections

    from catalog.services.runs import runs_resume_orphaned

    try:
        runs_resume_orphaned()
    finally:
        connections.close_all()


class RunLeaseCheck(bootsteps.StartStopStep):
    """Every settings.RUN_LEASE_CHECK_SECONDS (a few seconds), a thread of the worker's main process resumes the Runs
    that nobody carries on (catalog.services.runs.runs_resume_orphaned): their worker died, or their tasks were lost
    with a broker that restarted or was down at the hand-over, or with a worker killed mid-batch. It is a timer of
    the worker, not a queued task, so recovery never depends on the broker's memory; beat's sweep
    (catalog.runs_resume_orphaned) stays as the second line. One query a check when no Run is active; 0 turns it off.
    """

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: object, **kwargs: object) -> None:
        super().__init__(parent, **kwargs)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: object) -> None:
        from django.conf import settings

        interval = float(settings.RUN_LEASE_CHECK_SECONDS)
        if interval <= 0:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="run-lease-check", daemon=True)
        self._thread.start()

    def stop(self, parent: object) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self, interval: float) -> None:
        from django.db import connections

        from catalog.services.runs import runs_resume_orphaned

        sent: dict[int, float] = {}
        while not self._stopping.wait(interval):
            started = time.monotonic()
            try:
                resumed = runs_resume_orphaned(sent=sent)
                if resumed:
                    logger.info("lease check: resumed runs %s in %.1fs", resumed, time.monotonic() - started)
            except Exception:  # the database away for a moment: try again at the next tick
                logger.exception("lease check failed")
            finally:
                connections.close_all()
