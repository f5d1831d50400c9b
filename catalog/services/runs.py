"""Runs: one pass over a sitemap, from reading its source to every image in (and, later, classified).

A Run is resumable by design. Its steps are re-runnable (upserts keyed by natural keys, placements
stamped with the Run that handled them), and the executing worker holds a lease (worker id and heartbeat):
when a worker dies mid-run, the next worker to start, or the periodic sweep, re-enqueues the Run and it
continues where it stopped, with no duplicate assets or placements.

Recovery takes seconds, not lease periods: the process carrying a Run renews its lease from a thread every
RUN_HEARTBEAT_SECONDS (one UPDATE, whatever the Run does meanwhile), so the lease can be short
(RUN_LEASE_SECONDS); every worker checks the leases every RUN_LEASE_CHECK_SECONDS (catalog.tasks.RunLeaseCheck).
A Run handed over to its classify batches has no carrier: its batches show signs of life instead, and one that
shows none for RUN_STALL_SECONDS while the batches' queue is empty has lost them (a broker that restarted, a worker
killed mid-batch): its classify step sends what is still missing again (settings.RUN_CLASSIFY_RESUME).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.module_loading import import_string

from catalog.fetching import FetchError, SafeFetcher
from catalog.fetching.addresses import url_refusal
from catalog.inventory import InventoryRefused, parse_feed
from catalog.models import Outcome, Placement, Run, Sitemap
from catalog.sources import Expect, SourceResult, fetch_policy, source_read_feed, source_read_url
from core.errors import ApplicationError

from .deadlocks import is_deadlock
from .image_fetch import ImageFetchPool, url_jobs_for_run
from .sync import inventory_sync

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[Run], None]
OUTCOME_FIELDS = {
    Outcome.NOT_MODIFIED: "not_modified",
    Outcome.CACHE_HIT: "cache_hits",
    Outcome.DOWNLOADED: "downloaded",
    Outcome.FAILED: "failed",
}


class RunError(ApplicationError):
    """A Run cannot be started or carried on; the message says why. Always because of what the Run or its sitemap
    is now (finished, a feed without its document, a URL never fetched), never the request's form: HTTP 409."""

    code = "run_refused"
    http_status = 409


class RunAlreadyActive(RunError):
    code = "run_active"
    http_status = 409
    http_retry_after = 60

    def __init__(self, active: Run) -> None:
        super().__init__(
            f"sitemap {active.sitemap_id} already has run {active.pk} {active.status}; "
            "two Runs of one sitemap never overlap: try again when it has finished, "
            f"or cancel it: manage.py cancel_run {active.pk}"
        )
        self.active = active

    @property
    def extra(self) -> dict[str, Any]:
        return {"active_run": self.active.pk}


class RunCancelled(RunError):
    """Raised inside a worker when the Run it carries was cancelled: it stops where it is."""

    code = "run_cancelled"
    http_status = 409


#: The error of a cancelled Run (status failed): `manage.py cancel_run RUN_ID`.
RUN_CANCELLED = "cancelled"


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_start(
    *,
    sitemap: Sitemap,
    trigger: str = Run.Trigger.MANUAL,
    user: User | AnonymousUser | None = None,
    feed_document: object | None = None,
    enqueue: bool = True,
) -> Run:
    """Creates a queued Run of the sitemap and, once committed, hands it to a worker.

    A feed document is validated first (FeedInvalid with every problem). Raises RunAlreadyActive when the
    sitemap has a queued or running Run: the database keeps that rule, so two callers cannot race past it.
    """
    if sitemap.url and (refusal := url_refusal(sitemap.url)):
        raise RunError(f"sitemap {sitemap.pk} has a URL that is never fetched: {refusal}")
    if feed_document is not None:
        parse_feed(feed_document)  # type: ignore[arg-type]
    elif sitemap.kind == Sitemap.Kind.FEED and not sitemap.url:
        raise RunError(f"sitemap {sitemap.pk} is a scrape feed without a URL: post the feed document with the Run")
    try:
        with transaction.atomic():
            run = Run.objects.create(
                sitemap=sitemap,
                trigger=trigger,
                requested_by=user if isinstance(user, User) else None,
                feed_document=feed_document,
            )
    except IntegrityError:
        active = Run.objects.filter(sitemap=sitemap, status__in=Run.ACTIVE_STATUSES).first()
        if active is None:  # finished in between: one more try is enough
            return run_start(sitemap=sitemap, trigger=trigger, user=user, feed_document=feed_document, enqueue=enqueue)
        raise RunAlreadyActive(active) from None
    if enqueue:
        transaction.on_commit(partial(run_enqueue, run_id=run.pk))
    return run


