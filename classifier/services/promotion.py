"""Promotion and rollback: which classifier version tags each task, switched in one transaction and recorded.

Promotion is instant because it runs no inference: the shadow pass (classifier.services.shadow) has already
stored the candidate's result for every live asset, so the effective tags switch as soon as its heads are
active. It therefore waits for the shadow pass, unless forced (recorded as such). It also refuses a version that
would likely make some advertiser worse (`promotion_regressions`): measured accuracy on its training export's test
split dropping beyond tolerance, or, for an advertiser whose reviewed labels were not in that export, more than 1%
of its confident model tags flipped by the shadow pass; an explicit override promotes it all the same and is
recorded on the Promotion (who, and the figures). Rollback undoes the task's
latest promotion that is still standing (not rolled back yet): the version it replaced is active again, recorded as
a promotion of kind rollback. Promotions and rollbacks stack: a second rollback goes back one promotion further, and
after the last one there is nothing to roll back to (bringing a rolled-back candidate back is a promotion).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction

from catalog.models import Task
from classifier.models import ModelHead, ModelVersion, Promotion, ScopedHead, ShadowPass
from core.errors import ApplicationError

from .registry import RegistryError, model_activate
from .scoped import ScopedError, scoped_promote, scoped_task
from .shadow import live_asset_count, shadow_latest, shadow_pending_ids
from .training import drop_tolerance


class PromotionError(ApplicationError):
    """A version cannot be promoted (or a task rolled back); the message says why in one line."""

    code = "promotion_refused"


@dataclass(frozen=True)
class Regression:
    """A likely regression a promotion brings to one advertiser for one task.

    kind "confident_flips": of its `count` confident model tags (live images, >= training.CONFIDENT, in effect),
    the version would flip `changed` (its shadow-pass results); kind "local_accuracy": on its `count` reviewed test
    items of the version's export, accuracy falls from `before` to `after`."""

    task: str
    advertiser: str  # slug
    kind: str
    count: int
    changed: int = 0
    before: float | None = None
    after: float | None = None

    @property
    def share(self) -> float:
        return self.changed / self.count if self.count else 0.0

    def describe(self) -> str:
        if self.kind == "local_accuracy":
            return (
                f"{self.advertiser} {self.task} accuracy {100 * (self.before or 0):.1f}% -> "
                f"{100 * (self.after or 0):.1f}% on {self.count} reviewed test images"
            )
        return (
            f"{self.advertiser} {100 * self.share:.1f}% of its confident {self.task} tags flipped"
            f" ({self.changed} of {self.count})"
        )


# Sources of likely regressions beyond what classifier knows (the shadow pass's flips of the tags in effect, which
# reviews owns): each takes (version, tasks) and returns Regressions. reviews registers its own in AppConfig.ready.
RegressionSource = Callable[[ModelVersion, list[str]], list[Regression]]
_regression_sources: dict[str, RegressionSource] = {}


def regression_source_register(name: str, source: RegressionSource) -> None:
    """Makes every promotion consult `source` (registered once per name)."""
    _regression_sources[name] = source


def _measured_regressions(version: ModelVersion, tasks: list[str]) -> list[Regression]:
    """Advertisers whose accuracy on the version's export test split fell beyond their tolerance (the training rule)."""
    job = version.training_job
    if job is None or job.task not in tasks:
        return []
    baseline_result = (job.result or {}).get("baseline", {})
    out = []
    # Each advertiser, and each vehicle kind like an advertiser: a candidate that costs motorcycles is one too.
    slices = (("local_accuracy", "local_counts", "{}"), ("kind_accuracy", "kind_counts", "{} vehicles"))
    for accuracy, counts, name in slices:
        baseline = baseline_result.get(accuracy, {})
        reviewed_of = version.metrics.get(counts, {})
        for key, after in sorted(version.metrics.get(accuracy, {}).items()):
            reviewed = int(reviewed_of.get(key, {}).get("reviewed", 0))
            if key in baseline and baseline[key] - after > drop_tolerance(reviewed):
                where = name.format(key)
                out.append(Regression(job.task, where, "local_accuracy", reviewed, before=baseline[key], after=after))
    return out


