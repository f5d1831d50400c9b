"""The health of a Run, recorded when it finishes (settings.RUN_AFTER_FINISH)."""

from __future__ import annotations

from catalog.models import Run, Sitemap, Task
from reviews.expressions import (
    active_heads,
    disagreements,
    effective_label,
    label_counts,
    live_placements,
    model_label,
    shares_from_counts,
)

from . import flags as health_flags
from .flags import PREVIOUS_RUNS, Flag, RunFigures

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


def sitemap_placeholders_with_color(*, sitemap: Sitemap, heads: dict[str, int]) -> int:
    """Live images whose effective image type is Placeholder and that the active color model gave a color."""
    if Task.COLOR not in heads:
        return 0
    return (
        live_placements()
        .filter(listing__sitemap=sitemap)
        .annotate(image_type=effective_label(Task.IMAGE_TYPE, heads), model_color=model_label(Task.COLOR, heads))
        .filter(image_type="Placeholder", model_color__isnull=False)
        .count()
    )


def _figures(run: Run) -> RunFigures:
    return RunFigures(**{name: getattr(run, name) for name in _COUNTER_FIELDS}, label_shares=run.label_shares or {})


def run_health_record(*, run: Run) -> list[Flag]:
    """Computes the Run's health flags and label shares and saves them on the Run; returns the flags.

    Idempotent: every call recomputes both from the Run, its sitemap's live images and up to PREVIOUS_RUNS
    previous finished Runs of the sitemap, and overwrites them. The comparisons need one previous Run at least.
    """
    sitemap = run.sitemap
    heads = active_heads()
    run.label_shares = sitemap_label_shares(sitemap=sitemap, heads=heads)
    previous = [
        _figures(previous_run)
        for previous_run in Run.objects.filter(
            sitemap_id=run.sitemap_id, status__in=FINISHED_STATUSES, finished_at__isnull=False, pk__lt=run.pk
        )
        .order_by("-pk")
        .only(*_COUNTER_FIELDS, "label_shares")[:PREVIOUS_RUNS]
    ]
    current = _figures(run)
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
        health_flags.placeholder_with_color(sitemap_placeholders_with_color(sitemap=sitemap, heads=heads)),
        health_flags.disagreements(disagreements().filter(advertiser_id=sitemap.advertiser_id).count()),
    ]
    run.health_flags = [item for item in flags if item is not None]
    run.save(update_fields=["health_flags", "label_shares", "updated_at"])
    return run.health_flags
