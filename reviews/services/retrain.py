"""The loop proposes itself: from the human labels made since the last training, a frozen export, candidates, the
best one's shadow pass, and a message to staff with the comparison. Promotion stays a human click.

`retrain_from_reviews` runs every step here, one after the other (each step records its own progress on its export,
job or shadow pass, as when staff run them from the screens). The nightly beat job (`retrain_nightly`) calls it for
each task with at least settings.RETRAIN_MIN_NEW_LABELS new labels since its last training; "Retrain from reviews"
on the Models screen calls it for both tasks at once, whatever the count.

Label mistakes the export flags (likely label issues) are not trained on: no one has decided on them, so they are
dropped from this export, and the message says how many. A human who keeps them trains from the export's screen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.urls import reverse

from catalog.models import Advertiser, Task
from classifier.models import ModelVersion, ShadowPass, TrainingJob
from classifier.services.shadow import shadow_run, shadow_start
from classifier.services.training import training_run, training_start
from core.errors import ApplicationError
from reviews.exports.selectors import Filters, export_candidates, training_cutoff
from reviews.exports.services import export_create, export_freeze, export_mark_used, training_manifest
from reviews.models import DatasetExport, ExportItem
from reviews.services.staff_mail import staff_mail

logger = logging.getLogger(__name__)

# The tasks the loop retrains from reviews (both tasks of the vehicle model).
LOOP_TASKS = (Task.IMAGE_TYPE.value, Task.COLOR.value)


class RetrainError(ApplicationError):
    """A retrain cannot start or did not finish; the message says why in one line."""

    code = "retrain_refused"


def new_labels(*, task: str) -> int:
    """The human labels in effect of `task` made since its last training (all of them before the first): what the
    next export would take, before its exclusions."""
    cutoff = training_cutoff(task=task)
    return export_candidates(Filters(task=task, since=cutoff.created_at if cutoff else None)).count()


@dataclass
class ScopedProposal:
    """A head scoped to one advertiser that the retrain trained because the global candidates left it behind."""

    advertiser: str  # slug
    job: TrainingJob
    best: ModelVersion | None
    shadow: ShadowPass | None
    before: float | None  # its accuracy on the export's test split: the active model's
    global_after: float | None  # the best global candidate's
    after: float | None  # the best scoped candidate's

    @property
    def summary(self) -> str:
        if self.best is None:
            return f"  {self.advertiser}: scoped training job {self.job.pk} {self.job.status}: {self.job.error}"

        def shown(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        return (
            f"  {self.advertiser}: a head of its own, {self.best.name}: test accuracy {shown(self.before)} ->"
            f" {shown(self.after)} (the best global candidate: {shown(self.global_after)}); shadow pass"
            f" {self.shadow.status if self.shadow else 'not run'}"
        )


@dataclass
class Retrained:
    """What one retrain made: the export, the training job, its best candidate and that candidate's shadow pass."""

    task: str
    labels: int
    export: DatasetExport
    job: TrainingJob
    best: ModelVersion | None
    shadow: ShadowPass | None
    dropped: int  # likely label mistakes left out of the export
    scoped: list[ScopedProposal] = field(default_factory=list)

    @property
    def summary(self) -> str:
        result: dict[str, Any] = self.job.result or {}
        if self.job.status != TrainingJob.Status.SUCCEEDED or self.best is None:
            return f"{self.task}: training job {self.job.pk} {self.job.status}: {self.job.error or 'no candidate'}"
        best = next(c for c in result["candidates"] if c["model_version"] == self.best.pk)
        before, after = result["baseline"]["test"]["accuracy"], best["test"]["accuracy"]
        shadow = self.shadow.status if self.shadow else "not run"
        lines = [
            f"{self.task}: best candidate {self.best.name} (from {self.labels} new labels, export {self.export.pk}): "
            f"test accuracy {before:.3f} -> {after:.3f}; shadow pass {shadow}",
            *(proposal.summary for proposal in self.scoped),
        ]
        return "\n".join(lines)


def retrain_from_reviews(*, task: str, user: Any = None, candidates: int = 4) -> Retrained:
    """Export (built and frozen here), candidates, and the best candidate's shadow pass for `task`. Raises
    RetrainError when there is nothing to train on (no new labels; an export left with no train or test item)."""
    if task not in Task.values:
        raise RetrainError(f"unknown task {task!r}: tasks are {', '.join(Task.values)}")
    labels = new_labels(task=task)
    if not labels:
        raise RetrainError(f"{task}: no new human labels since the last training")
    try:
        export = export_create(task=task, user=user, enqueue=False)
        if export.status != DatasetExport.Status.REVIEW:
            raise RetrainError(f"{task}: export {export.pk} {export.status}: {export.error or export.stage}")
        pending = export.items.filter(decision=ExportItem.Decision.PENDING)
        dropped = pending.update(decision=ExportItem.Decision.DROP)
        export = export_freeze(export=export)
        manifest = training_manifest(export=export)  # the global job's, and each scoped job's (narrowed)
        job = training_start(
            task=task,
            export_id=export.pk,
            manifest=manifest,
            candidates=candidates,
            user=user,
            enqueue=False,
        )
        export_mark_used(export=export)
        job = training_run(job_id=job.pk)
    except ApplicationError as exc:
        if isinstance(exc, RetrainError):
            raise
        raise RetrainError(f"{task}: {exc}") from exc
    best_id = (job.result or {}).get("best")
    best = ModelVersion.objects.filter(pk=best_id).first() if best_id is not None else None
    shadow = None
    if best is not None:
        shadow = shadow_run(pass_id=shadow_start(version=best, enqueue=False).pk)
    scoped = scoped_proposals(export=export, manifest=manifest, job=job, user=user, candidates=candidates)
    return Retrained(
        task=task, labels=labels, export=export, job=job, best=best, shadow=shadow, dropped=dropped, scoped=scoped
    )


