"""Bringing a Run's image URLs in: revalidate or download each one, key it by content, record the outcome.

Threads do the network work and create new assets at once (so that the same bytes under two URLs make one
asset); the CPU work of a new image (decode, pHash, thumbnail, and what the Run's stream examines on the same
decode: the models' results, settings.RUN_CLASSIFY_STREAM) runs in forked processes, one per core
(settings.RUN_FETCH_PROCESSES), not in the threads under the GIL. The calling thread records the outcomes on the
placements in batches, one transaction each, so a worker that dies loses at most the URLs of one batch, which
the resumed Run handles again; then it hands the batch's new assets to the stream (stored results, or batches
sent to the inference queue), so that classification overlaps the fetch.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from catalog.fetching import FetchError, FetchResult, SafeFetcher
from catalog.fetching.politeness import HostPoliteness, PolitenessPolicy
from catalog.fetching.robots import RobotsCache
from catalog.imaging import sha256_hex
from catalog.models import Advertiser, Outcome, Placement, Run
from catalog.signals import placements_changed

from .assets import asset_find, asset_get_or_create
from .deadlocks import atomic_retrying_deadlocks
from .image_work import ImageWorkers, Inspected, NewImageStream, WorkersGone, decode_budget, inspect_new_image

logger = logging.getLogger(__name__)


@dataclass
class UrlJob:
    """One distinct image URL of a Run and the placements that show it."""

    url: str
    placement_ids: list[int] = field(default_factory=list)
    etag: str = ""
    last_modified: str = ""
    content_length: int | None = None
    asset_id: int | None = None
    # What each placement holds now (asset, etag, last_modified, content_length): only changes are written.
    current: dict[int, tuple[int | None, str, str, int | None]] = field(default_factory=dict)
    statuses: dict[int, str] = field(default_factory=dict)  # each placement's status before this Run


@dataclass
class UrlResult:
    outcome: Outcome
    asset_id: int | None = None
    reason: str = ""
    detail: str = ""
    fetch: FetchResult | None = None
    examined: object | None = None  # what the stream made of a new asset's decode (for NewImageStream.record)


def url_jobs_for_run(run: Run) -> tuple[int, list[UrlJob]]:
    """(distinct live image URLs of the Run's sitemap, the jobs for those this Run has not handled yet)."""
    rows = Placement.objects.filter(
        listing__sitemap_id=run.sitemap_id, is_gone=False, listing__is_gone=False
    ).values_list("id", "url", "etag", "last_modified", "content_length", "asset_id", "last_run_id", "status")
    jobs: dict[str, UrlJob] = {}
    done: set[str] = set()
    for placement_id, url, etag, last_modified, content_length, asset_id, last_run_id, status in rows:
        if last_run_id == run.pk:
            done.add(url)
            continue
        job = jobs.get(url)
        if job is None:
            job = jobs[url] = UrlJob(url=url)
        job.placement_ids.append(placement_id)
        job.current[placement_id] = (asset_id, etag, last_modified, content_length)
        job.statuses[placement_id] = status
        if asset_id is not None and (etag or last_modified) and job.asset_id is None:
            job.etag, job.last_modified, job.asset_id = etag, last_modified, asset_id
            job.content_length = content_length
    pending = [job for url, job in jobs.items() if url not in done]
    # Placements of a URL already handled in this Run (a resumed Run) take the same outcome again.
    return len(done) + len(pending), pending


class ImageFetchPool:
    """Runs the URL jobs of one Run on a bounded pool of threads with a per-host limit."""

    BATCH = 500
    # Outcomes are gathered for up to this long (at most RUN_PROGRESS_SECONDS, or BATCH of them) before they are
    # written: one transaction per batch, so an unchanged re-run's thousand 304s cost a few UPDATEs, not one
    # transaction for every handful that happened to be ready, and a first Run refreshes its stored tags
    # (reviews.effective_store, a few statements of ~10 ms whatever the batch's size) once a second, not four
    # times. A worker that dies loses at most this long of outcomes: the resumed Run handles those URLs again.
    BATCH_SECONDS = 1.0

    def __init__(
        self,
        *,
        run: Run,
        fetcher: SafeFetcher,
        on_tick: Callable[[Counter[str]], None],
        stream: NewImageStream | None = None,
    ) -> None:
        self.run = run
        self.fetcher = fetcher
        self.on_tick = on_tick
        self.stream = stream
        self._workers: ImageWorkers | None = None
        self.counts: Counter[str] = Counter()
        self.stop = threading.Event()
        self._jobs: queue.SimpleQueue[UrlJob | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[UrlJob, UrlResult]] = queue.SimpleQueue()
        self._hosts = HostPoliteness(politeness_policy())
        self._robots = RobotsCache(fetcher, settings.FETCH_USER_AGENT) if _respects_robots_txt(run) else None
        self._retries = settings.RUN_FETCH_RETRIES
        self._claim_lock = threading.Lock()
        self._claimed: set[int] = set()  # assets counted as downloaded by this attempt (created or found unrecorded)
        self._unrecorded = 0  # URLs whose outcome has not been taken off the results queue yet
        # An asset created before this attempt started may be an earlier attempt's (see _created_unrecorded).
        self._attempt_started = timezone.now()

    def run_jobs(self, jobs: list[UrlJob]) -> Counter[str]:
        threads = [
            threading.Thread(target=self._work, name=f"run-{self.run.pk}-fetch-{n}", daemon=True)
            for n in range(max(1, min(settings.RUN_FETCH_CONCURRENCY, len(jobs))))
        ]
        # Interleave hosts so that one slow CDN does not hold every thread.
        for job in _round_robin_by_host(jobs):
            self._jobs.put(job)
        for _ in threads:
            self._jobs.put(None)
        self._unrecorded = len(jobs)
        # Processes only when new images are to be expected (a URL with no asset yet): a re-run whose URLs all
        # have validators stays in this process; an image that changed after all is decoded in its thread.
        # Forked before the threads start.
        processes = min(settings.RUN_FETCH_PROCESSES, sum(job.asset_id is None for job in jobs))
        if processes > 0:
            self._workers = ImageWorkers(processes=processes, stream=self.stream)
        try:
            for thread in threads:
                thread.start()
            next_tick = time.monotonic() + settings.RUN_PROGRESS_SECONDS
            while any(thread.is_alive() for thread in threads) or not self._results.empty():
                self._record(self._drain(timeout=min(0.2, settings.RUN_PROGRESS_SECONDS)))
                if time.monotonic() >= next_tick:
                    self.on_tick(Counter(self.counts))
                    next_tick = time.monotonic() + settings.RUN_PROGRESS_SECONDS
        finally:
            self.stop.set()  # e.g. a soft time limit here: the threads finish their URL and leave
            for thread in threads:
                if thread.is_alive():
                    thread.join(timeout=60)
            if self._workers is not None:
                self._workers.close()
        self.on_tick(Counter(self.counts))
        return Counter(self.counts)

    def _drain(self, *, timeout: float) -> list[tuple[UrlJob, UrlResult]]:
        """The outcomes ready within BATCH_SECONDS of the first, up to BATCH; no wait once every URL's outcome is in
        (the last batch of a Run, and a whole re-run of a small sitemap, would idle out the full BATCH_SECONDS)."""
        batch = []
        try:
            batch.append(self._results.get(timeout=timeout))
            until = time.monotonic() + min(self.BATCH_SECONDS, settings.RUN_PROGRESS_SECONDS)
            while len(batch) < min(self.BATCH, self._unrecorded):
                left = until - time.monotonic()
                batch.append(self._results.get(timeout=left) if left > 0 else self._results.get_nowait())
        except queue.Empty:
            pass
        self._unrecorded -= len(batch)
        return batch

    def _work(self) -> None:
        try:
            while not self.stop.is_set():
                job = self._jobs.get()
                if job is None:
                    return
                try:
                    result = self._process(job)
                except Exception as exc:  # a bug or a database hiccup on one URL never stops the Run
                    logger.exception("run %s: %s failed unexpectedly", self.run.pk, job.url)
                    result = UrlResult(Outcome.FAILED, reason="internal_error", detail=f"{type(exc).__name__}: {exc}")
                self._results.put((job, result))
        finally:
            connection.close()

    def _fetch(self, job: UrlJob) -> FetchResult:
        """The URL fetched in its host's turn (HostPoliteness), a transient failure tried again: after the wait the
        host asked for (Retry-After, up to settings.RUN_FETCH_MAX_RETRY_AFTER), else after a growing backoff."""
        attempt = 0
        while True:
            try:
                with self._hosts.turn(job.url, stop=self.stop) as turn:
                    try:
                        fetched = self.fetcher.fetch(
                            job.url,
                            etag=job.etag or None,
                            last_modified=job.last_modified or None,
                            expect_image=True,
                            max_bytes=settings.FETCH_MAX_IMAGE_BYTES,
                        )
                    except FetchError as exc:
                        if exc.upstream_retry_after is not None and exc.status is not None:
                            turn.asked_to_wait(exc.upstream_retry_after, status=exc.status)
                        raise
                    turn.answered(latency=fetched.latency, status=fetched.status)
                    return fetched
            except FetchError as exc:
                asked = exc.upstream_retry_after
                if not exc.transient or attempt >= self._retries or self.stop.is_set():
                    raise
                if asked is not None and asked > self._hosts.policy.max_retry_after:
                    raise
                attempt += 1
                if asked is None:  # else the host's turn waits as long as it asked
                    time.sleep(min(8.0, settings.RUN_RETRY_BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2))  # noqa: S311

    def _process(self, job: UrlJob) -> UrlResult:
        if self._robots is not None:
            rules = self._robots.rules(job.url)
            if not rules.allows(job.url):
                why = f"its robots.txt is unreachable ({rules.unreachable})" if rules.unreachable else "robots.txt"
                detail = f"not fetched {job.url}: disallowed by {why}"
                return UrlResult(Outcome.FAILED, reason="robots_disallowed", detail=detail)
        try:
            fetched = self._fetch(job)
        except FetchError as exc:
            return UrlResult(Outcome.FAILED, reason=_reason(exc), detail=str(exc))
        if fetched.not_modified and job.asset_id is not None:
            return UrlResult(Outcome.NOT_MODIFIED, asset_id=job.asset_id, fetch=fetched)
        if fetched.not_modified:
            return UrlResult(Outcome.FAILED, reason="unexpected_304", detail="304 Not Modified to an unconditional GET")
        data = fetched.content
        known = asset_find(sha256_hex(data))
        if known is not None:
            outcome = Outcome.DOWNLOADED if self._created_unrecorded(*known) else Outcome.CACHE_HIT
            return UrlResult(outcome, asset_id=known[0], fetch=fetched)
        inspected = self._inspect(data)
        if inspected.facts is None:
            reason, message = inspected.refused or ("corrupt_image", "image could not be decoded")
            return UrlResult(Outcome.FAILED, reason=reason, detail=message, fetch=fetched)
        asset, created = asset_get_or_create(facts=inspected.facts, data=data)
        if created:
            with self._claim_lock:  # another URL of the same bytes may have found the new row already
                created = asset.pk not in self._claimed
                self._claimed.add(asset.pk)
        if not created:
            return UrlResult(Outcome.CACHE_HIT, asset_id=asset.pk, fetch=fetched)
        return UrlResult(Outcome.DOWNLOADED, asset_id=asset.pk, fetch=fetched, examined=inspected.examined)

    def _inspect(self, data: bytes) -> Inspected:
        workers = self._workers
        if workers is not None:
            try:
                return workers.inspect(data)
            except WorkersGone as exc:  # killed, out of memory: this image (and, if none is left, the rest) here
                logger.warning("run %s: %s; decoding in the fetch thread", self.run.pk, exc)
        # In a thread the stream examines nothing: what it would have done, the Run's later step does.
        return inspect_new_image(data, None, budget=decode_budget())

    def _created_unrecorded(self, asset_id: int, created_at: datetime) -> bool:
        """Whether this Run created the asset in an attempt that died before recording it: a resumed Run, the asset
        created since the Run started but before this attempt did, and no placement anywhere says it was downloaded.
        Such an asset counts as downloaded, once (the first URL of this attempt to find it claims it), not as a
        cache hit. A first attempt has no earlier one: an asset it finds unrecorded is another Run's, downloaded by
        that Run and not yet recorded (Runs of sitemaps sharing pictures at once), and is a cache hit here."""
        started = self.run.started_at
        if self.run.attempts <= 1 or started is None or not started <= created_at < self._attempt_started:
            return False
        if Placement.objects.filter(asset_id=asset_id, outcome=Outcome.DOWNLOADED).exists():
            return False
        with self._claim_lock:
            if asset_id in self._claimed:
                return False
            self._claimed.add(asset_id)
        return True

    def _record(self, batch: list[tuple[UrlJob, UrlResult]]) -> None:
        """Writes a batch of outcomes on their placements in one transaction, then counts them.

        The fields every handled placement shares go in one UPDATE per outcome; an image's own fields
        (asset, validators, failure) only where they changed, the assets and validators of the whole batch in one
        UPDATE, so a re-run costs a few queries per batch instead of one per URL, and so does a first Run.
        """
        if not batch:
            return
        now = timezone.now()
        common = {"last_checked_at": now, "last_run_id": self.run.pk, "updated_at": now}
        by_outcome: dict[str, list[int]] = {}
        own_fields: list[tuple[list[int], dict[str, object]]] = []  # failures
        validated: list[tuple[object, ...]] = []  # (placement id, *OWN_FIELDS) where they changed
        retagged: list[int] = []  # placements whose image or status changed: their tags may have
        for job, result in batch:
            by_outcome.setdefault(result.outcome, []).extend(job.placement_ids)
            status = Placement.Status.FAILED if result.outcome == Outcome.FAILED else Placement.Status.OK
            retagged.extend(
                pid
                for pid in job.placement_ids
                if job.statuses.get(pid) != status
                or (status == Placement.Status.OK and job.current[pid][0] != result.asset_id)
            )
            if result.outcome == Outcome.FAILED:
                own_fields.append(
                    (
                        job.placement_ids,
                        {"failure_reason": result.reason[:40], "failure_detail": result.detail[:2000]},
                    )
                )
                continue
            fetched = result.fetch
            assert fetched is not None  # noqa: S101 - every handled result carries its response
            # A 304 may omit validators and has no body: keep what we knew unless it sent new ones.
            wanted = (
                result.asset_id,
                (fetched.etag or ("" if not fetched.not_modified else job.etag))[:500],
                (fetched.last_modified or ("" if not fetched.not_modified else job.last_modified))[:100],
                job.content_length if fetched.not_modified else len(fetched.content),
            )
            validated.extend((pid, *wanted) for pid in job.placement_ids if job.current.get(pid) != wanted)
        new_assets = [
            (result.asset_id, result.examined)
            for _job, result in batch
            if result.outcome == Outcome.DOWNLOADED and result.asset_id is not None
        ]

        def write() -> None:
            if validated:  # first: an ok placement must have its asset (a check constraint)
                _placements_set_validators(validated)
            for ids, values in own_fields:
                Placement.objects.filter(id__in=ids).update(**values)
            for outcome, ids in by_outcome.items():
                if outcome == Outcome.FAILED:
                    values = {"status": Placement.Status.FAILED}
                else:
                    values = {"status": Placement.Status.OK, "failure_reason": "", "failure_detail": ""}
                Placement.objects.filter(id__in=ids).update(outcome=outcome, **values, **common)
            # Whatever else shows the stream's new images (another sitemap's Run found the same bytes meanwhile): the
            # stream's results are theirs too. The receiver reads those placements under the stored tags' lock.
            streamed: list[int] = []
            if self.stream is not None and new_assets:
                self._stream_record(new_assets)
                streamed = sorted({asset_id for asset_id, _ in new_assets})
            if retagged or streamed:  # one refresh of the stored tags for the batch's placements and the stream's
                placements_changed.send(sender=Placement, placement_ids=sorted(set(retagged)), asset_ids=streamed)

        # One transaction, last on the stored tags' lock (reviews.effective_store); a deadlock's victim is written
        # again at once: the outcomes are still here.
        atomic_retrying_deadlocks(write, what=f"run {self.run.pk}: recording {len(batch)} outcomes")
        for _job, result in batch:
            self.counts[result.outcome] += 1
            if result.outcome == Outcome.FAILED:
                self.counts[f"reason:{result.reason}"] += 1

    def _stream_record(self, new_assets: list[tuple[int, object | None]]) -> None:
        """The stream's record of the batch's new assets, in a savepoint of the batch's transaction: one that fails
        (the database away for a moment) loses only what the stream did, which the Run's later step does again."""
        assert self.stream is not None  # noqa: S101 - called only with a stream
        try:
            with transaction.atomic():
                self.stream.record(new_assets)
        except Exception:
            logger.exception("run %s: the new images' stream failed on a batch", self.run.pk)


OWN_FIELDS = ("asset_id", "etag", "last_modified", "content_length")


def _placements_set_validators(rows: list[tuple[object, ...]]) -> None:
    """Sets each placement's asset and validators, (id, *OWN_FIELDS) a row, in one statement. On PostgreSQL an
    UPDATE from unnested arrays, five parameters whatever the number of rows: bulk_update's CASE per row and field
    cost ~3 ms of Python a row, a third of a first Run's time in the recording thread."""
    if connection.vendor != "postgresql":
        Placement.objects.bulk_update(
            [Placement(id=cast(int, row[0]), **dict(zip(OWN_FIELDS, row[1:], strict=True))) for row in rows],
            ["asset", "etag", "last_modified", "content_length"],
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Placement._meta.db_table} AS p SET asset_id = v.asset_id, etag = v.etag, "  # noqa: S608 - our table
            "last_modified = v.last_modified, content_length = v.content_length "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::bigint[]) "
            "AS v(id, asset_id, etag, last_modified, content_length) WHERE p.id = v.id",
            [list(column) for column in zip(*rows, strict=True)],
        )


