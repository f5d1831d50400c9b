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
    """Re-activates, for the task, the version its latest promotion (or rollback) replaced. Instant: that
    version's results are still in the cache. Refuses (PromotionError) when there is nothing to go back to."""
    if task not in Task.values:
        raise PromotionError(f"unknown task {task!r}: tasks are {', '.join(Task.values)}")
    latest = Promotion.objects.select_related("from_version").filter(task=task).order_by("-created_at", "-id").first()
    if latest is None:
        raise PromotionError(f"no model was ever promoted for {task}: there is nothing to roll back")
    target = latest.from_version
    if target is None:
        raise PromotionError(f"{task} had no model before the latest promotion: there is nothing to roll back to")
    current = ModelHead.objects.select_for_update().filter(task=task, is_active=True).first()
    if current is not None and current.model_version_id == target.pk:
        raise PromotionError(f"{target.name} is already the active model for {task}")
    try:
        model_activate(version=target, tasks=[task])
    except RegistryError as exc:
        raise PromotionError(str(exc)) from exc
    return Promotion.objects.create(
        task=task,
        from_version_id=current.model_version_id if current else None,
        to_version=target,
        kind=Promotion.Kind.ROLLBACK,
        user=user,
    )


def _task_order(task: str) -> int:
    return Task.values.index(task) if task in Task.values else len(Task.values)
