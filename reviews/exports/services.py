"""Writes of the dataset export: create, build (in the background), decide on likely label mistakes, freeze.

Lifecycle: `export_create` checks the filters and that something matches, creates a `building` row and enqueues
`export_build` (Celery task reviews.export_build); the build fills the items and exclusions, splits, looks for
likely label mistakes and ends in `review`; staff keep or drop each flagged item (`export_decide`); then
`export_freeze` writes the manifest, the ImageFolder zip and its SHA-256 to storage and the export never changes
again. `training_manifest` hands a frozen export to the classifier's training (which never imports reviews).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import IO, Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import CharField, Exists, F, OuterRef, Subquery, Value
from django.db.models.expressions import Window
from django.db.models.functions import MD5, Cast, Concat, RowNumber
from django.utils import timezone

from catalog.models import TASK_LABELS, Advertiser, Placement, Task
from classifier.models import Classification, ModelHead, ModelVersion
from classifier.services.training import CONFIDENT
from core.errors import ApplicationError
from reviews.accuracy import local_accuracies
from reviews.comparison import confident_model_tags
from reviews.expressions import active_heads, live_placements, picture
from reviews.models import DatasetExport, ExportExclusion, ExportItem, ManualFix
from reviews.selectors import vehicle_kinds

from .files import DatasetWriter, ManifestRow, crop_jpeg, sha256_of
from .selectors import (
    KEPT_DECISIONS,
    Filters,
    conflicting_scopes,
    earlier_test,
    exclusion_counts,
    export_candidates,
    export_has_candidates,
    extended_drops,
    extended_items,
    placeholder_scopes,
    split_counts,
    training_cutoff,
)
from .split import TEST_SHARE, SplitItem, assign_splits

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

BATCH = 2000
SEED = 0
LABEL_ISSUES_MIN_ITEMS = 20
RETAIN_CONFIDENCE = CONFIDENT
RETAIN_MIN = 300
RETAIN_TRUSTED_ACCURACY = 0.9  # an advertiser's model tags serve as pseudo-labels only if the model is right this often
RETAIN_TRUSTED_REVIEWS = 10  # ...on at least this many reviewed tags (fewer: not known to be wrong, kept)
Reason = ExportExclusion.Reason
# What the build reads of each candidate (export_candidates annotates ok_listing, min_side and picture).
CANDIDATE_FIELDS = (
    "id", "advertiser_id", "asset_id", "new_label", "source", "ok_listing", "min_side", "picture", "asset__original",
)  # fmt: skip


class ExportError(ApplicationError):
    """A dataset export cannot be created, changed or frozen; the message says why in one line."""

    code = "export_refused"


class ExportConflict(ExportError):
    """A well-formed request that what is stored refuses (no such export or advertiser, an export not frozen or of
    another task, no labelled image that matches): HTTP 409, as another state of the data would take it."""

    code = "export_conflict"
    http_status = 409


# Create.


def _since_datetime(since: date | datetime) -> datetime:
    if isinstance(since, datetime):
        return since if timezone.is_aware(since) else timezone.make_aware(since)
    return timezone.make_aware(datetime.combine(since, time.min))


def _extended(extends: DatasetExport | int | None, task: str) -> DatasetExport | None:
    if extends is None:
        return None
    base = extends if isinstance(extends, DatasetExport) else DatasetExport.objects.filter(pk=extends).first()
    if base is None:
        raise ExportConflict(f"export {extends} does not exist")
    if base.task != task:
        raise ExportConflict(f"export {base.pk} is a {base.task} export: it cannot extend a {task} export")
    if not base.is_frozen:
        raise ExportConflict(f"export {base.pk} is not frozen: freeze it before extending it")
    return base


def _describe(params: dict[str, Any]) -> str:
    parts = [f"task {params['task']}"]
    if params.get("since"):
        after = f" (export {params['since_export']} was used for training)" if params.get("since_export") else ""
        parts.append(f"fixed since {params['since']}{after}")
    if params.get("advertisers"):
        parts.append(f"advertisers {', '.join(params['advertisers'])}")
    if params.get("sources"):
        parts.append(f"sources {', '.join(params['sources'])}")
    parts.append(f"images at least {params['min_side']} px")
    return "; ".join(parts)


def _filters(params: dict[str, Any], extends_id: int | None) -> Filters:
    return Filters(
        task=params["task"],
        since=datetime.fromisoformat(params["since"]) if params.get("since") else None,
        advertiser_ids=tuple(params.get("advertiser_ids", ())),
        sources=tuple(params.get("sources", ())),
        min_side=int(params.get("min_side", 64)),
        extends_id=extends_id,
    )


def export_create(
    *,
    task: str,
    since: date | datetime | None = None,
    since_last_training: bool = True,
    advertisers: Sequence[str] = (),
    sources: Sequence[str] = (),
    min_side: int = 64,
    extends: DatasetExport | int | None = None,
    user: User | None = None,
    enqueue: bool = True,
    progress: Progress | None = None,
) -> DatasetExport:
    """Creates a dataset export of `task` and builds it: in the background (Celery task reviews.export_build,
    enqueued after commit) or, with enqueue=False, here (`progress` then reports the build).

    Takes the human labels (staff, API and portal fixes; confirmations too) fixed since `since`, else, by default,
    since the last export of the task used for training was built (everything when none was), of `advertisers`
    (slugs) and `sources` (both: all when empty), on images at least `min_side` px on their shorter side.
    `extends` (a frozen export of the task) keeps its items and their split. Raises ExportError for an unknown
    task, advertiser or source, and when no labelled image matches: then nothing is created.
    """
    if task not in Task.values:
        raise ExportError(f"unknown task {task!r}: tasks are {', '.join(Task.values)}")
    slugs = sorted(set(advertisers))
    advertiser_ids = dict(Advertiser.objects.filter(slug__in=slugs).values_list("slug", "id"))
    if unknown := [slug for slug in slugs if slug not in advertiser_ids]:
        raise ExportConflict(f"unknown advertiser: {', '.join(unknown)}")
    human = [str(source) for source in ManualFix.HUMAN]
    if unknown := sorted(set(sources) - set(human)):
        raise ExportError(
            f"{', '.join(unknown)} is not a source of human labels: use {', '.join(human)}"
            " (a carried fix copies a label, no one looked)"
        )
    if min_side < 1:
        raise ExportError(f"the minimum side must be at least 1 px, not {min_side}")
    base = _extended(extends, task)
    cutoff = training_cutoff(task=task) if since is None and since_last_training else None
    start = _since_datetime(since) if since is not None else (cutoff.created_at if cutoff else None)
    params: dict[str, Any] = {
        "task": task,
        "since": start.isoformat() if start else None,
        "since_last_training": since is None and since_last_training,
        "since_export": cutoff.pk if cutoff else None,
        "advertisers": slugs,
        "advertiser_ids": [advertiser_ids[slug] for slug in slugs],
        "sources": sorted(set(sources)),
        "min_side": min_side,
        "test_share": TEST_SHARE,
        "seed": SEED,
    }
    extends_id = base.pk if base else None
    if not export_has_candidates(_filters(params, extends_id)):
        raise ExportConflict(f"no labelled images match these filters: {_describe(params)}")
    export = DatasetExport.objects.create(
        task=task,
        params=params,
        extends=base,
        model_version_id=active_heads().get(task),
        created_by=user,
        stage="queued",
    )
    if enqueue:
        from reviews.tasks import export_build_task

        export_build_task.delay_on_commit(export.pk)  # type: ignore[attr-defined]  # not in celery-types yet
        return export
    return export_build(export_id=export.pk, progress=progress)


# Build.


class _Reporter:
    """Saves progress and stage on the export every 2% (and on each new stage), and tells `progress`."""

    def __init__(self, export: DatasetExport, progress: Progress | None) -> None:
        self.export = export
        self.progress = progress
        self.saved = (-1.0, "")

    def __call__(self, fraction: float, stage: str) -> None:
        fraction = max(0.0, min(1.0, fraction))
        if self.progress is not None:
            self.progress(fraction, stage)
        if stage != self.saved[1] or fraction - self.saved[0] >= 0.02 or fraction == 1.0:
            DatasetExport.objects.filter(pk=self.export.pk).update(
                progress=fraction, stage=stage[:200], updated_at=timezone.now()
            )
            self.export.progress, self.export.stage = fraction, stage[:200]
            self.saved = (fraction, stage)


@dataclass
class _Candidate:
    advertiser: int
    asset: int
    fix: int
    label: str
    source: str
    listing: int | None
    picture: int
    pinned: str | None
    old_label: str | None  # the label the extended export had, when it had this item


def _require_unfrozen(export: DatasetExport) -> None:
    if export.is_frozen:
        raise ExportError(f"export {export.pk} is frozen: it cannot change")


def export_build(*, export_id: int, progress: Progress | None = None) -> DatasetExport:
    """Fills a `building` export: its items with their split, its exclusions with their reasons, its counts and
    its likely label mistakes; ends in `review`. `progress(fraction, stage)` is told as it goes, and the export's
    progress and stage are saved every few percent.

    Idempotent: a rerun after a crash clears what the export holds and does it again; an export already built
    is returned as it is. Frozen exports raise ExportError. A failure marks the export failed, with the reason.
    """
    export = DatasetExport.objects.filter(pk=export_id).first()
    if export is None:
        raise ExportError(f"export {export_id} does not exist")
    _require_unfrozen(export)
    if export.status != DatasetExport.Status.BUILDING:
        return export
    report = _Reporter(export, progress)
    try:
        _build(export, report)
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        DatasetExport.objects.filter(pk=export.pk).update(
            status=DatasetExport.Status.FAILED, error=message, stage=f"failed: {message}"[:200]
        )
        export.refresh_from_db()
        raise
    return export


def _batches(iterable: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in iterable:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _build(export: DatasetExport, report: _Reporter) -> None:
    report(0.0, "clearing")
    export.items.all().delete()
    export.exclusions.all().delete()
    task = export.task
    filters = _filters(export.params, export.extends_id)
    base = extended_items(export_id=export.extends_id) if export.extends_id else {}
    drops = extended_drops(export_id=export.extends_id) if export.extends_id else set()
    conflicts = conflicting_scopes(task=task)
    test_assets, test_pictures = earlier_test(export=export)

    candidates = export_candidates(filters)
    total = candidates.count()
    rows = candidates.values(*CANDIDATE_FIELDS).order_by("advertiser_id", "asset_id")
    chosen: list[_Candidate] = []
    excluded: list[ExportExclusion] = []
    done = 0
    for batch in _batches(rows.iterator(chunk_size=BATCH), BATCH):
        scopes = [(row["advertiser_id"], row["asset_id"]) for row in batch]
        placeholders = placeholder_scopes(scopes=scopes) if task == Task.COLOR else set()
        for row, scope in zip(batch, scopes, strict=True):
            kept = base.get(scope)
            reason = _reason(row, scope, kept is not None, filters.min_side, conflicts, placeholders, drops)
            if reason is not None:
                excluded.append(
                    ExportExclusion(
                        export=export, advertiser_id=scope[0], asset_id=scope[1], fix_id=row["id"],
                        label=row["new_label"], reason=reason,
                    )
                )  # fmt: skip
                continue
            chosen.append(
                _Candidate(
                    advertiser=scope[0], asset=scope[1], fix=row["id"], label=row["new_label"], source=row["source"],
                    listing=kept[2] if kept and kept[2] else row["ok_listing"], picture=row["picture"],
                    pinned=kept[1] if kept else None, old_label=kept[0] if kept else None,
                )
            )  # fmt: skip
        ExportExclusion.objects.bulk_create(excluded, batch_size=BATCH)
        excluded = []
        done += len(batch)
        report(0.4 * done / max(total, 1), f"selecting labelled images: {done:,} of {total:,}")

    if not chosen:
        reasons = Counter(exclusion_counts(export=export))
        left_out = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())) or "none matched"
        raise ExportError(f"no labelled images left for this export ({left_out}): {_describe(export.params)}")

    report(0.4, "splitting train and test")
    assignments = assign_splits(
        [
            SplitItem(
                key=index, label=item.label, picture=item.picture, listing=item.listing, pinned=item.pinned,
                sticky_test=item.asset in test_assets or item.picture in test_pictures,
            )
            for index, item in enumerate(chosen)
        ],
        test_share=float(export.params.get("test_share", TEST_SHARE)),
        seed=int(export.params.get("seed", SEED)),
    )  # fmt: skip
    slugs = dict(Advertiser.objects.filter(pk__in={item.advertiser for item in chosen}).values_list("id", "slug"))
    changed = [
        {"asset": item.asset, "advertiser": slugs[item.advertiser], "old": item.old_label, "new": item.label}
        for item in chosen
        if item.old_label is not None and item.old_label != item.label
    ]
    version = export.model_version
    boxes = _crop_boxes(version, task, [item.asset for item in chosen])
    for start in range(0, len(chosen), BATCH):
        ExportItem.objects.bulk_create(
            [
                ExportItem(
                    export=export, advertiser_id=item.advertiser, asset_id=item.asset, listing_id=item.listing,
                    fix_id=item.fix, label=item.label, source=item.source, split=assignments[index].split,
                    group=assignments[index].group[:100], crop_box=boxes.get(item.asset),
                )
                for index, item in enumerate(chosen[start : start + BATCH], start=start)
            ]
        )  # fmt: skip
        report(0.4 + 0.1 * min(start + BATCH, len(chosen)) / len(chosen), "writing items")

    issues, note = _label_issues(export, report)
    export.counts = split_counts(export=export)
    export.excluded = exclusion_counts(export=export)
    export.changed = changed
    export.label_issues = issues
    export.status = DatasetExport.Status.REVIEW
    export.progress = 1.0
    items = sum(sum(labels.values()) for labels in export.counts.values())
    stage = f"ready: {items:,} items, {issues:,} likely label mistakes to look at"
    export.stage = (f"{stage}; {note}" if note else stage)[:200]
    export.error = ""
    export.save(
        update_fields=[
            "counts", "excluded", "changed", "label_issues", "status", "progress", "stage", "error", "updated_at"
        ]
    )  # fmt: skip
    report(1.0, export.stage)


def _reason(
    row: dict[str, Any],
    scope: tuple[int, int],
    kept: bool,
    min_side: int,
    conflicts: dict[str, set[tuple[int, int]]],
    placeholders: set[tuple[int, int]],
    drops: set[tuple[int, int, int | None]],
) -> str | None:
    """Why a labelled image stays out, or None. An item kept from the extended export needs its original only:
    its listing may be gone since."""
    if not row["asset__original"] or (not kept and row["ok_listing"] is None):
        return Reason.FAILED
    if row["min_side"] < min_side:
        return Reason.TOO_SMALL
    for reason, scopes in conflicts.items():
        if scope in scopes:
            return reason
    if scope in placeholders:
        return Reason.PLACEHOLDER
    if (*scope, row["id"]) in drops:
        return Reason.DROPPED
    return None


def _crop_boxes(version: ModelVersion | None, task: str, asset_ids: list[int]) -> dict[int, list[int] | None]:
    """The crop the active model sees for each asset (classifier.services.features.crop_boxes): the box it was
    classified on, else the active detector's cached box when it crops, else the whole image (None)."""
    if version is None or not asset_ids:
        return {}
    from classifier.services.features import FeatureError, crop_boxes

    boxes: dict[int, list[int] | None] = {}
    distinct = list(dict.fromkeys(asset_ids))
    try:
        for start in range(0, len(distinct), BATCH):
            boxes.update(crop_boxes(version=version, task=task, asset_ids=distinct[start : start + BATCH]))
    except FeatureError as exc:
        logger.warning("export crop boxes: %s", exc)
    return boxes


