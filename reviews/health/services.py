"""The health of a Run, recorded when it finishes (settings.RUN_AFTER_FINISH)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from catalog.models import Run, Sitemap, Task
from classifier.services.drift import run_drift_measure
from reviews.effective import PLACEHOLDER, ColumnNames, annotate_effective, latest_fix_label
from reviews.expressions import active_heads, disagreements, label_counts, live_placements, shares_from_counts

from . import flags as health_flags
from .flags import PREVIOUS_RUNS, Flag, RunFigures

logger = logging.getLogger(__name__)

FINISHED_STATUSES = (Run.Status.SUCCEEDED, Run.Status.PARTIAL, Run.Status.FAILED)
_COUNTER_FIELDS = ("urls", "not_modified", "cache_hits", "downloaded", "failed")


def sitemap_label_shares(*, sitemap: Sitemap, heads: dict[str, int] | None = None) -> dict[str, dict[str, float]]:
    """Share of each effective label per enabled task over the sitemap's live images that have one.

    One grouped query per task; tasks with no labelled image are left out.
    """
    heads = active_heads() if heads is None else heads
    placements = live_placements().filter(listing__sitemap=sitemap)
    shares = {}
    for task in [task for task in Task.values if task in sitemap.tasks_enabled]:
        counts = {row["label"]: row["images"] for row in label_counts(placements, task, heads)}
        if counts:
            shares[task] = shares_from_counts(counts)
    return shares


def sitemap_placeholders_with_color_fix(*, sitemap: Sitemap, heads: dict[str, int]) -> int:
    """Live images whose effective image type is Placeholder and that carry a color fix in their scope: someone
    gave a placeholder a color (the rule shows none), so the type or the fix is wrong."""
    column = ColumnNames(Task.IMAGE_TYPE)
    return (
        annotate_effective(live_placements().filter(listing__sitemap=sitemap), [Task.IMAGE_TYPE], heads)
        .filter(**{column.label: PLACEHOLDER})
        .annotate(color_fix=latest_fix_label(Task.COLOR))
        .filter(color_fix__isnull=False)
        .count()
    )


def _figures(run: Run, *, first_revalidating: int | None = None) -> RunFigures:
    """The Run's figures; `first_revalidating` is the pk of the sitemap's first Run that got a "not modified"
    (None: none has), which tells whether this Run was cold (RunFigures.cold)."""
    cold = run.not_modified == 0 and (first_revalidating is None or run.pk < first_revalidating)
    return RunFigures(
        **{name: getattr(run, name) for name in _COUNTER_FIELDS}, label_shares=run.label_shares or {}, cold=cold
    )


def _drift_flag(run: Run) -> Flag | None:
    """The drift flag of the Run: its new images against the model's reference (classifier.services.drift, which
    also stores each measured image's novelty for the review queue); none with nothing to measure or compare with.
    A measure that breaks (a model file gone) is logged and costs the Run no other flag."""
    try:
        with transaction.atomic():
            measure = run_drift_measure(run=run)
    except Exception:
        logger.exception("run %s: the drift measure failed", run.pk)
        return None
    if measure is None:
        return None
    return health_flags.drift(
        new_images=measure.new_images,
        measured=measure.measured,
        unfamiliar=measure.unfamiliar,
        usual_share=measure.usual_share,
        reference=measure.reference,
        model_version=measure.model_version,
        min_share=settings.DRIFT_SHARE,
        min_images=settings.DRIFT_MIN_IMAGES,
    )


def run_health_record(*, run: Run) -> list[Flag]:
    """Computes the Run's health flags and label shares and saves them on the Run; returns the flags.

    Idempotent: every call recomputes both from the Run, its sitemap's live images and up to PREVIOUS_RUNS
    previous finished Runs of the sitemap, and overwrites them. The comparisons need one previous Run at least.
    A previous Run is cold (not a baseline for "fetched again", see flags.cdn_changed) when it got no "not
    modified" and no Run of the sitemap before it had got one. The drift flag compares the Run's new images with
    the model's reference instead (`_drift_flag`).
    """
    sitemap = run.sitemap
    heads = active_heads()
    run.label_shares = sitemap_label_shares(sitemap=sitemap, heads=heads)
    first_revalidating = (
        Run.objects.filter(sitemap_id=run.sitemap_id, not_modified__gt=0, pk__lt=run.pk)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    previous = [
        _figures(previous_run, first_revalidating=first_revalidating)
        for previous_run in Run.objects.filter(
            sitemap_id=run.sitemap_id, status__in=FINISHED_STATUSES, finished_at__isnull=False, pk__lt=run.pk
        )
        .order_by("-pk")
        .only(*_COUNTER_FIELDS, "label_shares")[:PREVIOUS_RUNS]
    ]
    current = _figures(run, first_revalidating=first_revalidating)
    active_tasks = [task for task in Task.values if task in heads and task in sitemap.tasks_enabled]
    flags: list[Flag | None] = [
        health_flags.ml_failed(
            classification_failed=int(run.failure_reasons.get("classification_failed", 0)),
            downloaded=run.downloaded,
            classified=run.classified,
            active_tasks=active_tasks,
        ),
        health_flags.failures_jump(current, previous),
        health_flags.cdn_changed(current, previous),
        *health_flags.label_share_jumps(current, previous),
        health_flags.placeholder_with_color_fix(sitemap_placeholders_with_color_fix(sitemap=sitemap, heads=heads)),
        health_flags.disagreements(disagreements().filter(advertiser_id=sitemap.advertiser_id).count()),
        _drift_flag(run),
    ]
    run.health_flags = [item for item in flags if item is not None]
    run.save(update_fields=["health_flags", "label_shares", "updated_at"])
    return run.health_flags
