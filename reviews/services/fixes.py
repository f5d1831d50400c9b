"""Manual fixes: every correction is a new row (history), and the latest in its scope wins."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from catalog.imaging import color_signature_array, phash_array, popcount
from catalog.models import TASK_LABELS, ImageAsset, Outcome, Placement, Run, Task
from catalog.services.clusters import near_duplicates
from core.errors import ApplicationError
from reviews.effective_store import effective_tags_refresh
from reviews.models import ChangeSet, ManualFix
from reviews.selectors import effective_tags


class FixError(ApplicationError):
    """A fix cannot be recorded; the message says why."""

    code = "fix_refused"


class FixConflict(FixError):
    """What the image is now refuses the fix, however well formed (no downloaded picture yet): HTTP 409."""

    code = "fix_conflict"
    http_status = 409


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
    confirm: bool = False,
    settles: bool = False,
    change_set: ChangeSet | None = None,
) -> list[ManualFix]:
    """Records a page of changes in one transaction: one ManualFix per changed (advertiser, asset, task).

    A change to the label already in effect records nothing, unless `confirm`: then it records a confirmation
    (a fix to the same label: a human looked and agreed, which the dataset export and local accuracy count).
    `settles` marks staff decisions that settle a conflict (the review queue). A placement without an image
    is refused. `change_set` (the reviewer action, so it can be undone as a whole) is set on every fix.
    """
    changes = list(changes)
    placements = [change.placement for change in changes]
    current = effective_tags(placements, {change.task for change in changes})
    fixes: dict[tuple[int, int, str], ManualFix] = {}
    for change in changes:
        placement = change.placement
        if placement.asset_id is None:
            raise FixConflict(f"image {placement.pk} has no downloaded picture to tag yet")
        label = canonical_label(change.task, change.label)
        old = current[placement.pk][change.task].label or ""
        scope = (placement.listing.sitemap.advertiser_id, placement.asset_id, change.task)
        unchanged = old.lower() == label.lower()  # a model may spell the label its own way
        if (unchanged and not confirm) or scope in fixes:
            continue
        fixes[scope] = ManualFix(
            advertiser_id=scope[0], asset_id=scope[1], task=change.task, old_label=label if unchanged else old,
            new_label=label, source=source, user=user, note=_note(note, confirmed=unchanged),
            settles=settles, change_set=change_set,
        )  # fmt: skip
    return fixes_record(list(fixes.values()))


@transaction.atomic
def fixes_record(fixes: list[ManualFix]) -> list[ManualFix]:
    """Inserts new fixes and, in the same transaction, refreshes the stored effective tags of their scopes: the one
    way every writer of fixes writes them, so the store never lags behind the history.

    A carried copy of a withdrawal is left out: a withdrawal puts no fix in effect, so there is nothing to carry (the
    carry-forward takes the latest row of the fixed image, which may be one)."""
    fixes = [
        fix for fix in fixes if not (fix.source == ManualFix.Source.CARRIED and fix.origin and fix.origin.withdraws)
    ]
    created = ManualFix.objects.bulk_create(fixes)
    effective_tags_of_fixes_refresh(created)
    return created


Scope = tuple[int, int, str]  # (advertiser id, asset id, task)


def scope_of(fix: ManualFix) -> Scope:
    return (fix.advertiser_id, fix.asset_id, fix.task)


def scope_histories(fixes: Iterable[ManualFix]) -> dict[Scope, list[ManualFix]]:
    """Every row of these fixes' scopes, latest first, per scope (one query): which row is in effect, and which was
    before a given one."""
    scopes = {scope_of(fix) for fix in fixes}
    if not scopes:
        return {}
    rows = ManualFix.objects.filter(
        advertiser_id__in={a for a, _, _ in scopes},
        asset_id__in={s for _, s, _ in scopes},
        task__in={t for _, _, t in scopes},
    ).order_by("-created_at", "-id")
    histories: dict[Scope, list[ManualFix]] = {scope: [] for scope in scopes}
    for row in rows:
        if (scope := scope_of(row)) in histories:
            histories[scope].append(row)
    return histories


def row_before(fix: ManualFix, history: list[ManualFix]) -> ManualFix | None:
    """The row of the scope just before `fix` (its scope's history, latest first), None when the fix was the first."""
    older = history[[row.pk for row in history].index(fix.pk) + 1 :]
    return older[0] if older else None


def fix_back(
    fix: ManualFix,
    before: ManualFix | None,
    *,
    user: User | None,
    source: str,
    note: str,
    change_set: ChangeSet | None = None,
) -> ManualFix:
    """A new (unsaved) row that puts back, in the fix's scope, what was in effect before the fix (`before`: the row
    before it, scope_histories): a revert, or part of an undo. A fix back to the label of the fix that was in effect
    then; or, when none was (no row before, or a withdrawal), a withdrawal: no fix in effect, the model's or the
    scrape's tag again, not reviewed, not exported."""
    restored = before.label_in_effect if before is not None else None
    return ManualFix(
        advertiser_id=fix.advertiser_id, asset_id=fix.asset_id, task=fix.task,
        old_label=fix.label_in_effect or "", new_label=restored or "", withdraws=restored is None,
        source=source, user=user, reverts=fix, change_set=change_set, note=note,
    )  # fmt: skip


def effective_tags_of_fixes_refresh(fixes: Iterable[ManualFix]) -> None:
    """Refreshes the stored effective tags (reviews.effective_store) of the placements in these fixes' scopes: the
    fixed tasks of each (advertiser, asset), and what reads them (called by fixes_record)."""
    scopes: dict[int, tuple[set[int], set[str]]] = {}
    for fix in fixes:
        assets, tasks = scopes.setdefault(fix.advertiser_id, (set(), set()))
        assets.add(fix.asset_id)
        tasks.add(fix.task)
    for advertiser_id, (assets, tasks) in scopes.items():
        effective_tags_refresh(advertiser_id=advertiser_id, asset_ids=assets, tasks=tasks)


def _note(note: str, *, confirmed: bool) -> str:
    if not confirmed:
        return note
    return f"confirmed: {note}" if note else "confirmed"


def manual_fix_create(
    *,
    placement: Placement,
    task: str,
    label: str,
    user: User | None,
    source: str,
    note: str = "",
    confirm: bool = False,
) -> ManualFix | None:
    """Records one fix (None when the label is already the effective one, unless `confirm`)."""
    created = manual_fixes_apply(
        changes=[Change(placement, task, label)], user=user, source=source, note=note, confirm=confirm
    )
    return created[0] if created else None


@transaction.atomic
def review_decision_record(*, placement: Placement, task: str, label: str, user: User | None) -> ManualFix:
    """A staff decision from the review queue: a fix to `label`, or, when `label` is already in effect, a
    confirmation, so the decision is history and the item leaves the queue. It settles any conflict on the scope.
    The fix belongs to a ChangeSet of kind "decision" (its `change_set`), which the queue's undo writes back."""
    change_set = ChangeSet.objects.create(
        kind=ChangeSet.Kind.DECISION,
        advertiser_id=placement.listing.sitemap.advertiser_id,
        user=user,
        source=ManualFix.Source.STAFF,
        fixes=1,
        summary=f"{task}: {label} (image {placement.pk})"[:300],
    )
    created = manual_fixes_apply(
        changes=[Change(placement, task, label)],
        user=user,
        source=ManualFix.Source.STAFF,
        note="decided in the review queue",
        confirm=True,
        settles=True,
        change_set=change_set,
    )
    return created[0]


@transaction.atomic
def manual_fix_revert(*, fix: ManualFix, user: User | None, source: str) -> ManualFix:
    """Undoes a fix with a new row that puts back what was in effect before it (fix_back: the fix before it, or no
    fix: the model's tag again); both stay in the history. Only the row in effect can be reverted: putting back
    what was before an older one would silently drop every fix made since (a change-set undo skips those too)."""
    history = scope_histories([fix])[scope_of(fix)]
    if history[0].pk != fix.pk:
        raise FixConflict(f"fix {fix.pk} is no longer the one in effect (fixed again since): revert the latest fix")
    before = row_before(fix, history)
    (revert,) = fixes_record([fix_back(fix, before, user=user, source=source, note=f"revert of fix {fix.pk}")])
    return revert


# Candidates are compared with the fixed images in blocks of at most this many pairs (~8 MB).
_CARRY_PAIRS_PER_BLOCK = 1 << 20


@transaction.atomic
def fixes_carry_forward(*, run: Run) -> int:
    """Carries the advertiser's fixes to the images this Run brought to its placements that are copies of fixed
    ones (near-duplicates, catalog.services.clusters.near_duplicates: perceptual hash within
    settings.CARRY_FORWARD_MAX_DISTANCE bits and color signature within CARRY_FORWARD_MAX_COLOR_DISTANCE, so that
    the same render in another paint gets nothing), as fixes of source "carried" pointing at their origin (the
    latest fix of the nearest fixed image, per task). An image without a color signature receives nothing.

    The images considered are those of the Run's placements whose URL returned bytes (downloaded, or a cache
    hit: bytes already known, whichever Run or advertiser first downloaded them) and that the advertiser has
    not fixed yet for the task: an image shown again unchanged (not modified) is not new. Because a carried fix
    is a fix, this is idempotent, and a resumed Run (whose placements keep their outcome) can call it again.
    Its cost is bounded by the sitemap (the Run's placements) and the advertiser's fixed images.
    """
    advertiser_id = run.sitemap.advertiser_id
    keys = ("id", "phash", "color_signature")
    fixed = list(ImageAsset.objects.filter(manual_fixes__advertiser_id=advertiser_id).distinct().values_list(*keys))
    if not fixed:
        return 0
    candidates = list(
        ImageAsset.objects.filter(
            placements__last_run=run, placements__outcome__in=[Outcome.DOWNLOADED, Outcome.CACHE_HIT]
        )
        .distinct()
        .values_list(*keys)
    )
    if not candidates:
        return 0
    nearest = _nearest_copies(candidates, fixed)
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
    carried = [
        ManualFix(
            advertiser_id=advertiser_id,
            asset_id=new_id,
            task=task,
            old_label="",
            new_label=fix.new_label,
            source=ManualFix.Source.CARRIED,
            origin=fix,
            note=f"carried from image {origin_id} (a near-duplicate: the same picture, in the same colors)",
        )
        for new_id, origin_id in nearest.items()
        for (fixed_id, task), fix in latest.items()
        if fixed_id == origin_id and (new_id, task) not in already
    ]
    return len(fixes_record(carried))


def _nearest_copies(candidates: list[tuple[int, str, str]], fixed: list[tuple[int, str, str]]) -> dict[int, int]:
    """Candidate asset id -> the fixed asset it is a near-duplicate of with the fewest bits (the lowest id on a tie),
    for the candidates that are one; rows are (id, pHash, color signature). A block of candidates at a time."""
    fixed_ids = np.array([asset_id for asset_id, _, _ in fixed], dtype=np.int64)
    fixed_hashes = phash_array(phash for _, phash, _ in fixed)
    fixed_colors = color_signature_array(signature for _, _, signature in fixed)
    candidate_ids = np.array([asset_id for asset_id, _, _ in candidates], dtype=np.int64)
    candidate_hashes = phash_array(phash for _, phash, _ in candidates)
    candidate_colors = color_signature_array(signature for _, _, signature in candidates)
    limit, far = settings.CARRY_FORWARD_MAX_DISTANCE, np.iinfo(np.uint8).max
    nearest: dict[int, int] = {}
    rows_per_block = max(1, _CARRY_PAIRS_PER_BLOCK // len(fixed_ids))
    for start in range(0, len(candidate_ids), rows_per_block):
        ids = candidate_ids[start : start + rows_per_block]
        distances = popcount(candidate_hashes[start : start + rows_per_block, None] ^ fixed_hashes[None, :])
        distances[ids[:, None] == fixed_ids[None, :]] = far  # an image is no copy of itself
        rows, cols = np.nonzero(distances <= limit)
        other = ~near_duplicates(distances[rows, cols], candidate_colors[start + rows], fixed_colors[cols])
        distances[rows[other], cols[other]] = far  # near in bits, not in colors: another picture
        best = distances.argmin(axis=1)
        for asset_id, column, distance in zip(ids, best, distances[np.arange(len(ids)), best], strict=True):
            if distance <= limit:
                nearest[int(asset_id)] = int(fixed_ids[column])
    return nearest