def _vocabulary_label(task: str, label: str) -> str:
    """The task's spelling of a model's label (models may spell labels their own way)."""
    for known in TASK_LABELS.get(task, ()):
        if known.lower() == label.lower():
            return known
    return label


def _label_issues(export: DatasetExport, report: _Reporter) -> tuple[int, str]:
    """Flags the likely label mistakes (decision pending) and stores each item's out-of-sample prediction.

    Cleanlab's rule (classifier.training.label_issues) on the active model's penultimate features: probabilities
    from heads fitted on the other folds (grouped like the split, so a near-copy never judges its twin), and an
    item is flagged when that model confidently puts it in another class. Returns (issues, why none were looked
    for).
    """
    skipped = "likely label mistakes not looked for: "
    version = export.model_version
    if version is None:
        return 0, f"{skipped}no active {export.task} model"
    head = ModelHead.objects.filter(model_version=version, task=export.task).first()
    if head is None:
        return 0, f"{skipped}model {version.name} does not tag {export.task}"
    index = {str(label).lower(): i for i, label in enumerate(head.labels)}
    rows = [
        row
        for row in ExportItem.objects.filter(export=export)
        .order_by("id")
        .values_list("id", "asset_id", "label", "group")
        if row[2].lower() in index
    ]
    labels = {row[2] for row in rows}
    if len(rows) < LABEL_ISSUES_MIN_ITEMS or len(labels) < 2:
        known = f"{len(rows)} items with {len(labels)} labels the model knows"
        return 0, f"{skipped}{known} (needs {LABEL_ISSUES_MIN_ITEMS} items and 2 labels)"

    from classifier.services.features import FeatureError, asset_features
    from classifier.training.label_issues import find_label_issues, out_of_sample_probabilities
    from classifier.training.refit import RefitError

    def features_progress(done: int, total: int) -> None:
        report(0.5 + 0.4 * done / max(total, 1), f"reading the model's features: {done:,} of {total:,} images")

    y = np.array([index[row[2].lower()] for row in rows], dtype=np.int64)
    try:
        features = asset_features(
            version=version, task=export.task, asset_ids=[row[1] for row in rows], progress=features_progress
        )
        report(0.9, "looking for likely label mistakes")
        probabilities = out_of_sample_probabilities(
            features, y, len(head.labels), groups=np.array([row[3] for row in rows]), seed=SEED
        )
        issues = set(find_label_issues(y, probabilities))
    except (FeatureError, RefitError, ValueError, OSError) as exc:
        return 0, f"{skipped}{exc}"
    predicted = probabilities.argmax(axis=1)
    updates = [
        ExportItem(
            pk=row[0],
            model_label=_vocabulary_label(export.task, str(head.labels[int(predicted[i])])),
            self_confidence=round(float(probabilities[i, y[i]]), 6),
            decision=ExportItem.Decision.PENDING if i in issues else ExportItem.Decision.NONE,
        )
        for i, row in enumerate(rows)
    ]
    ExportItem.objects.bulk_update(updates, ["model_label", "self_confidence", "decision"], batch_size=500)
    return len(issues), ""