def politeness_policy() -> PolitenessPolicy:
    """The per-host politeness of this deployment's Runs (settings RUN_FETCH_PER_HOST and the AutoThrottle ones)."""
    return PolitenessPolicy(
        per_host=settings.RUN_FETCH_PER_HOST,
        target_concurrency=settings.RUN_FETCH_TARGET_CONCURRENCY,
        slow_seconds=settings.RUN_FETCH_SLOW_SECONDS,
        max_delay=settings.RUN_FETCH_MAX_DELAY,
        max_retry_after=settings.RUN_FETCH_MAX_RETRY_AFTER,
    )


def _respects_robots_txt(run: Run) -> bool:
    return bool(
        Advertiser.objects.filter(sitemaps__id=run.sitemap_id).values_list("respect_robots_txt", flat=True).first()
    )


def _reason(exc: FetchError) -> str:
    if exc.reason == "http_error" and exc.status:
        return f"http_{exc.status}"
    return exc.reason


def _round_robin_by_host(jobs: list[UrlJob]) -> list[UrlJob]:
    by_host: dict[str, list[UrlJob]] = {}
    for job in jobs:
        by_host.setdefault(urlsplit(job.url).hostname or "", []).append(job)
    lanes = list(by_host.values())
    ordered: list[UrlJob] = []
    for index in range(max((len(lane) for lane in lanes), default=0)):
        ordered.extend(lane[index] for lane in lanes if index < len(lane))
    return ordered
