"""Promotion and rollback: which classifier version tags each task, switched in one transaction and recorded.

Promotion is instant because it runs no inference: the shadow pass (classifier.services.shadow) has already
stored the candidate's result for every live asset, so the effective tags switch as soon as its heads are
active. It therefore waits for the shadow pass, unless forced (recorded as such). Rollback re-activates the
version a task's latest promotion replaced, and is recorded as a promotion of kind rollback.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from catalog.models import Task
from classifier.models import ModelHead, ModelVersion, Promotion, ShadowPass

from .registry import RegistryError, model_activate
from .shadow import live_asset_count, shadow_latest, shadow_pending_ids


class PromotionError(Exception):
    """A version cannot be promoted (or a task rolled back); the message says why in one line."""


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


@transaction.atomic
def model_promote(
    *, version: ModelVersion, user: Any = None, force: bool = False, tasks: list[str] | None = None
) -> Promotion:
    """Makes the classifier the active model of every task it has a head for (or only `tasks`), at once.

    Refuses (PromotionError) a detector, a version already active for those tasks, and, unless `force`, a
    version whose shadow pass has not finished. Records one Promotion per task switched (from the version that
    served it, forced when promoted before the pass finished, by `user`) and returns the first one.
    """
    if version.kind != ModelVersion.Kind.CLASSIFIER:
        raise PromotionError(f"{version.name} is a detector: activate it with model_activate")
    heads = {head.task: head for head in version.heads.all()}
    if tasks:
        missing = sorted(set(tasks) - set(heads))
        if missing:
            raise PromotionError(f"{version.name} has no head for {', '.join(missing)}")
        heads = {task: head for task, head in heads.items() if task in tasks}
    previous = dict(
        ModelHead.objects.select_for_update()
        .filter(is_active=True, task__in=list(heads))
        .values_list("task", "model_version_id")
    )
    switching = sorted((task for task in heads if previous.get(task) != version.pk), key=_task_order)
    if not switching:
        raise PromotionError(f"{version.name} is already the active model for {', '.join(sorted(heads))}")
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


@transaction.atomic
def model_rollback(*, task: str, user: Any = None) -> Promotion:
    """Undoes the latest promotion (or rollback) of the task: the version it replaced is active again for this
    task and for every other task that the same promotion switched and that nothing switched since (a model with
    two heads is promoted for both, and rolled back for both). Instant: that version's results are still in the
    cache. Refuses (PromotionError) when there is nothing to go back to. Returns the task's rollback record."""
    if task not in Task.values:
        raise PromotionError(f"unknown task {task!r}: tasks are {', '.join(Task.values)}")
    latest = _latest_promotion(task)
    if latest is None:
        raise PromotionError(f"no model was ever promoted for {task}: there is nothing to roll back")
    if latest.from_version is None:
        raise PromotionError(f"{task} had no model before the latest promotion: there is nothing to roll back to")
    active = dict(ModelHead.objects.select_for_update().filter(is_active=True).values_list("task", "model_version_id"))
    if active.get(task) == latest.from_version_id:
        raise PromotionError(f"{latest.from_version.name} is already the active model for {task}")
    # The tasks the same promotion switched: same version in and out, still in place.
    tasks = [task]
    for other, version_id in active.items():
        if other == task or version_id != latest.to_version_id:
            continue
        promotion = _latest_promotion(other)
        if promotion is not None and promotion.from_version_id == latest.from_version_id:
            tasks.append(other)
    tasks.sort(key=_task_order)
    try:
        model_activate(version=latest.from_version, tasks=tasks)
    except RegistryError as exc:
        raise PromotionError(str(exc)) from exc
    records = Promotion.objects.bulk_create(
        Promotion(
            task=each,
            from_version_id=active.get(each),
            to_version=latest.from_version,
            kind=Promotion.Kind.ROLLBACK,
            user=user,
        )
        for each in tasks
    )
    return next(record for record in records if record.task == task)


def _latest_promotion(task: str) -> Promotion | None:
    return Promotion.objects.select_related("from_version").filter(task=task).order_by("-created_at", "-id").first()


def _task_order(task: str) -> int:
    return Task.values.index(task) if task in Task.values else len(Task.values)
