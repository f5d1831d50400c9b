"""Promotion and rollback: which classifier version tags each task, switched in one transaction and recorded.

Promotion is instant because it runs no inference: the shadow pass (classifier.services.shadow) has already
stored the candidate's result for every live asset, so the effective tags switch as soon as its heads are
active. It therefore waits for the shadow pass, unless forced (recorded as such). Rollback undoes the task's
latest promotion that is still standing (not rolled back yet): the version it replaced is active again, recorded as
a promotion of kind rollback. Promotions and rollbacks stack: a second rollback goes back one promotion further, and
after the last one there is nothing to roll back to (bringing a rolled-back candidate back is a promotion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from catalog.models import Task
from classifier.models import ModelHead, ModelVersion, Promotion, ShadowPass
from core.errors import ApplicationError

from .registry import RegistryError, model_activate
from .shadow import live_asset_count, shadow_latest, shadow_pending_ids


class PromotionError(ApplicationError):
    """A version cannot be promoted (or a task rolled back); the message says why in one line."""

    code = "promotion_refused"


def promotion_blocker(*, version: ModelVersion) -> str | None:
    """Why promoting the version now would not be instant (None: it would be).

    Ready when its latest shadow pass succeeded, or when every live asset already has its results (no live
    images yet, or a version that was active until recently).
    """
    latest = shadow_latest(version=version)
    if latest is not None and latest.status == ShadowPass.Status.SUCCEEDED:
        return None
    if latest is not None and latest.is_active:
        return (
            f"the shadow pass of {version.name} has classified {latest.done:,} of {latest.total:,} images: "
            "wait for it to finish, or force"
        )
    lacking = len(shadow_pending_ids(version=version))
    if not lacking:
        return None
    if latest is not None:
        reason = latest.error.splitlines()[0] if latest.error else "no reason recorded"
        return (
            f"the shadow pass of {version.name} failed ({reason}) and {lacking:,} live images have no result of it:"
            " run it again, or force"
        )
    return (
        f"{version.name} has had no shadow pass: {lacking:,} of {live_asset_count():,} live images have no result of"
        f" it: run `manage.py shadow_pass {version.pk}` and wait for it, or force"
    )


def promotion_tasks(*, version: ModelVersion, tasks: list[str] | None = None) -> list[str]:
    """The tasks promoting the version would switch (in Task order): those it has a head for (or only `tasks`) that
    another version serves now. What the promotion's confirmation names; model_promote switches exactly these.
    PromotionError for a detector or a task without a head."""
    return _switching(version, tasks, lock=False)[0]


def _switching(version: ModelVersion, tasks: list[str] | None, *, lock: bool) -> tuple[list[str], dict[str, int]]:
    if version.kind != ModelVersion.Kind.CLASSIFIER:
        raise PromotionError(f"{version.name} is a detector: activate it with model_activate")
    heads = set(version.heads.values_list("task", flat=True))
    if tasks:
        missing = sorted(set(tasks) - heads)
        if missing:
            raise PromotionError(f"{version.name} has no head for {', '.join(missing)}")
        heads &= set(tasks)
    active = ModelHead.objects.filter(is_active=True, task__in=list(heads))
    previous = dict((active.select_for_update() if lock else active).values_list("task", "model_version_id"))
    return sorted((task for task in heads if previous.get(task) != version.pk), key=_task_order), previous


@transaction.atomic
def model_promote(
    *, version: ModelVersion, user: Any = None, force: bool = False, tasks: list[str] | None = None
) -> Promotion:
    """Makes the classifier the active model of every task it has a head for (or only `tasks`), at once.

    Refuses (PromotionError) a detector, a version already active for those tasks, and, unless `force`, a
    version whose shadow pass has not finished. Records one Promotion per task switched (from the version that
    served it, forced when promoted before the pass finished, by `user`) and returns the first one.
    """
    switching, previous = _switching(version, tasks, lock=True)
    if not switching:
        raise PromotionError(f"{version.name} is already the active model for {', '.join(sorted(previous))}")
    blocker = promotion_blocker(version=version)
    if blocker is not None and not force:
        raise PromotionError(blocker)
    try:
        model_activate(version=version, tasks=switching)
    except RegistryError as exc:
        raise PromotionError(str(exc)) from exc
    promotions = Promotion.objects.bulk_create(
        Promotion(
            task=task,
            from_version_id=previous.get(task),
            to_version=version,
            kind=Promotion.Kind.PROMOTE,
            forced=blocker is not None,
            user=user,
        )
        for task in switching
    )
    return promotions[0]


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback of a task would do: undo `undoes` (the task's latest standing promotion), making the version it
    replaced (`version`) active again for `tasks`: every task that the same promotion switched and that nothing
    switched since (a model with two heads is promoted for both, and rolled back for both)."""

    undoes: Promotion
    tasks: list[str]

    @property
    def version(self) -> ModelVersion:
        assert self.undoes.from_version is not None  # noqa: S101 - rollback_plan refuses a promotion from nothing
        return self.undoes.from_version