# Review.


@transaction.atomic
def export_decide(*, export: DatasetExport, item_id: int, decision: str) -> ExportItem:
    """Keeps or drops one likely label mistake of an export in review (decision "keep", "drop", or "pending" to
    look again). A dropped item stays out of the dataset (an exclusion "dropped" when frozen)."""
    locked = DatasetExport.objects.select_for_update().get(pk=export.pk)
    _require_unfrozen(locked)
    if locked.status != DatasetExport.Status.REVIEW:
        raise ExportError(f"export {locked.pk} is {locked.get_status_display().lower()}: nothing to decide yet")
    allowed = (ExportItem.Decision.KEEP, ExportItem.Decision.DROP, ExportItem.Decision.PENDING)
    if decision not in allowed:
        raise ExportError(f"decide {', '.join(allowed)}, not {decision!r}")
    item = locked.items.exclude(decision=ExportItem.Decision.NONE).filter(pk=item_id).first()
    if item is None:
        raise ExportError(f"item {item_id} is not a likely label mistake of export {locked.pk}")
    item.decision = decision
    item.save(update_fields=["decision"])
    locked.counts = split_counts(export=locked)
    locked.save(update_fields=["counts", "updated_at"])
    export.counts = locked.counts
    return item


# Freeze.


def _freeze_check(export: DatasetExport, *, keep_pending: bool) -> None:
    _require_unfrozen(export)
    if export.status != DatasetExport.Status.REVIEW:
        raise ExportError(f"export {export.pk} is {export.get_status_display().lower()}: it cannot be frozen")
    pending = export.items.filter(decision=ExportItem.Decision.PENDING).count()
    if pending and not keep_pending:
        raise ExportError(
            f"{pending} likely label mistakes of export {export.pk} are still to look at: keep or drop each,"
            " or freeze keeping them"
        )