def promotion_regressions(*, version: ModelVersion, tasks: list[str] | None = None) -> list[Regression]:
    """The likely regressions promoting the version for `tasks` (by default every task it would switch) would bring:
    measured ones (its training job's test split) and those of every registered source (the confident flips)."""
    tasks = promotion_tasks(version=version) if tasks is None else tasks
    found = _measured_regressions(version, tasks)
    for source in _regression_sources.values():
        found.extend(source(version, tasks))
    return found


def regressions_refusal(version: ModelVersion, regressions: list[Regression]) -> str:
    """The one-line refusal naming each advertiser and its figures; it ends ", or override"."""
    return (
        f"promoting {version.name} would likely regress {'; '.join(r.describe() for r in regressions)}:"
        " retrain, or override"
    )


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
        f"{version.name} has had no shadow pass: {lacking:,} of {live_asset_count(version):,} live images have no"
        f" result of it: run `manage.py shadow_pass {version.pk}` and wait for it, or force"
    )


def promotion_tasks(*, version: ModelVersion, tasks: list[str] | None = None) -> list[str]:
    """The tasks promoting the version would switch (in Task order): those it has a head for (or only `tasks`) that
    another version serves now. What the promotion's confirmation names; model_promote switches exactly these.
    PromotionError for a detector or a task without a head. A scoped head switches its one task, for its advertiser."""
    if version.advertiser_id is not None:
        task = scoped_task(version)
        serving = ScopedHead.objects.filter(advertiser_id=version.advertiser_id, task=task, model_version=version)
        return [] if task is None or serving.exists() else [task]
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
    *,
    version: ModelVersion,
    user: Any = None,
    force: bool = False,
    tasks: list[str] | None = None,
    override_regressions: bool = False,
    by: str = "",
) -> Promotion:
    """Makes the classifier the active model of every task it has a head for (or only `tasks`), at once.

    Refuses (PromotionError) a detector, a version already active for those tasks, unless `force` a version whose
    shadow pass has not finished, and unless `override_regressions` a version with likely regressions
    (`promotion_regressions`; the refusal names each advertiser and its figures). Records one Promotion per task
    switched (from the version that served it, forced when promoted before the pass finished, by `user`; an
    override with who made it, `user` or else `by`, and the regressions accepted) and returns the first one.
    """
    if version.advertiser_id is not None:
        return _promote_scoped(version, user=user, force=force, override_regressions=override_regressions, by=by)
    switching, previous = _switching(version, tasks, lock=True)
    if not switching:
        raise PromotionError(f"{version.name} is already the active model for {', '.join(sorted(previous))}")
    blocker = promotion_blocker(version=version)
    if blocker is not None and not force:
        raise PromotionError(blocker)
    regressions = promotion_regressions(version=version, tasks=switching)
    if regressions and not override_regressions:
        raise PromotionError(regressions_refusal(version, regressions))
    who = (user.get_username() if user is not None else "") or by or "unknown"
    try:
        model_activate(version=version, tasks=switching)
    except RegistryError as exc:
        raise PromotionError(str(exc)) from exc
    batch = uuid.uuid4()  # the tasks switched together: a rollback undoes exactly these
    promotions = Promotion.objects.bulk_create(
        Promotion(
            task=task,
            batch=batch,
            from_version_id=previous.get(task),
            to_version=version,
            kind=Promotion.Kind.PROMOTE,
            forced=blocker is not None,
            overrode_regressions=(
                {"by": who, "regressions": [_record(r) for r in regressions if r.task == task]}
                if any(r.task == task for r in regressions)
                else None
            ),
            user=user,
        )
        for task in switching
    )
    return promotions[0]


