"""The classify step of a Run: every asset of the sitemap that lacks a result of the active model of each
enabled task is classified, in batches. Inline (run_sitemap --sync, the benchmark) or as batch tasks on the
inference queue, spread over every inference worker; the batch that leaves nothing pending finishes the Run.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from catalog.models import ImageAsset, Placement, Run
from catalog.services.runs import run_finish
from classifier.models import Classification

from .inference import ActiveModels, active_models, classify_assets, heads_done, needs_classification

logger = logging.getLogger(__name__)


def _live_asset_ids(run: Run):
    return Placement.objects.filter(
        listing__sitemap_id=run.sitemap_id, is_gone=False, listing__is_gone=False, status=Placement.Status.OK
    ).values("asset_id")


def run_pending_asset_ids(run: Run, active: ActiveModels) -> list[int]:
    """Assets of the Run's sitemap still missing a result of an active head (failures count once per Run)."""
    return list(
        ImageAsset.objects.filter(needs_classification(_live_asset_ids(run), active, since=run.started_at))
        .order_by("id")
        .values_list("id", flat=True)
    )


def run_classify_step(*, run: Run, inline: bool, progress: Callable[[Run], None] | None = None) -> None:
    """Classifies what the Run needs and finishes it (inline), or hands the batches to the inference queue."""
    active = active_models(run.sitemap.tasks_enabled)
    pending = run_pending_asset_ids(run, active) if active.heads else []
    batches = [
        pending[i : i + settings.CLASSIFY_BATCH_SIZE] for i in range(0, len(pending), settings.CLASSIFY_BATCH_SIZE)
    ]
    if not batches:
        run_classified_finish(run_id=run.pk)
        return
    if inline:
        for _ in _classify_inline(run.pk, batches, active):
            if progress is not None:
                run.refresh_from_db()
                progress(run)
        run_classified_finish(run_id=run.pk)
        return
    # Hand over: the batches renew the heartbeat; the last one to leave nothing pending finishes the Run.
    Run.objects.filter(pk=run.pk).update(worker="", heartbeat_at=timezone.now())
    transaction.on_commit(partial(run_classify_hand_over, run_id=run.pk, batches=batches))


def run_classify_hand_over(*, run_id: int, batches: list[list[int]]) -> bool:
    """Sends the batches to the inference queue, retrying a broker that is down with a bounded backoff
    (settings.RUN_HANDOVER_RETRIES). A broker still down after that does not fail the Run: it stays running in its
    classify step with its lease released at once, and the workers' lease check (or beat's sweep) hands it over
    again when the broker is back. Batches sent twice cost nothing: a batch classifies only what still needs it.
    """
    from classifier.tasks import classify_batch_task

    policy = {
        "max_retries": settings.RUN_HANDOVER_RETRIES,
        "interval_start": 1.0,
        "interval_step": 2.0,
        "interval_max": 10.0,
    }
    try:
        for asset_ids in batches:
            classify_batch_task.apply_async((run_id, asset_ids), retry=True, retry_policy=policy)
    except (KombuOperationalError, OSError) as exc:
        logger.warning("run %s: the broker is down at the hand-over (%s); the Run waits for it", run_id, exc)
        Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(heartbeat_at=None)
        return False
    return True


def _classify_inline(run_id: int, batches: list[list[int]], active: ActiveModels) -> Iterator[int]:
    """The batches in this process, or in a pool of processes (one single-threaded session per model in
    each, as the inference workers run them) when settings.CLASSIFY_INLINE_PROCESSES > 1."""
    processes = min(settings.CLASSIFY_INLINE_PROCESSES, len(batches))
    if processes <= 1:
        for asset_ids in batches:
            yield classify_batch(run_id=run_id, asset_ids=asset_ids, finish=False, active=active)
        return
    connections.close_all()  # a forked child must open its own connection, never share the parent's
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_forget_sessions) as pool:
        futures = [pool.submit(_classify_in_child, run_id, asset_ids) for asset_ids in batches]
        for future in as_completed(futures):
            yield future.result()


def _forget_sessions() -> None:
    from .inference import forget_sessions

    forget_sessions()


def _classify_in_child(run_id: int, asset_ids: list[int]) -> int:
    try:
        return classify_batch(run_id=run_id, asset_ids=asset_ids, finish=False)
    finally:
        connections.close_all()


def classify_batch(
    *, run_id: int, asset_ids: list[int], finish: bool = True, active: ActiveModels | None = None
) -> int:
    """Classifies one batch of a Run's assets (those still needing it: idempotent); returns how many."""
    run = Run.objects.select_related("sitemap").get(pk=run_id)
    if run.status != Run.Status.RUNNING or run.step != Run.Step.CLASSIFY:
        return 0
    active = active or active_models(run.sitemap.tasks_enabled)
    assets = list(
        ImageAsset.objects.filter(needs_classification(asset_ids, active, since=run.started_at)).only("id", "original")
    )
    results = classify_assets(assets, active) if assets else []
    classified = sum(not result.errors for result in results)
    Run.objects.filter(pk=run_id).update(classified=F("classified") + classified, heartbeat_at=timezone.now())
    if finish:
        run_classified_finish(run_id=run_id)
    return classified


def run_classified_finish(*, run_id: int) -> Run | None:
    """Finishes the Run once nothing is left to classify (exactly once, whichever batch gets here first)."""
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("sitemap").get(pk=run_id)
        if run.status != Run.Status.RUNNING or run.step != Run.Step.CLASSIFY:
            return None
        active = active_models(run.sitemap.tasks_enabled)
        if active.heads and run_pending_asset_ids(run, active):
            return None
        failures = Classification.objects.filter(
            status=Classification.Status.FAILED, updated_at__gte=run.started_at, asset_id__in=_live_asset_ids(run)
        ).count()
        # Counted again from the results: a batch sent twice (a hand-over repeated after a broker outage) or
        # classified by two workers at once adds to the running counter twice.
        run.classified = run_classified_count(run, active)
        # Visible as failures, never as a default label: the Run is partial and says why.
        return run_finish(run=run, step_failures={"classification_failed": failures})


def run_classified_count(run: Run, active: ActiveModels) -> int:
    """Assets of the Run's sitemap that this Run classified: a result of every active head, ok, since it started."""
    if not active.heads:
        return 0
    # Every head done, counted per asset of the sitemap by probes of the unique key (see heads_done).
    done = Q(status=Classification.Status.OK, updated_at__gte=run.started_at)
    return (
        ImageAsset.objects.filter(id__in=_live_asset_ids(run))
        .alias(heads_done=heads_done(active, done))
        .filter(heads_done__gte=len(active.heads))
        .count()
    )