def run_enqueue(*, run_id: int) -> bool:
    """Hands the Run to a worker; False when the broker refused it. A broker that is down leaves it as it is: the
    workers' lease check (catalog.tasks.RunLeaseCheck) and beat's sweep send it again later."""
    from catalog.tasks import run_execute_task

    try:
        run_execute_task.delay(run_id)
    except Exception:
        logger.exception("run %s: the broker refused the task; the lease check will send it again", run_id)
        return False
    return True


def run_claim(*, run_id: int, worker: str) -> Run | None:
    """Takes the Run's lease for this worker; None when it is finished or another live worker holds it."""
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("sitemap").filter(pk=run_id).first()
        if run is None or run.status not in Run.ACTIVE_STATUSES:
            return None
        if run.status == Run.Status.RUNNING and run.worker != worker and not run_lease_expired(run):
            return None
        now = timezone.now()
        run.status = Run.Status.RUNNING
        run.worker = worker
        run.heartbeat_at = now
        run.attempts += 1
        run.started_at = run.started_at or now
        run.save(update_fields=["status", "worker", "heartbeat_at", "attempts", "started_at", "updated_at"])
        return run


def run_lease_expired(run: Run) -> bool:
    """True when the worker holding the Run is gone: no heartbeat for a while, or its process died here."""
    if _silent_since(run.heartbeat_at, settings.RUN_LEASE_SECONDS):
        return True
    host, _, pid = run.worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))


def run_handed_over(run: Run) -> bool:
    """Whether the Run is in the hands of its classify batches (on the inference queue), with no worker carrying it."""
    return run.status == Run.Status.RUNNING and run.step == Run.Step.CLASSIFY and not run.worker


def _silent_since(since: datetime | None, seconds: float, *, now: datetime | None = None) -> bool:
    """Whether nothing was heard since `since` (None: never) for `seconds` up to `now` (default: now)."""
    return since is None or since < (now or timezone.now()) - timedelta(seconds=seconds)


@contextmanager
def run_heartbeat(*, run_id: int, worker: str) -> Iterator[None]:
    """Renews the Run's lease every settings.RUN_HEARTBEAT_SECONDS from a thread while the block runs, whatever it
    does meanwhile (reading a large source, clustering, a long batch): one UPDATE each time, never one per image.

    `worker` is the lease holder carrying the Run; "" is one of its classify batches (a Run handed over), whose
    beats say that a batch is under way. A Run that has meanwhile finished, been cancelled or been taken by another
    worker is left as it is. The first beat comes after one interval: the claim, or the batch's start, was one.
    """
    interval = settings.RUN_HEARTBEAT_SECONDS
    mine = Run.objects.filter(pk=run_id, status=Run.Status.RUNNING, worker=worker)
    if not worker:
        mine = mine.filter(step=Run.Step.CLASSIFY)
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    mine.update(heartbeat_at=timezone.now())
                except DatabaseError as exc:  # the database away for a moment: the next beat tries again
                    logger.warning("run %s: heartbeat failed: %s", run_id, exc)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"run-{run_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval)