def _promote_scoped(version: ModelVersion, *, user: Any, force: bool, override_regressions: bool, by: str) -> Promotion:
    """model_promote of a scoped head (classifier.services.scoped): the same shadow-pass and evidence checks, over its
    own advertiser's images; it then answers its task for that advertiser only."""
    task = scoped_task(version)
    if task is None:
        raise PromotionError(f"{version.name} has no training job: its task is unknown")
    blocker = promotion_blocker(version=version)
    if blocker is not None and not force:
        raise PromotionError(blocker)
    regressions = promotion_regressions(version=version, tasks=[task])
    if regressions and not override_regressions:
        raise PromotionError(regressions_refusal(version, regressions))
    who = (user.get_username() if user is not None else "") or by or "unknown"
    overrode = {"by": who, "regressions": [_record(r) for r in regressions]} if regressions else None
    try:
        return scoped_promote(version=version, user=user, forced=blocker is not None, overrode=overrode)
    except ScopedError as exc:
        raise PromotionError(str(exc)) from exc


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
        if not Promotion.objects.filter(task=task, advertiser__isnull=True).exists():
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
        if active.get(other) == latest.to_version_id and _same_promotion(promotion, latest)
    ]
    return RollbackPlan(undoes=latest, tasks=sorted(tasks, key=_task_order))


def _same_promotion(one: Promotion, other: Promotion) -> bool:
    """Whether two tasks' records are one promotion: the same batch; for records made before batches, the same switch
    (from and to the same versions), which two promotions of one version at different times also share."""
    if one.batch is not None or other.batch is not None:
        return one.batch == other.batch
    return (one.to_version_id, one.from_version_id) == (other.to_version_id, other.from_version_id)


def _standing_promotions() -> dict[str, Promotion]:
    """Per task, the latest promotion that no rollback undid yet (none when every one was rolled back)."""
    stacks: dict[str, list[Promotion]] = {}
    records = (
        Promotion.objects.filter(advertiser__isnull=True)  # scoped heads are rolled back per advertiser
        .select_related("from_version", "to_version")
        .order_by("created_at", "id")
    )
    for record in records:
        stack = stacks.setdefault(record.task, [])
        if record.kind == Promotion.Kind.PROMOTE:
            stack.append(record)
        elif stack and stack[-1].to_version_id == record.from_version_id:
            stack.pop()
    return {task: stack[-1] for task, stack in stacks.items() if stack}


@transaction.atomic
def model_rollback(*, task: str, user: Any = None, undoes: int | None = None) -> Promotion:
    """Undoes the task's latest standing promotion (rollback_plan): the version it replaced is active again for this
    task and for every other task that the same promotion switched and that nothing switched since. Instant: that
    version's results are still in the cache. Refuses (PromotionError) when there is nothing to go back to, and,
    given `undoes` (the promotion a confirmation named), when the rollback would now undo another one (someone rolled
    back or promoted meanwhile). Returns the task's rollback record."""
    plan = rollback_plan(task=task, lock=True)
    if undoes is not None and plan.undoes.pk != undoes:
        raise PromotionError(
            f"the models of {task} changed since the confirmation: a rollback would now make"
            f" {plan.version.name} active; look again"
        )
    try:
        model_activate(version=plan.version, tasks=plan.tasks)
    except RegistryError as exc:
        raise PromotionError(str(exc)) from exc
    batch = uuid.uuid4()
    records = Promotion.objects.bulk_create(
        Promotion(
            task=each,
            batch=batch,
            from_version_id=plan.undoes.to_version_id,
            to_version=plan.version,
            kind=Promotion.Kind.ROLLBACK,
            user=user,
        )
        for each in plan.tasks
    )
    return next(record for record in records if record.task == task)


def _record(regression: Regression) -> dict[str, Any]:
    return {**asdict(regression), "share": round(regression.share, 4), "text": regression.describe()}


def _task_order(task: str) -> int:
    return Task.values.index(task) if task in Task.values else len(Task.values)