def export_freeze_enqueue(*, export: DatasetExport, keep_pending: bool = False) -> DatasetExport:
    """Checks that the export can be frozen, then freezes it in the background (Celery task reviews.export_freeze):
    the zip of a large export takes minutes."""
    _freeze_check(export, keep_pending=keep_pending)
    from reviews.tasks import export_freeze_task

    DatasetExport.objects.filter(pk=export.pk).update(stage="freezing: queued", progress=0.0)
    export_freeze_task.delay_on_commit(export.pk, keep_pending)  # type: ignore[attr-defined]
    return export


_MANIFEST_FIELDS = (
    "id", "advertiser_id", "asset_id", "asset__sha256", "asset__original", "asset__width", "asset__height",
    "asset__format", "label", "split", "group", "advertiser__slug", "listing_id", "listing__url", "source", "fix_id",
    "crop_box", "model_label", "self_confidence", "decision",
)  # fmt: skip


def _manifest_row(row: dict[str, Any]) -> ManifestRow:
    return ManifestRow(
        item=row["id"], asset=row["asset_id"], sha256=row["asset__sha256"], label=row["label"], split=row["split"],
        group=row["group"], advertiser=row["advertiser__slug"], listing=row["listing_id"],
        listing_url=row["listing__url"] or "", source=row["source"], fix=row["fix_id"], crop_box=row["crop_box"],
        width=row["asset__width"], height=row["asset__height"], format=row["asset__format"],
        model_label=row["model_label"], self_confidence=row["self_confidence"], decision=row["decision"],
    )  # fmt: skip


