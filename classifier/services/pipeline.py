"""The classify step of a Run: every asset of the sitemap that lacks a result of the active model of each
enabled task is classified, in batches. Inline (run_sitemap --sync, the benchmark) or as batch tasks on the
inference queue, spread over every inference worker; the batch that leaves nothing pending finishes the Run.

New images do not wait for that step: the Run's stream (run_classify_stream, settings.RUN_CLASSIFY_STREAM) takes
them as the fetch brings them in. The fetch's processes run the models on the decode that made the asset's keys and
thumbnail (one decode per new image) and the results are stored with each batch of outcomes, inline and, with
settings.RUN_CLASSIFY_IN_FETCH (on by default), through a worker too: its classify step then finds nothing pending, or
only the images whose decode could not serve the models, and finishes the Run at once. With it off, each
CLASSIFY_BATCH_SIZE new assets go to the inference queue during the fetch (the inference workers decode them again
from storage); a batch that arrives while the Run is still fetching classifies but never finishes the Run, and the
classify step sends only what is still pending and was not sent.

Once handed over, nobody carries the Run: its batches show signs of life (a beat when one starts, every
RUN_HEARTBEAT_SECONDS while it runs, and when it ends). Batches can be lost (a broker that restarted without
persistence, a worker killed mid-batch whose task Redis keeps aside until the visibility timeout): the workers'
lease checks notice a Run whose batches fell silent (catalog.services.runs.runs_resume_orphaned) and
run_classify_resume sends again what the database says is still missing. Batches are idempotent (each classifies
only what still needs it) and the Run counts its results from the database, so a batch sent twice costs a query.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string
from kombu.exceptions import OperationalError as KombuOperationalError

from catalog.imaging import ViewedImage
from catalog.models import ImageAsset, Placement, Run
from catalog.services.runs import run_finish, run_handed_over, run_heartbeat
from classifier.models import Classification
from classifier.preprocess import Decoded, decode, decoded_from

from .inference import (
    ActiveModels,
    ImageResult,
    active_models,
    classifications_store,
    classify_assets,
    classify_decoded,
    heads_done,
    load_models_cached,
    models_min_size,
    needs_classification,
    sessions_after_fork,
)

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


# Assets that a stream of this process sent to the inference queue during its Run's fetch, by Run: the classify
# step that follows in the same process does not send them again. Another attempt (a resumed Run) starts empty and
# sends everything pending: a batch sent twice costs nothing, it classifies only what still needs it.
_streamed: dict[int, set[int]] = {}


class FetchClassifyStream:
    """Classifies each new image of a Run in the fetch process that decoded it, on that same decode (inline Runs, and a
    worker's with settings.RUN_CLASSIFY_IN_FETCH); the results are stored with each batch of outcomes. What it misses
    (a batch that could not be stored) stays pending for the classify step.

    An image whose decode cannot serve the models (transparency, 32-bit pixels: see inspect_image_viewed) is decoded
    again for them: here when `decode_again` (inline Runs), else by the inference queue that the classify step hands
    it to (a worker's Runs). On a worker, two fetch processes each holding a big transparent image's decode and then
    its second decode, with the sessions, went past the 500 MB bound in a flood; the inference process decodes those
    one at a time, under the machine's big-decode slot, as before. Ordinary photos are decoded once either way.
    """

    def __init__(self, *, run: Run, active: ActiveModels, decode_again: bool = True) -> None:
        self.run_id = run.pk
        self.active = active
        self.decode_again = decode_again
        self.keep: tuple[int, int] | None = models_min_size(active)

    def before_fork(self) -> None:
        # The sessions are created once, here, and the fetch processes share them copy-on-write: weights are only
        # read, so two children classifying cost one set of sessions (~20 MB for the starter models), not one each.
        # That is what keeps a worker classifying in its fetch processes within its memory bound (issue 21).
        load_models_cached(self.active)

    def child_started(self) -> None:
        sessions_after_fork()  # the sessions stay; the lock a parent's thread may have held is new

    def examine(self, data: bytes, view: ViewedImage | None) -> ImageResult | None:
        size = self.keep or 224
        image: Decoded | Exception | None = None
        if view is not None:
            image = decoded_from(view.image, original_size=view.original_size, image_format=view.format, min_size=size)
        if image is None and not self.decode_again:
            return None  # pending: the classify step hands it to the inference queue
        if image is None:  # that decode cannot stand for the models' (see inspect_image_viewed): decode again
            try:
                image = decode(data, min_size=size)
            except Exception as exc:  # an undecodable image fails its tasks, as in a batch
                image = exc
        return classify_decoded(image, self.active)

    def record(self, new_assets: list[tuple[int, object | None]]) -> None:
        found = [(asset_id, result) for asset_id, result in new_assets if isinstance(result, ImageResult)]
        if not found:
            return
        detector = self.active.detector.pk if self.active.detector is not None else None
        # Inside the fetch's batch transaction, which refreshes the stored tags of the placements showing these
        # assets right after (NewImageStream.record): no refresh of its own.
        classifications_store(found=found, active=self.active, detector_version_id=detector, signal=False)
        classified = sum(not result.errors for _, result in found)
        Run.objects.filter(pk=self.run_id).update(classified=F("classified") + classified)


class QueueClassifyStream:
    """Sends the new assets of a Run carried by a worker to the inference queue, CLASSIFY_BATCH_SIZE at a time, as
    the fetch records them. A broker that refuses one batch stops the stream: the classify step sends the rest."""

    keep: tuple[int, int] | None = None  # the inference workers read each original from storage

    def __init__(self, *, run: Run) -> None:
        self.run_id = run.pk
        self.waiting: list[int] = []
        self.broken = False
        _streamed[run.pk] = set()

    def before_fork(self) -> None:
        return None

    def child_started(self) -> None:
        return None

    def examine(self, data: bytes, view: ViewedImage | None) -> None:
        return None

    def record(self, new_assets: list[tuple[int, object | None]]) -> None:
        if self.broken:
            return
        # A batch's transaction run again after a deadlock records its assets again: each is sent once.
        waiting = set(self.waiting)
        self.waiting.extend(asset_id for asset_id, _ in new_assets if asset_id not in waiting)
        size = settings.CLASSIFY_BATCH_SIZE
        while len(self.waiting) >= size:
            batch, self.waiting = self.waiting[:size], self.waiting[size:]
            transaction.on_commit(partial(self._send, batch))

    def _send(self, asset_ids: list[int]) -> None:
        from classifier.tasks import classify_batch_task

        if self.broken:
            return
        try:
            # No retry: the fetch must not wait for a broker that is down; the classify step hands over what is left.
            classify_batch_task.apply_async((self.run_id, asset_ids), retry=False)
        except (KombuOperationalError, OSError) as exc:
            logger.warning(
                "run %s: the broker refused a batch during the fetch (%s); sent at the hand-over", self.run_id, exc
            )
            self.broken = True
            return
        _streamed.setdefault(self.run_id, set()).update(asset_ids)


def run_classify_stream(*, run: Run, inline: bool) -> FetchClassifyStream | QueueClassifyStream | None:
    """The Run's stream of new images to the active models of its tasks (None when there is none); see the module
    docstring. With fetch processes (settings.RUN_FETCH_PROCESSES), they classify what they decode: always inline,
    and through a worker with settings.RUN_CLASSIFY_IN_FETCH; else a worker's Run sends batches to the inference
    queue, and an inline Run with no fetch processes leaves it all to the classify step."""
    active = active_models(run.sitemap.tasks_enabled)
    if not active.heads:
        return None
    if settings.RUN_FETCH_PROCESSES > 0 and (inline or settings.RUN_CLASSIFY_IN_FETCH):
        return FetchClassifyStream(run=run, active=active, decode_again=inline)
    return None if inline else QueueClassifyStream(run=run)


def run_classify_step(*, run: Run, inline: bool, progress: Callable[[Run], None] | None = None) -> None:
    """Classifies what the Run needs and finishes it (inline), or hands the batches to the inference queue."""
    active = active_models(run.sitemap.tasks_enabled)
    pending = run_pending_asset_ids(run, active) if active.heads else []
    # Sent during the fetch and still queued: their batches classify them, and the last one finishes the Run.
    streamed = _streamed.pop(run.pk, set())
    if streamed and pending and not inline:
        pending = [asset_id for asset_id in pending if asset_id not in streamed]
        if not pending:
            Run.objects.filter(pk=run.pk).update(worker="", heartbeat_at=timezone.now())
            return
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


def run_classify_resume(*, run_id: int) -> bool:
    """Sends again the batches of a Run handed over to them that fell silent for RUN_STALL_SECONDS (see the module
    docstring): what the database says is still missing, or one empty batch that finishes the Run if nothing is (the
    batch that would have finished it was lost). The row lock makes one worker's check do it, not every worker's.
    False when there was nothing to do (a batch showed up meanwhile) or the broker refused.
    """
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("sitemap").filter(pk=run_id).first()
        silent_since = timezone.now() - timedelta(seconds=settings.RUN_STALL_SECONDS)
        if run is None or not run_handed_over(run) or (run.heartbeat_at and run.heartbeat_at > silent_since):
            return False
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["heartbeat_at", "updated_at"])
    active = active_models(run.sitemap.tasks_enabled)
    pending = run_pending_asset_ids(run, active) if active.heads else []
    size = settings.CLASSIFY_BATCH_SIZE
    batches = [pending[i : i + size] for i in range(0, len(pending), size)] or [[]]
    logger.warning(
        "run %s: its batches fell silent with %s assets to classify; sending %s batches again",
        run_id,
        len(pending),
        len(batches),
    )
    # The broker answered the lease check a moment ago: one quick try, the next check tries again.
    return run_classify_hand_over(run_id=run_id, batches=batches, retries=1)


def run_classify_hand_over(*, run_id: int, batches: list[list[int]], retries: int | None = None) -> bool:
    """Sends the batches to the inference queue, retrying a broker that is down with a bounded backoff
    (settings.RUN_HANDOVER_RETRIES). A broker still down after that does not fail the Run: it stays running in its
    classify step with its lease released at once, and the workers' lease check (or beat's sweep) hands it over
    again when the broker is back. Batches sent twice cost nothing: a batch classifies only what still needs it.
    """
    from classifier.tasks import classify_batch_task

    policy = {
        "max_retries": settings.RUN_HANDOVER_RETRIES if retries is None else retries,
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
    # A batch sent while the Run is still fetching classifies too; only one in its classify step may finish it.
    if run.status != Run.Status.RUNNING or run.step not in (Run.Step.FETCH, Run.Step.CLASSIFY):
        return 0
    handed_over = run_handed_over(run)  # else a worker carries the Run (fetching, or inline) and beats for it
    if handed_over:  # a batch under way: the Run's sign of life
        Run.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())
    active = active or active_models(run.sitemap.tasks_enabled)
    assets = list(
        ImageAsset.objects.filter(needs_classification(asset_ids, active, since=run.started_at)).only("id", "original")
    )
    results: list[ImageResult] = []
    if assets:
        with run_heartbeat(run_id=run_id, worker="") if handed_over else nullcontext():
            results = classify_assets(assets, active)
    classified = sum(not result.errors for result in results)
    renewed = {"heartbeat_at": timezone.now()} if run.step == Run.Step.CLASSIFY else {}
    Run.objects.filter(pk=run_id).update(classified=F("classified") + classified, **renewed)
    if finish:
        run_classified_finish(run_id=run_id)
    return classified


def run_classified_finish(*, run_id: int) -> Run | None:
    """Finishes the Run once nothing is left to classify (exactly once, whichever batch gets here first)."""
    _before_finish(run_id)
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


def _before_finish(run_id: int) -> None:
    """Calls settings.RUN_BEFORE_FINISH (each with run=run) when nothing is left to classify, outside the finishing
    transaction: their slow work (model passes) holds no lock. Advisory: a failure is logged, and the Run finishes.
    Two last batches at once may both call them; they are idempotent (they cache what they compute)."""
    if not settings.RUN_BEFORE_FINISH:
        return
    run = Run.objects.select_related("sitemap").filter(pk=run_id).first()
    if run is None or run.status != Run.Status.RUNNING or run.step != Run.Step.CLASSIFY:
        return
    active = active_models(run.sitemap.tasks_enabled)
    if active.heads and run_pending_asset_ids(run, active):
        return
    for dotted_path in settings.RUN_BEFORE_FINISH:
        try:
            import_string(dotted_path)(run=run)
        except Exception:
            logger.exception("run %s: %s failed before the Run finished", run_id, dotted_path)


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