def left_behind(job: TrainingJob) -> list[str]:
    """The advertisers whose accuracy on the export's test split (at least settings.RETRAIN_SCOPED_MIN_TEST reviewed
    test images) the best global candidate leaves under settings.RETRAIN_SCOPED_BELOW: one head for everyone did not
    serve them (0 turns this off)."""
    below = settings.RETRAIN_SCOPED_BELOW
    result: dict[str, Any] = job.result or {}
    if not below or job.status != TrainingJob.Status.SUCCEEDED or "best" not in result:
        return []
    best = next(c for c in result["candidates"] if c["model_version"] == result["best"])
    counts = best.get("local_counts", {})
    return [
        slug
        for slug, accuracy in sorted(best.get("local_accuracy", {}).items())
        if accuracy < below and int(counts.get(slug, {}).get("reviewed", 0)) >= settings.RETRAIN_SCOPED_MIN_TEST
    ]


def scoped_proposals(
    *, export: DatasetExport, manifest: dict[str, Any], job: TrainingJob, user: Any = None, candidates: int = 4
) -> list[ScopedProposal]:
    """For each advertiser the global candidates left behind (`left_behind`): heads scoped to it, trained on its rows
    of the same export with the active head as their prior, and the best one's shadow pass (classifier.services.
    scoped). Promotion stays a human click. A scoped training refused (too few train or test items) is skipped."""
    out = []
    result: dict[str, Any] = job.result or {}
    for slug in left_behind(job):
        advertiser = Advertiser.objects.filter(slug=slug).first()
        if advertiser is None:
            continue
        try:
            scoped_job = training_start(
                task=job.task,
                export_id=export.pk,
                manifest=manifest,
                candidates=candidates,
                user=user,
                advertiser=advertiser,
                enqueue=False,
            )
            scoped_job = training_run(job_id=scoped_job.pk)
        except ApplicationError as exc:
            logger.info("retrain %s: no head scoped to %s: %s", job.task, slug, exc)
            continue
        scoped_result: dict[str, Any] = scoped_job.result or {}
        best_id = scoped_result.get("best")
        best = ModelVersion.objects.filter(pk=best_id).first() if best_id is not None else None
        shadow = shadow_run(pass_id=shadow_start(version=best, enqueue=False).pk) if best is not None else None
        chosen: dict[str, Any] = next(
            (c for c in scoped_result.get("candidates", []) if best and c["model_version"] == best.pk), {}
        )
        global_best = next(c for c in result["candidates"] if c["model_version"] == result["best"])
        out.append(
            ScopedProposal(
                advertiser=slug,
                job=scoped_job,
                best=best,
                shadow=shadow,
                before=result.get("baseline", {}).get("local_accuracy", {}).get(slug),
                global_after=global_best["local_accuracy"].get(slug),
                after=chosen.get("local_accuracy", {}).get(slug),
            )
        )
    return out


def retrain_notify(done: list[Retrained], failed: list[str]) -> int:
    """Emails every active staff user with an address what the retrain proposes; returns how many were sent."""
    if not (done or failed):
        return 0
    lines = [item.summary for item in done] + failed
    for item in done:
        if item.dropped:
            lines.append(f"{item.task}: {item.dropped} likely label mistakes left out (export {item.export.pk})")
    lines += [
        "",
        "Compare the candidates and promote one (a human click):",
        *(settings.SITE_URL + reverse("reviews:staff-models", args=[item.task]) for item in done),
    ]
    subject = "imagetagger: new candidates from reviews (" + ", ".join(item.task for item in done) + ")"
    return staff_mail(subject, "\n".join(lines))


def retrain_tasks(*, tasks: list[str], user: Any = None, min_labels: int = 0) -> tuple[list[Retrained], list[str]]:
    """Retrains each task with at least `min_labels` new labels, then tells staff. Returns what was made and the
    one-line reasons of the tasks that failed (a task with too few labels is skipped silently)."""
    done: list[Retrained] = []
    failed: list[str] = []
    for task in tasks:
        count = new_labels(task=task)
        if count < max(1, min_labels):
            logger.info("retrain %s: %d new labels, fewer than %d", task, count, max(1, min_labels))
            continue
        try:
            done.append(retrain_from_reviews(task=task, user=user))
        except RetrainError as exc:
            logger.warning("retrain %s: %s", task, exc)
            failed.append(str(exc))
    retrain_notify(done, failed)
    return done, failed


def retrain_nightly() -> tuple[list[Retrained], list[str]]:
    """The beat job: every task the loop trains, when it has enough new labels (settings.RETRAIN_MIN_NEW_LABELS)."""
    return retrain_tasks(tasks=list(LOOP_TASKS), min_labels=settings.RETRAIN_MIN_NEW_LABELS)