def _render(row: dict[str, Any]) -> tuple[dict[str, Any], bytes, bytes] | tuple[dict[str, Any], None, str]:
    """The crop and the full original of one item, or (row, None, why not)."""
    try:
        with default_storage.open(row["asset__original"], "rb") as handle:
            full = handle.read()
        return row, crop_jpeg(full, row["crop_box"]), full
    except Exception as exc:  # any unreadable original: left out as a failed image, the freeze goes on
        return row, None, f"{type(exc).__name__}: {exc}"


def _replace(name: str, file: IO[bytes]) -> str:
    if default_storage.exists(name):  # a freeze that died after writing it
        default_storage.delete(name)
    return default_storage.save(name, File(file, name=os.path.basename(name)))


def export_freeze(
    *, export: DatasetExport, keep_pending: bool = False, progress: Progress | None = None
) -> DatasetExport:
    """Freezes an export in review: writes to storage the manifest (JSON Lines, one object per item) and the
    ImageFolder zip (crops as the model sees them, the full originals beside them, the manifest inside; see
    reviews.exports.files) and the zip's SHA-256, then the export never changes.

    Refuses while likely label mistakes are pending, unless `keep_pending` (they are then kept). Dropped items
    become exclusions "dropped"; an item whose original cannot be read becomes an exclusion "failed_image".
    """
    export.refresh_from_db()
    _freeze_check(export, keep_pending=keep_pending)
    report = _Reporter(export, progress)
    if keep_pending:
        export.items.filter(decision=ExportItem.Decision.PENDING).update(decision=ExportItem.Decision.KEEP)
    export.exclusions.filter(reason=Reason.DROPPED).delete()
    dropped = export.items.filter(decision=ExportItem.Decision.DROP).values_list(
        "advertiser_id", "asset_id", "fix_id", "label"
    )
    ExportExclusion.objects.bulk_create(
        [
            ExportExclusion(export=export, advertiser_id=a, asset_id=s, fix_id=f, label=label, reason=Reason.DROPPED)
            for a, s, f, label in dropped.iterator(chunk_size=BATCH)
        ],
        batch_size=BATCH,
    )
    items = (
        ExportItem.objects.filter(export=export, decision__in=KEPT_DECISIONS)
        .order_by("split", "label", "asset__sha256", "advertiser_id")
        .values(*_MANIFEST_FIELDS)
    )
    total = items.count()
    unreadable: list[tuple[dict[str, Any], str]] = []
    with tempfile.TemporaryFile() as zip_file, tempfile.TemporaryFile() as manifest_file:
        writer = DatasetWriter(zip_file, manifest_file)
        done = 0
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for batch in _batches(items.iterator(chunk_size=256), 64):
                for row, crop, full in pool.map(_render, batch):
                    if crop is None:
                        unreadable.append((row, str(full)))
                        continue
                    assert isinstance(full, bytes)  # noqa: S101 - _render returns bytes with a crop
                    writer.add(_manifest_row(row), crop=crop, full=full)
                done += len(batch)
                report(0.95 * done / max(total, 1), f"writing the zip: {done:,} of {total:,} items")
        writer.close()
        if not writer.items:
            raise ExportError(f"export {export.pk}: no item's original could be read, nothing to freeze")
        digest = sha256_of(zip_file)
        report(0.96, "storing the zip")
        zip_name = _replace(f"exports/{export.pk}/{export.task}-export-{export.pk}.zip", zip_file)
        manifest_name = _replace(f"exports/{export.pk}/manifest.jsonl", manifest_file)

    with transaction.atomic():
        locked = DatasetExport.objects.select_for_update().get(pk=export.pk)
        _require_unfrozen(locked)
        for row, why in unreadable:
            logger.warning("export %s: asset %s left out: %s", export.pk, row["asset_id"], why)
            ExportExclusion.objects.create(
                export=locked, advertiser_id=row["advertiser_id"],
                asset_id=row["asset_id"], fix_id=row["fix_id"], label=row["label"], reason=Reason.FAILED,
            )  # fmt: skip
        ExportItem.objects.filter(pk__in=[row["id"] for row, _ in unreadable]).delete()
        locked.file.name = zip_name
        locked.manifest.name = manifest_name
        locked.sha256 = digest
        locked.frozen_at = timezone.now()
        locked.status = DatasetExport.Status.FROZEN
        locked.counts = split_counts(export=locked)
        locked.excluded = exclusion_counts(export=locked)
        locked.progress = 1.0
        locked.stage = f"frozen: {writer.items:,} items"
        locked.save()
    report(1.0, locked.stage)
    return locked


