"""Manual fixes: every correction is a new row (history), and the latest in its scope wins."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from catalog.models import TASK_LABELS, ImageAsset, Outcome, Placement, Run, Task
from reviews.models import ManualFix
from reviews.selectors import effective_tags


class FixError(Exception):
    """A fix cannot be recorded; the message says why."""


@dataclass(frozen=True)
class Change:
    placement: Placement
    task: str
    label: str


def canonical_label(task: str, label: str) -> str:
    """The task's label spelled as the vocabulary spells it (case-insensitive), or FixError."""
    if task not in TASK_LABELS:
        raise FixError(f"unknown task {task!r}: tasks are {', '.join(Task.values)}")
    for known in TASK_LABELS[task]:
        if known.lower() == label.strip().lower():
            return known
    raise FixError(f"{label!r} is not a {task} label: {', '.join(TASK_LABELS[task])}")


@transaction.atomic
def manual_fixes_apply(
    *,
    changes: Iterable[Change],
    user: User | None,
    source: str,
    note: str = "",
) -> list[ManualFix]:
    """Records a page of changes in one transaction: one ManualFix per changed (advertiser, asset, task).

    A change to the label already in effect records nothing; a placement without an image is refused.
    """
    changes = list(changes)
    placements = [change.placement for change in changes]
    current = effective_tags(placements, {change.task for change in changes})
    fixes: dict[tuple[int, int, str], ManualFix] = {}
    for change in changes:
        placement = change.placement
        if placement.asset_id is None:
            raise FixError(f"image {placement.pk} has no downloaded picture to tag yet")
        label = canonical_label(change.task, change.label)
        old = current[placement.pk][change.task].label or ""
        scope = (placement.listing.sitemap.advertiser_id, placement.asset_id, change.task)
        if old.lower() == label.lower() or scope in fixes:  # a model may spell the label its own way
            continue
        fixes[scope] = ManualFix(
            advertiser_id=scope[0], asset_id=scope[1], task=change.task, old_label=old, new_label=label,
            source=source, user=user, note=note,
        )  # fmt: skip
    return ManualFix.objects.bulk_create(fixes.values())


def manual_fix_create(
    *, placement: Placement, task: str, label: str, user: User | None, source: str, note: str = ""
) -> ManualFix | None:
    """Records one fix (None when the label is already the effective one)."""
    created = manual_fixes_apply(changes=[Change(placement, task, label)], user=user, source=source, note=note)
    return created[0] if created else None


@transaction.atomic
def review_decision_record(*, placement: Placement, task: str, label: str, user: User | None) -> ManualFix:
    """A staff decision from the review queue: a fix to `label`, or, when `label` is already in effect, a
    confirmation (a fix to the same label), so the decision is history and the item leaves the queue."""
    created = manual_fixes_apply(
        changes=[Change(placement, task, label)], user=user, source=ManualFix.Source.STAFF, note="review queue"
    )
    if created:
        return created[0]
    label = canonical_label(task, label)
    assert placement.asset_id is not None  # noqa: S101 - manual_fixes_apply refuses a placement without image
    return ManualFix.objects.create(
        advertiser_id=placement.listing.sitemap.advertiser_id,
        asset_id=placement.asset_id,
        task=task,
        old_label=label,
        new_label=label,
        source=ManualFix.Source.STAFF,
        user=user,
        note="confirmed in the review queue",
    )


@transaction.atomic
def manual_fix_revert(*, fix: ManualFix, user: User | None, source: str) -> ManualFix:
    """Undoes a fix with a new one back to the label it replaced; both stay in the history."""
    if not fix.old_label:
        raise FixError("this fix replaced no label (the model had none): fix it to a label instead")
    return ManualFix.objects.create(
        advertiser_id=fix.advertiser_id,
        asset_id=fix.asset_id,
        task=fix.task,
        old_label=fix.new_label,
        new_label=fix.old_label,
        source=source,
        user=user,
        reverts=fix,
        note=f"revert of fix {fix.pk}",
    )


def _hashes(values: Iterable[str]) -> np.ndarray:
    return np.array([int(value, 16) for value in values], dtype=np.uint64)


def _popcount(values: np.ndarray) -> np.ndarray:
    return np.unpackbits(values.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


@transaction.atomic
def fixes_carry_forward(*, run: Run) -> int:
    """Carries the advertiser's fixes to the images this Run brought in that are re-encoded copies of fixed
    ones (perceptual hash within settings.CARRY_FORWARD_MAX_DISTANCE bits), as fixes of source "carried"
    pointing at their origin. Idempotent: an image that already has a fix for a task gets none."""
    advertiser_id = run.sitemap.advertiser_id
    new_assets = list(
        ImageAsset.objects.filter(placements__last_run=run, placements__outcome=Outcome.DOWNLOADED)
        .distinct()
        .values_list("id", "phash")
    )
    fixed = list(
        ImageAsset.objects.filter(manual_fixes__advertiser_id=advertiser_id).distinct().values_list("id", "phash")
    )
    if not new_assets or not fixed:
        return 0
    fixed_ids = np.array([asset_id for asset_id, _ in fixed])
    fixed_hashes = _hashes(phash for _, phash in fixed)
    nearest: dict[int, int] = {}
    for asset_id, phash in new_assets:
        distances = _popcount(fixed_hashes ^ _hashes([phash]))
        distances[fixed_ids == asset_id] = 99
        best = int(distances.argmin())
        if distances[best] <= settings.CARRY_FORWARD_MAX_DISTANCE:
            nearest[asset_id] = int(fixed_ids[best])
    if not nearest:
        return 0
    latest: dict[tuple[int, str], ManualFix] = {}
    for fix in ManualFix.objects.filter(advertiser_id=advertiser_id, asset_id__in=set(nearest.values())).order_by(
        "asset_id", "task", "-created_at", "-id"
    ):
        latest.setdefault((fix.asset_id, fix.task), fix)
    already = set(
        ManualFix.objects.filter(advertiser_id=advertiser_id, asset_id__in=list(nearest)).values_list(
            "asset_id", "task"
        )
    )
    limit = settings.CARRY_FORWARD_MAX_DISTANCE
    carried = [
        ManualFix(
            advertiser_id=advertiser_id,
            asset_id=new_id,
            task=task,
            old_label="",
            new_label=fix.new_label,
            source=ManualFix.Source.CARRIED,
            origin=fix,
            note=f"carried from image {origin_id} (perceptual hash within {limit} bits)",
        )
        for new_id, origin_id in nearest.items()
        for (fixed_id, task), fix in latest.items()
        if fixed_id == origin_id and (new_id, task) not in already
    ]
    ManualFix.objects.bulk_create(carried)
    return len(carried)