def process_alive(pid: int) -> bool:
    """Whether a process of this host is running. A zombie (killed, not yet reaped by its parent or by init)
    is dead: os.kill(pid, 0) alone would say it is alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def run_execute(
    *, run_id: int, worker: str | None = None, progress: ProgressCallback | None = None, inline: bool = False
) -> Run | None:
    """Carries the Run through its steps, from wherever it stopped. Idempotent: safe to call twice.

    The classify step (settings.RUN_CLASSIFY_STEP) finishes the Run itself: here when `inline`, else
    through batch tasks on the inference queue. New images reach the models during the fetch already
    (settings.RUN_CLASSIFY_STREAM): the classify step is left with what the stream did not do.
    """
    run = run_claim(run_id=run_id, worker=worker or worker_identity())
    if run is None:
        return None
    with run_heartbeat(run_id=run.pk, worker=run.worker):
        return _run_steps(run, progress=progress, inline=inline)


def _run_steps(run: Run, *, progress: ProgressCallback | None, inline: bool) -> Run:
    try:
        if run.step in (Run.Step.QUEUED, Run.Step.READ) and not _read_and_sync(run):
            return run
        if run.step == Run.Step.FETCH:
            _fetch_images(run, progress, inline=inline)
            for dotted_path in settings.RUN_AFTER_FETCH:
                import_string(dotted_path)(run=run)
            _set_step(run, Run.Step.CLASSIFY)
        if run.step == Run.Step.CLASSIFY and settings.RUN_CLASSIFY_STEP:
            import_string(settings.RUN_CLASSIFY_STEP)(run=run, inline=inline, progress=progress)
            run.refresh_from_db()
        else:
            run_finish(run=run)
    except RunCancelled:
        run.refresh_from_db()
    except SoftTimeLimitExceeded:
        _fail(run, "the Run reached its time limit; the next Run carries on with what is left")
    except Exception as exc:
        if is_deadlock(exc) and not inline:
            # A step's transaction was a deadlock's victim (each batch of the fetch retries its own first): the Run
            # is resumable, so another attempt carries it on at once rather than failing it or waiting for a lease.
            logger.warning("run %s: deadlock detected in step %s; resuming it at once", run.pk, run.step)
            Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(worker="", heartbeat_at=None)
            run_enqueue(run_id=run.pk)
            return run
        logger.exception("run %s failed", run.pk)
        _fail(run, f"internal error: {type(exc).__name__}: {exc}")
    if progress is not None:
        progress(run)
    return run


def _read_and_sync(run: Run) -> bool:
    _set_step(run, Run.Step.READ)
    try:
        source = _read_source(run)
    except (InventoryRefused, FetchError) as exc:
        _fail(run, f"the source could not be read: {exc}")
        return False
    assert run.started_at is not None  # noqa: S101 - set by run_claim
    # Errors (a child that failed or was not an inventory, a lost entry) keep everything unseen alive;
    # warnings (repairs of a document read in full) do not.
    run.listings = inventory_sync(
        sitemap=run.sitemap, pages=source.pages, seen_at=run.started_at, complete=source.complete
    )
    run.source_errors = source.errors[:200]
    run.source_warnings = source.warnings[:200]
    run.step = Run.Step.FETCH
    run.save(update_fields=["listings", "source_errors", "source_warnings", "step", "updated_at"])
    return True


def _read_source(run: Run) -> SourceResult:
    if run.feed_document is not None:
        return source_read_feed(run.feed_document)
    expect: Expect = "page" if run.sitemap.kind == Sitemap.Kind.PAGE else "sitemap"
    with SafeFetcher(fetch_policy(max_bytes=settings.FETCH_MAX_DOCUMENT_BYTES)) as fetcher:
        return source_read_url(run.sitemap.url, fetcher=fetcher, follow_children=True, expect=expect)


def _fetch_images(run: Run, progress: ProgressCallback | None, *, inline: bool) -> None:
    total, jobs = url_jobs_for_run(run)
    base = _outcome_counts(run)  # what an earlier attempt of this Run already did
    run.urls = total
    _apply_counts(run, base)
    run.save(update_fields=["urls", *OUTCOME_FIELDS.values(), "failure_reasons", "updated_at"])

    def on_tick(counts: Counter[str]) -> None:
        _apply_counts(run, base + counts)
        run.save(update_fields=[*OUTCOME_FIELDS.values(), "failure_reasons", "updated_at"])
        if progress is not None:
            progress(run)
        # Cancelled, or resumed by another worker after this one lost its lease (stalled past RUN_LEASE_SECONDS): the
        # Run is no longer this worker's to carry on.
        if not Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING, worker=run.worker).exists():
            raise RunCancelled(f"run {run.pk} was cancelled, or another worker carries it on")

    if jobs:
        stream = (
            import_string(settings.RUN_CLASSIFY_STREAM)(run=run, inline=inline)
            if settings.RUN_CLASSIFY_STREAM
            else None
        )
        with SafeFetcher(fetch_policy()) as fetcher:
            ImageFetchPool(run=run, fetcher=fetcher, on_tick=on_tick, stream=stream).run_jobs(jobs)


def _outcome_counts(run: Run) -> Counter[str]:
    """Distinct URLs per outcome (and failure reason) that this Run has recorded on its placements."""
    counts: Counter[str] = Counter()
    handled = Placement.objects.filter(last_run=run)
    for row in handled.values("outcome").annotate(urls=Count("url", distinct=True)):
        counts[row["outcome"]] = row["urls"]
    failed = handled.filter(outcome=Outcome.FAILED)
    for reason, urls in failed.values_list("failure_reason").annotate(urls=Count("url", distinct=True)):
        counts[f"reason:{reason}"] = urls
    return counts


def _apply_counts(run: Run, counts: Counter[str]) -> None:
    for outcome, field_name in OUTCOME_FIELDS.items():
        setattr(run, field_name, counts[outcome])
    run.failure_reasons = dict(
        sorted(((key[7:], n) for key, n in counts.items() if key.startswith("reason:")), key=lambda kv: -kv[1])
    )


def run_finish(*, run: Run, step_failures: dict[str, int] | None = None) -> Run:
    """Counts exactly what the Run did (from its placements, whatever attempt did it) and sets its status.

    `step_failures` are failures of a later step by reason (e.g. {"classification_failed": 3}): counted with
    the image failures, they make the Run partial, visibly.
    """
    with transaction.atomic():
        # A Run cancelled meanwhile (run_cancel) stays cancelled: the worker's copy of it is stale.
        if not Run.objects.select_for_update().filter(pk=run.pk, status__in=Run.ACTIVE_STATUSES).exists():
            run.refresh_from_db()
            return run
        _apply_counts(run, _outcome_counts(run))
        step_failures = {reason: n for reason, n in (step_failures or {}).items() if n}
        run.failure_reasons = {**run.failure_reasons, **step_failures}
        if run.urls and run.failed == run.urls:
            run.status = Run.Status.FAILED
            run.error = run.error or "every image failed: " + ", ".join(
                f"{k} x{n}" for k, n in run.failure_reasons.items()
            )
        elif run.failed or step_failures or run.source_errors:
            run.status = Run.Status.PARTIAL
        else:
            run.status = Run.Status.SUCCEEDED
        run.step = Run.Step.DONE
        run.finished_at = timezone.now()
        run.save()
    run_after_finish(run=run)
    return run


def run_cancel(*, run_id: int) -> Run:
    """Cancels a queued or running Run: it is failed at once with the error "cancelled", so the sitemap is free
    for the next Run. A worker carrying it stops at its next progress tick and writes nothing more on the Run;
    what it already did is kept (placements stamped with the Run), and the next Run carries on from there.
    Raises RunError when there is no such Run or it has already finished."""
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise RunError(f"no run {run_id}")
        if run.status not in Run.ACTIVE_STATUSES:
            raise RunError(f"run {run_id} is {run.status}: only a queued or running Run can be cancelled")
        _apply_counts(run, _outcome_counts(run))
        run.status = Run.Status.FAILED
        run.error = RUN_CANCELLED
        run.finished_at = timezone.now()
        run.save(
            update_fields=["status", "error", "finished_at", *OUTCOME_FIELDS.values(), "failure_reasons", "updated_at"]
        )
    return run


def run_after_finish(*, run: Run) -> None:
    """Calls settings.RUN_AFTER_FINISH (dotted paths, each called with run=run) on a finished Run.

    They are idempotent (a resumed Run may call them again). They are advisory
    (health flags): one that breaks is logged and rolled back to its savepoint, and never fails the Run.
    """
    for dotted_path in settings.RUN_AFTER_FINISH:
        try:
            with transaction.atomic():
                import_string(dotted_path)(run=run)
        except Exception:
            logger.exception("run %s: %s failed after the Run finished", run.pk, dotted_path)


def _fail(run: Run, error: str) -> None:
    # Conditional: a Run cancelled meanwhile keeps its "cancelled".
    now = timezone.now()
    Run.objects.filter(pk=run.pk, status__in=Run.ACTIVE_STATUSES).update(
        status=Run.Status.FAILED, error=error[:5000], finished_at=now, updated_at=now
    )
    run.refresh_from_db()


def _set_step(run: Run, step: str) -> None:
    run.step = step
    run.heartbeat_at = timezone.now()
    run.save(update_fields=["step", "heartbeat_at", "updated_at"])


def runs_resume_orphaned(*, sent: dict[int, float] | None = None) -> list[int]:
    """Resumes the Runs that nobody carries on: re-enqueues those whose worker died (lease expired) and queued Runs
    that no worker has taken; has the classify step send again the batches of a Run handed over to them that went
    missing (settings.RUN_CLASSIFY_RESUME). Returns their ids.

    A queued Run, or a handed-over one, silent for RUN_STALL_SECONDS has lost its task if the queue that carries it
    is empty; behind others in a busy queue it may just be waiting, and is sent again only once silent for
    RUN_QUEUE_PATIENCE_SECONDS, so a long queue is not flooded with copies. Nothing is sent to a broker that is down.
    `sent` (Run id -> time.monotonic() it was last sent, kept by a caller that checks often) re-enqueues a Run again
    only after RUN_STALL_SECONDS while its queue is empty, after RUN_QUEUE_PATIENCE_SECONDS while it is busy.
    """
    now = timezone.now()
    queue_empty: dict[str, bool | None] = {}

    enqueue: list[int] = []
    resume: list[int] = []
    since: datetime | None
    at = time.monotonic()
    active = Run.objects.filter(status__in=Run.ACTIVE_STATUSES).only(
        "id", "status", "step", "worker", "heartbeat_at", "created_at"
    )
    for run in active:
        if run.status == Run.Status.QUEUED:
            task, since = "catalog.run_execute", run.created_at
        elif run_handed_over(run):
            task, since = settings.RUN_CLASSIFY_BATCH_TASK, run.heartbeat_at
        elif run_lease_expired(run):
            task, since = "catalog.run_execute", None  # its task is done with: no copy of it can be waiting
        else:
            continue
        if not _silent_since(since, settings.RUN_STALL_SECONDS, now=now):
            continue
        if task not in queue_empty:
            queue_empty[task] = broker_queue_empty(task)
        empty = queue_empty[task]
        if empty is None or (not empty and not _silent_since(since, settings.RUN_QUEUE_PATIENCE_SECONDS, now=now)):
            continue
        if task == settings.RUN_CLASSIFY_BATCH_TASK:
            resume.append(run.pk)  # its classify step renews the heartbeat: silent again before it sends again
        elif sent is None or at - sent.get(run.pk, -math.inf) >= (
            settings.RUN_STALL_SECONDS if empty else settings.RUN_QUEUE_PATIENCE_SECONDS
        ):
            enqueue.append(run.pk)
    if sent is not None:
        for run_id, when in list(sent.items()):
            if at - when >= settings.RUN_QUEUE_PATIENCE_SECONDS:
                del sent[run_id]
    for run_id in enqueue:
        logger.warning("resuming orphaned run %s", run_id)
        if run_enqueue(run_id=run_id) and sent is not None:
            sent[run_id] = time.monotonic()
    resumed = [run_id for run_id in resume if import_string(settings.RUN_CLASSIFY_RESUME)(run_id=run_id)]
    return enqueue + resumed


def broker_queue_empty(task_name: str) -> bool | None:
    """Whether the broker's queue for this task holds no message (None when the broker cannot say: it is down).
    One connection, one command (LLEN on Redis)."""
    from celery import current_app

    queue = current_app.amqp.router.route({}, task_name)["queue"].name
    try:
        with current_app.connection_for_read() as conn:
            conn.connect()  # one try: a broker that is down is not waited for here
            channel = conn.default_channel  # a virtual transport's (Redis, the file system): it counts the messages
            return not channel.queue_declare(queue=queue, passive=False).message_count  # type: ignore[attr-defined]
    except Exception as exc:
        logger.info("the broker cannot say whether queue %s is empty: %s", queue, exc)
        return None


def runs_start_nightly() -> list[int]:
    """Starts a Run for every enabled nightly sitemap of an active advertiser; skips those already running."""
    started = []
    sitemaps = Sitemap.objects.filter(
        is_enabled=True, schedule=Sitemap.Schedule.NIGHTLY, advertiser__is_active=True
    ).exclude(kind=Sitemap.Kind.FEED, url="")
    for sitemap in sitemaps:
        try:
            started.append(run_start(sitemap=sitemap, trigger=Run.Trigger.NIGHTLY).pk)
        except RunAlreadyActive as exc:
            logger.info("nightly: %s", exc)
    return started