# Training.


def training_manifest(*, export: DatasetExport) -> dict[str, Any]:
    """What classifier training reads from a frozen export (the loop contract): the task, its labels, the items
    (kept ones) with their split, advertiser and group, `retain` and `guard` (see `_guard`: the images on which
    training counts each candidate's flips of confident model tags, for every advertiser with live images).

    `retain` keeps what the model knew (pseudo-labels): confident (>= 0.9) tags of the active model on live images
    of any advertiser that no one fixed for the task (in any scope) and that are not (nor a near-duplicate of) an
    item of the export; a deterministic sample of up to max(300, 2 x items), each with an advertiser showing it.
    Images an advertiser shows on whom the model is demonstrably wrong (local accuracy on reviewed tags under
    RETAIN_TRUSTED_ACCURACY with RETAIN_TRUSTED_REVIEWS or more reviews: the drifted advertiser the export exists
    for) are left out: there, a confident model tag is the very mistake the candidates must unlearn.
    """
    if not export.is_frozen:
        raise ExportError(f"export {export.pk} is not frozen: freeze it before training on it")
    items = [
        {"asset": asset, "label": label, "split": split, "advertiser": slug, "group": group}
        for asset, label, split, slug, group in ExportItem.objects.filter(export=export, decision__in=KEPT_DECISIONS)
        .order_by("id")
        .values_list("asset_id", "label", "split", "advertiser__slug", "group")
    ]
    retain = _retain(export, limit=max(RETAIN_MIN, 2 * len(items)))
    # The vehicle kind of each row, where the active detector's contract says one: training judges and weighs by it.
    kinds = vehicle_kinds(row["asset"] for row in [*items, *retain])
    for row in [*items, *retain]:
        if row["asset"] in kinds:
            row["kind"] = kinds[row["asset"]]
    return {
        "export": export.pk,
        "task": export.task,
        "labels": list(TASK_LABELS.get(export.task, ())),
        "items": items,
        "retain": retain,
        "guard": _guard(export, per_advertiser=int(getattr(settings, "LOOP_GUARD_SAMPLE", 300))),
    }