def rollback_plan(*, task: str, lock: bool = False) -> RollbackPlan:
    """What rolling the task back would do (the screen's offer and its confirmation name it; model_rollback does
    exactly this), or PromotionError saying why there is nothing to roll back to.

    The promotions of each task stack: a promotion is pushed, a rollback pops the promotion it undid. The standing
    promotion on top is the one a rollback undoes, provided its version still serves the task."""
    if task not in Task.values:
        raise PromotionError(f"unknown task {task!r}: tasks are {', '.join(Task.values)}")
    heads = ModelHead.objects.filter(is_active=True)
    active = dict((heads.select_for_update() if lock else heads).values_list("task", "model_version_id"))
    standing = _standing_promotions()
    latest = standing.get(task)
    if latest is None:
        if not Promotion.objects.filter(task=task).exists():
            raise PromotionError(f"no model was ever promoted for {task}: there is nothing to roll back")
        raise PromotionError(
            f"every promotion of {task} was rolled back already: there is nothing to roll back to"
            " (promote a version to bring it back)"
        )
    if latest.from_version is None:
        raise PromotionError(f"{task} had no model before the latest promotion: there is nothing to roll back to")
    if active.get(task) != latest.to_version_id:
        raise PromotionError(
            f"{latest.to_version.name}, which the latest standing promotion of {task} made active, no longer serves"
            f" it: there is nothing recorded to roll back to"
        )
    tasks = [
        other
        for other, promotion in standing.items()
        if active.get(other) == latest.to_version_id
        and (promotion.to_version_id, promotion.from_version_id) == (latest.to_version_id, latest.from_version_id)
    ]
    return RollbackPlan(undoes=latest, tasks=sorted(tasks, key=_task_order))


def _standing_promotions() -> dict[str, Promotion]:
    """Per task, the latest promotion that no rollback undid yet (none when every one was rolled back)."""
    stacks: dict[str, list[Promotion]] = {}
    records = Promotion.objects.select_related("from_version", "to_version").order_by("created_at", "id")
    for record in records:
        stack = stacks.setdefault(record.task, [])
        if record.kind == Promotion.Kind.PROMOTE:
            stack.append(record)
        elif stack and stack[-1].to_version_id == record.from_version_id:
            stack.pop()
    return {task: stack[-1] for task, stack in stacks.items() if stack}


@transaction.atomic
def model_rollback(*, task: str, user: Any = None) -> Promotion:
    """Undoes the task's latest standing promotion (rollback_plan): the version it replaced is active again for this
    task and for every other task that the same promotion switched and that nothing switched since. Instant: that
    version's results are still in the cache. Refuses (PromotionError) when there is nothing to go back to. Returns
    the task's rollback record."""
    plan = rollback_plan(task=task, lock=True)
    try:
        model_activate(version=plan.version, tasks=plan.tasks)
    except RegistryError as exc:
        raise PromotionError(str(exc)) from exc
    records = Promotion.objects.bulk_create(
        Promotion(
            task=each,
            from_version_id=plan.undoes.to_version_id,
            to_version=plan.version,
            kind=Promotion.Kind.ROLLBACK,
            user=user,
        )
        for each in plan.tasks
    )
    return next(record for record in records if record.task == task)


def _task_order(task: str) -> int:
    return Task.values.index(task) if task in Task.values else len(Task.values)