def _guard(export: DatasetExport, *, per_advertiser: int) -> list[dict[str, Any]]:
    """Per advertiser with live images, up to `per_advertiser` of its images whose effective tag is a confident
    model tag (comparison.confident_model_tags: nobody labelled them), a deterministic sample (salted apart from
    `retain`'s, though the two may share images): training counts how many of them each candidate would flip.
    The label is not given: training reads the parent's stored one."""
    heads = active_heads()
    if export.task not in heads or per_advertiser <= 0:
        return []
    rows = (
        confident_model_tags(task=export.task, heads=heads)
        .annotate(
            guard_advertiser=F("listing__sitemap__advertiser__slug"),
            order=MD5(Concat(Value(f"guard:{export.pk}:"), Cast("asset_id", CharField()))),
        )
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("listing__sitemap__advertiser_id")],
                order_by=[F("order").asc(), F("id").asc()],
            )
        )
        .filter(rank__lte=per_advertiser)
        .order_by("listing__sitemap__advertiser_id", "rank")
        .values_list("asset_id", "guard_advertiser")
    )
    # Two placements of one picture at one advertiser are one image.
    return [{"asset": asset, "advertiser": slug} for asset, slug in dict.fromkeys(rows)]


def _retain(export: DatasetExport, *, limit: int) -> list[dict[str, Any]]:
    version_id = active_heads().get(export.task)
    if version_id is None:
        return []
    same_picture = picture()
    live = live_placements().filter(status=Placement.Status.OK, asset_id=OuterRef("asset_id"))
    untrusted = [
        advertiser_id
        for (advertiser_id, task), accuracy in local_accuracies(heads={export.task: version_id}).items()
        if task == export.task
        and accuracy.reviewed >= RETAIN_TRUSTED_REVIEWS
        and (accuracy.accuracy or 0.0) < RETAIN_TRUSTED_ACCURACY
    ]
    in_export = (
        ExportItem.objects.filter(export=export).annotate(picture=same_picture).filter(picture=OuterRef("picture"))
    )
    advertiser = live.order_by("listing__sitemap__advertiser_id").values("listing__sitemap__advertiser__slug")[:1]
    rows = (
        Classification.objects.filter(
            model_version_id=version_id,
            task=export.task,
            status=Classification.Status.OK,
            confidence__gte=RETAIN_CONFIDENCE,
        )
        .filter(Exists(live))
        .exclude(Exists(live.filter(listing__sitemap__advertiser_id__in=untrusted)))
        .exclude(Exists(ManualFix.objects.filter(asset_id=OuterRef("asset_id"), task=export.task)))
        .annotate(picture=same_picture)
        .exclude(Exists(in_export))
        .annotate(
            advertiser=Subquery(advertiser, output_field=CharField()),
            order=MD5(Concat(Value(f"{export.pk}:"), Cast("asset_id", CharField()))),
        )
        .order_by("order", "asset_id")
        .values_list("asset_id", "label", "advertiser")[:limit]
    )
    return [
        {"asset": asset, "label": _vocabulary_label(export.task, label), "advertiser": slug}
        for asset, label, slug in rows
    ]


def export_mark_used(*, export: DatasetExport) -> DatasetExport:
    """Records that training started from this frozen export: the next export, by default, takes the fixes made
    since this one was built."""
    if not export.is_frozen:
        raise ExportError(f"export {export.pk} is not frozen: freeze it before training on it")
    export.used_for_training_at = timezone.now()
    DatasetExport.objects.filter(pk=export.pk).update(
        used_for_training_at=export.used_for_training_at, updated_at=timezone.now()
    )
    return export
