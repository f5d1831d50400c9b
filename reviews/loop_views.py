"""Screens of the loop (issue 9): dataset exports, candidate models, the shadow pass, promotion, rollback and
accuracy over time. Staff only (reviews.guards): anyone else logged in gets 403, anonymous
visitors are sent to the login page. Views parse, call the services of reviews.exports and classifier, render.

Background work (export build and freeze, training, shadow pass) runs in Celery; its pages poll a progress
partial every second with htmx, and reload once when the job ends (HX-Refresh), to show what it produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.db.models import Count, Exists, OuterRef, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from catalog.models import TASK_LABELS, Advertiser, ImageAsset, Task
from classifier.models import ModelHead, ModelVersion, Promotion, ScopedHead, ShadowPass, TrainingJob
from classifier.services.features import FeatureError
from classifier.services.promotion import (
    PromotionError,
    Regression,
    RollbackPlan,
    model_promote,
    model_rollback,
    promotion_blocker,
    promotion_regressions,
    promotion_tasks,
    rollback_plan,
)
from classifier.services.scoped import ScopedError, scoped_rollback
from classifier.services.shadow import ShadowError, shadow_start
from classifier.services.training import (
    TrainingError,
    flips_over_tolerance,
    predictions_on_test_split,
    training_start,
)

from .comparison import AdvertiserFlips, ConfidentFlips, accuracy_over_time, candidate_flips, confident_flips
from .exports import (
    ExportError,
    export_create,
    export_decide,
    export_freeze_enqueue,
    export_label_issues,
    export_list,
    export_mark_used,
    export_summary,
    training_manifest,
)
from .exports.selectors import Filters, export_candidates, kind_shares, training_cutoff
from .expressions import advertiser_conflicts, disagreements
from .guards import staff_required
from .models import DatasetExport, ExportExclusion, ExportItem, ManualFix
from .services.retrain import LOOP_TASKS, new_labels
from .services.watch import FLAG as WATCH_FLAG
from .services.watch import watch_rows

# Stages the freeze writes while it runs (reviews.exports.services): the export is busy, its page polls.
FREEZING_STAGES = ("freezing", "writing the zip", "storing the zip")
LABEL_ISSUES_SHOWN = 300
JOBS_LISTED = 10


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - staff_required requires a logged-in user
    return request.user


def _task(value: object) -> str:
    return value if isinstance(value, str) and value in Task.values else Task.IMAGE_TYPE


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


# Exports.


@dataclass
class ExportForm:
    """The export form's values, from a GET (preview) or POST (create); `errors` says what could not be read."""

    task: str = Task.IMAGE_TYPE
    since: date | None = None
    since_last_training: bool = True
    advertisers: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    min_side: int = 64
    extends: int | None = None
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_data(cls, data: Any, *, bound: bool) -> ExportForm:
        form = cls(task=_task(data.get("task")))
        if since := (data.get("since") or "").strip():
            try:
                form.since = date.fromisoformat(since)
            except ValueError:
                form.errors.append(f"since: {since!r} is not a date (YYYY-MM-DD)")
        # An unchecked checkbox sends nothing: a bound form without it means "no".
        form.since_last_training = data.get("since_last_training") == "on" if bound else True
        form.advertisers = [slug for slug in data.getlist("advertisers") if slug]
        form.sources = [source for source in data.getlist("sources") if source]
        form.min_side = _int(data.get("min_side", 64), -1)
        if form.min_side < 1:
            form.errors.append("min side: a whole number of pixels, at least 1")
        if extends := data.get("extends"):
            form.extends = _int(extends, 0) or None
        return form


@dataclass
class ExportPreview:
    """What an export with these filters would take, counted without creating anything."""

    labelled: int
    eligible: int
    excluded: dict[str, int]
    since: datetime | None
    since_export: int | None  # the export used for training whose fixes the filter leaves out (since it was built)
    last_used: int | None = None  # the task's export most recently used for training, whether the filter uses it
    error: str = ""

    @property
    def excluded_rows(self) -> list[tuple[str, str, int]]:
        labels = dict(ExportExclusion.Reason.choices)
        return [(reason, labels.get(reason, reason), n) for reason, n in self.excluded.items() if n]


def export_preview(form: ExportForm) -> ExportPreview:
    """Counts the labelled images the filters match, how many would go in, and how many each cheap exclusion
    keeps out (failed image, too small, unsettled conflicts), in one aggregate query over the export's own
    candidates (reviews.exports.selectors.export_candidates). An approximation of the build: placeholders of a
    color export and the kept items of an extended export are only sorted out by the build itself."""
    ids = dict(Advertiser.objects.filter(slug__in=form.advertisers).values_list("slug", "id"))
    last_used = training_cutoff(task=form.task)
    cutoff = last_used if form.since is None and form.since_last_training else None
    if form.since is not None:
        since: datetime | None = timezone.make_aware(datetime.combine(form.since, time.min))
    else:
        since = cutoff.created_at if cutoff else None
    filters = Filters(
        task=form.task,
        since=since,
        advertiser_ids=tuple(ids.values()),
        sources=tuple(form.sources),
        min_side=max(form.min_side, 1),
        extends_id=form.extends,
    )
    scope = {"advertiser_id": OuterRef("advertiser_id"), "asset_id": OuterRef("asset_id"), "task": form.task}
    failed = Q(ok_listing__isnull=True) | Q(asset__original="")
    small = ~failed & Q(min_side__lt=filters.min_side)
    staff = ~failed & ~small & Q(conflict_staff=True)
    advertisers = ~failed & ~small & ~Q(conflict_staff=True) & Q(conflict_advertisers=True)
    counts = (
        export_candidates(filters)
        .annotate(
            conflict_staff=Exists(disagreements().filter(**scope)),
            conflict_advertisers=Exists(advertiser_conflicts().filter(**scope)),
        )
        .aggregate(
            labelled=Count("id"),
            failed=Count("id", filter=failed),
            small=Count("id", filter=small),
            staff=Count("id", filter=staff),
            advertisers=Count("id", filter=advertisers),
        )
    )
    reason = ExportExclusion.Reason
    excluded = {
        reason.FAILED: counts["failed"],
        reason.TOO_SMALL: counts["small"],
        reason.CONFLICT_STAFF: counts["staff"],
        reason.CONFLICT_ADVERTISERS: counts["advertisers"],
    }
    unknown = sorted(set(form.advertisers) - set(ids))
    return ExportPreview(
        labelled=counts["labelled"],
        eligible=counts["labelled"] - sum(excluded.values()),
        excluded={str(k): v for k, v in excluded.items()},
        since=since,
        since_export=cutoff.pk if cutoff else None,
        last_used=last_used.pk if last_used else None,
        error=f"unknown advertiser: {', '.join(unknown)}" if unknown else "; ".join(form.errors),
    )


def _export_form_context(form: ExportForm) -> dict[str, Any]:
    return {
        "form": form,
        "tasks": Task.choices,
        "all_advertisers": Advertiser.objects.order_by("name").values_list("slug", "name"),
        "all_sources": [(str(s), ManualFix.Source(s).label) for s in ManualFix.HUMAN],
        "frozen_exports": DatasetExport.objects.filter(status=DatasetExport.Status.FROZEN).values_list("pk", "task"),
    }


@staff_required
def staff_exports(request: HttpRequest) -> HttpResponse:
    """The export form (with its live preview), and every export."""
    if request.method == "POST":
        form = ExportForm.from_data(request.POST, bound=True)
        if not form.errors:
            try:
                export = export_create(
                    task=form.task,
                    since=form.since,
                    since_last_training=form.since_last_training,
                    advertisers=form.advertisers,
                    sources=form.sources,
                    min_side=form.min_side,
                    extends=form.extends,
                    user=_user(request),
                )
            except ExportError as exc:
                form.errors.append(str(exc))
            else:
                messages.success(request, f"Export {export.pk} is being built")
                return redirect("reviews:staff-export", export.pk)
        status = 400
    else:
        form, status = ExportForm.from_data(request.GET, bound=False), 200
    context = _export_form_context(form) | {
        "exports": export_list()[:200],
        "preview": export_preview(form),
        "reasons": dict(ExportExclusion.Reason.choices),
    }
    return render(request, "reviews/exports.html", context, status=status)


@staff_required
def staff_export_preview(request: HttpRequest) -> HttpResponse:
    form = ExportForm.from_data(request.GET, bound=True)
    return render(request, "reviews/_partials/export_preview.html", {"preview": export_preview(form), "form": form})


def export_busy(export: DatasetExport) -> bool:
    """Whether a build or a freeze of the export is under way (its page polls)."""
    if export.status == DatasetExport.Status.BUILDING:
        return True
    return export.status == DatasetExport.Status.REVIEW and export.stage.startswith(FREEZING_STAGES)


@staff_required
def staff_export(request: HttpRequest, export_id: int) -> HttpResponse:
    export = get_object_or_404(export_list(), pk=export_id)
    summary = export_summary(export)
    issues = list(export_label_issues(export=export)[:LABEL_ISSUES_SHOWN])
    pending = sum(1 for item in issues if item.decision == ExportItem.Decision.PENDING)
    reasons = dict(ExportExclusion.Reason.choices)
    jobs = list(TrainingJob.objects.filter(export_id=export.pk).order_by("-created_at", "-id")[:JOBS_LISTED])
    biggest = max([max(row.train, row.test) for row in summary.labels] or [0])
    context = {
        "export": export,
        "summary": summary,
        "biggest": biggest,
        "exclusions": [(reason, reasons.get(reason, reason), n) for reason, n in summary.excluded.items()],
        "issues": issues,
        "pending": pending,
        "busy": export_busy(export),
        "jobs": jobs,
        "training": any(job.is_active for job in jobs),
        "kind_shares": kind_shares(export=export),
        # Whose reviewed labels are in it: each may get a head of its own (a scoped head).
        "advertisers": Advertiser.objects.filter(
            pk__in=ExportItem.objects.filter(export=export).values("advertiser_id")
        ).order_by("name"),
    }
    return render(request, "reviews/export.html", context)


@staff_required
def staff_export_status(request: HttpRequest, export_id: int) -> HttpResponse:
    """The export's status and progress (polled while it builds or freezes; reloads the page when done)."""
    export = get_object_or_404(DatasetExport, pk=export_id)
    busy = export_busy(export)
    response = render(request, "reviews/_partials/export_status.html", {"export": export, "busy": busy})
    if not busy and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"
    return response


@staff_required
@require_POST
def staff_export_decide(request: HttpRequest, export_id: int) -> HttpResponse:
    """Keeps or drops one likely label mistake; answers JSON (the page's keyboard script posts it)."""
    export = get_object_or_404(DatasetExport, pk=export_id)
    try:
        item = export_decide(
            export=export, item_id=_int(request.POST.get("item"), 0), decision=request.POST.get("decision", "")
        )
    except ExportError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    pending = ExportItem.objects.filter(export=export, decision=ExportItem.Decision.PENDING).count()
    return JsonResponse(
        {"item": item.pk, "decision": item.decision, "label": item.label, "pending": pending, "counts": export.counts}
    )


@staff_required
@require_POST
def staff_export_freeze(request: HttpRequest, export_id: int) -> HttpResponse:
    export = get_object_or_404(DatasetExport, pk=export_id)
    try:
        export_freeze_enqueue(export=export, keep_pending=request.POST.get("keep_pending") == "1")
    except ExportError as exc:
        messages.error(request, str(exc))
    else:
        export.refresh_from_db()
        if export.is_frozen:
            messages.success(request, f"Export {export.pk} is frozen")
        else:
            messages.success(request, f"Export {export.pk} is being frozen")
    return redirect("reviews:staff-export", export.pk)


@staff_required
@require_POST
def staff_export_train(request: HttpRequest, export_id: int) -> HttpResponse:
    """Trains candidates from a frozen export on the training queue, and marks the export used for training."""
    export = get_object_or_404(DatasetExport, pk=export_id)
    try:
        manifest = training_manifest(export=export)
        scope = None
        if request.POST.get("advertiser"):  # a head scoped to one advertiser (classifier.services.scoped)
            scope = Advertiser.objects.filter(pk=_int(request.POST.get("advertiser"), 0)).first()
            if scope is None:
                raise TrainingError("no such advertiser: choose one of the export's")
        job = training_start(
            task=export.task,
            export_id=export.pk,
            manifest=manifest,
            candidates=_int(request.POST.get("candidates"), 4),
            user=_user(request),
            advertiser=scope,
            enqueue=True,
        )
        export_mark_used(export=export)
    except (ExportError, TrainingError) as exc:
        messages.error(request, str(exc))
    else:
        scoped = f" scoped to {job.advertiser}" if job.advertiser_id else ""
        messages.success(
            request, f"Training job {job.pk}: {job.candidates_wanted} candidates{scoped} from export {export.pk}"
        )
    return redirect(f"{reverse('reviews:staff-export', args=[export.pk])}#training")


# Jobs.

JOB_KINDS: dict[str, type[TrainingJob] | type[ShadowPass]] = {"training": TrainingJob, "shadow": ShadowPass}


@staff_required
def staff_job(request: HttpRequest, kind: str, job_id: int) -> HttpResponse:
    """A training job's or a shadow pass's progress (polled while it runs; reloads the page when it ends)."""
    model = JOB_KINDS.get(kind)
    if model is None:
        raise Http404
    job = get_object_or_404(model, pk=job_id)
    response = render(request, "reviews/_partials/job_progress.html", {"job": job, "kind": kind})
    if not job.is_active and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"
    return response


# Models.


@dataclass
class ModelColumn:
    """One model of a training job's comparison, on the job's test split."""

    version_id: int
    version: ModelVersion | None
    role: str  # "baseline" or "candidate"
    test: dict[str, Any]
    local: dict[str, float]
    local_counts: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    best: bool = False
    active: bool = False
    worse: set[str] = field(default_factory=set)
    shadow: ShadowPass | None = None
    flips: list[AdvertiserFlips] | None = None
    confident_flips: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.version.name if self.version else f"model {self.version_id}"

    @property
    def shadow_done(self) -> bool:
        return self.shadow is not None and self.shadow.status == ShadowPass.Status.SUCCEEDED

    @property
    def per_class(self) -> list[tuple[str, dict[str, float]]]:
        per_class = self.test.get("per_class", {})
        return [(label, per_class.get(label, {})) for label in self.test.get("labels", [])]

    @property
    def confusion(self) -> list[tuple[str, list[tuple[str, int, float]]]]:
        """(true label, [(predicted label, count, share of the row)]) rows of the confusion matrix."""
        labels = self.test.get("labels", [])
        rows = []
        for label, counts in zip(labels, self.test.get("confusion", []), strict=False):
            total = sum(counts) or 1
            rows.append((label, [(predicted, n, n / total) for predicted, n in zip(labels, counts, strict=False)]))
        return rows


def _comparison(job: TrainingJob, active_id: int | None, task: str) -> list[ModelColumn]:
    """The baseline and the candidates of a succeeded job; advertisers a candidate makes worse; shadow passes
    (one query) and, for each candidate whose pass succeeded, its flips per advertiser."""
    result = job.result or {}
    baseline = result.get("baseline", {})
    columns = [
        ModelColumn(
            version_id=baseline.get("model_version", job.parent_id),
            version=None,
            role="baseline",
            test=baseline.get("test", {}),
            local=baseline.get("local_accuracy", {}),
            local_counts=baseline.get("local_counts", {}),
            confident_flips=baseline.get("confident_flips", {}),
        )
    ]
    for row in result.get("candidates", []):
        local = row.get("local_accuracy", {})
        columns.append(
            ModelColumn(
                version_id=row["model_version"],
                version=None,
                role="candidate",
                test=row.get("test", {}),
                local=local,
                local_counts=row.get("local_counts", {}),
                params=row.get("params", {}),
                confident_flips=row.get("confident_flips", {}),
                best=row["model_version"] == result.get("best"),
                worse={slug for slug, a in local.items() if a < columns[0].local.get(slug, 0.0) - 1e-9},
            )
        )
    versions = ModelVersion.objects.in_bulk([column.version_id for column in columns])
    passes: dict[int, ShadowPass] = {}
    for shadow in ShadowPass.objects.filter(model_version_id__in=list(versions)).order_by("-created_at", "-id"):
        passes.setdefault(shadow.model_version_id, shadow)
    for column in columns:
        column.version = versions.get(column.version_id)
        column.active = column.version_id == active_id
        column.shadow = passes.get(column.version_id)
        if column.role == "candidate" and column.version is not None and column.shadow_done:
            column.flips = candidate_flips(version=column.version, task=task)
    return columns


@dataclass(frozen=True)
class LocalCell:
    accuracy: float | None
    reviewed: int | None
    worse: bool
    best: bool


def _local_table(columns: list[ModelColumn]) -> list[tuple[str, list[LocalCell]]]:
    """Per advertiser of the test split: each model's local accuracy, whether a candidate makes it worse than
    the baseline, and which model is best there."""
    slugs = sorted({slug for column in columns for slug in column.local})
    rows = []
    for slug in slugs:
        values = [column.local.get(slug) for column in columns]
        top = max((v for v in values if v is not None), default=None)
        cells = [
            LocalCell(
                accuracy=value,
                reviewed=(column.local_counts.get(slug) or {}).get("reviewed"),
                worse=slug in column.worse,
                best=value is not None and value == top and len(columns) > 1,
            )
            for column, value in zip(columns, values, strict=True)
        ]
        rows.append((slug, cells))
    return rows


@dataclass(frozen=True)
class GuardCell:
    confident: int
    flipped: int
    over: bool

    @property
    def share(self) -> float | None:
        return self.flipped / self.confident if self.confident else None


def _guard_table(columns: list[ModelColumn], trained_for: list[str]) -> list[tuple[str, bool, list[GuardCell | None]]]:
    """Per advertiser of the training guard: (slug, in the export, each model's flips of its confident tags, over
    the tolerance or not: training.flips_over_tolerance, the best-candidate rule)."""
    slugs = sorted({slug for column in columns for slug in column.confident_flips})
    rows = []
    for slug in slugs:
        cells: list[GuardCell | None] = []
        for column in columns:
            counts = column.confident_flips.get(slug)
            if counts is None:
                cells.append(None)
                continue
            over = bool(flips_over_tolerance({slug: counts}, trained_for))
            cells.append(GuardCell(int(counts.get("confident", 0)), int(counts.get("flipped", 0)), over))
        rows.append((slug, slug in trained_for, cells))
    return rows


@staff_required
def staff_models_root(request: HttpRequest) -> HttpResponse:
    return redirect("reviews:staff-models", Task.IMAGE_TYPE)


@staff_required
def staff_models(request: HttpRequest, task: str) -> HttpResponse:
    """The active model and the candidates of a training job (the latest that succeeded, or ?job=ID) side by
    side on the job's test split; shadow passes, promotion and rollback; running jobs."""
    if task not in Task.values:
        raise Http404
    active = ModelHead.objects.filter(task=task, is_active=True).select_related("model_version").first()
    active_id = active.model_version_id if active else None
    jobs = list(
        TrainingJob.objects.filter(task=task)
        .select_related("parent", "created_by", "advertiser")
        .order_by("-created_at", "-id")[:JOBS_LISTED]
    )
    chosen_id = _int(request.GET.get("job"), 0)
    job = next((j for j in jobs if j.pk == chosen_id), None) if chosen_id else None
    if job is None and chosen_id:
        job = TrainingJob.objects.filter(task=task, pk=chosen_id).select_related("parent").first()
    if job is None:
        job = next((j for j in jobs if j.status == TrainingJob.Status.SUCCEEDED), None)
    columns = _comparison(job, active_id, task) if job and job.status == TrainingJob.Status.SUCCEEDED else []
    local_table = _local_table(columns)
    promotions = list(
        Promotion.objects.filter(
            task=task, advertiser__isnull=True
        )  # the active model's; scoped heads: their own table
        .select_related("user", "to_version", "from_version")
        .order_by("-created_at", "-id")[:5]
    )
    rollback: RollbackPlan | None = None
    no_rollback = ""
    try:
        rollback = rollback_plan(task=task) if promotions else None
    except PromotionError as exc:
        no_rollback = str(exc)
    context = {
        "task": task,
        "tasks": Task.choices,
        "active": active.model_version if active else None,
        "scoped_heads": list(
            ScopedHead.objects.filter(task=task).select_related("advertiser", "model_version").order_by("advertiser")
        ),
        "jobs": jobs,
        "running": [j for j in jobs if j.is_active],
        "job": job,
        "columns": columns,
        "candidates": [column for column in columns if column.role == "candidate"],
        "local_table": local_table,
        "guard_table": _guard_table(columns, list((job.result or {}).get("trained_for", []))) if job else [],
        "promotions": promotions,
        "last_promotion": promotions[0] if promotions else None,
        # The watch after it shipped (reviews.services.watch): its figures, and the flag of a clearly worse model.
        "watch_rows": watch_rows(promotions[0]) if promotions else [],
        "watch_flags": [f for f in (promotions[0].watch or {}).get("flags", []) if f.get("code") == WATCH_FLAG]
        if promotions
        else [],
        "rollback": rollback,  # what Roll back would do: the version it would make active again
        "no_rollback": no_rollback,  # else why there is nothing to roll back to
        "labels": TASK_LABELS.get(task, ()),
        "new_labels": {name: new_labels(task=name) for name in LOOP_TASKS},
        "retrain_min": settings.RETRAIN_MIN_NEW_LABELS,
    }
    return render(request, "reviews/models.html", context)


@staff_required
@require_POST
def staff_retrain(request: HttpRequest) -> HttpResponse:
    """Retrain from reviews: both tasks' exports, candidates and best candidates' shadow passes, in the background on
    the training queue (reviews.services.retrain); staff are emailed the comparison. Promotion stays a click here."""
    task = _task(request.POST.get("task"))
    counts = {name: new_labels(task=name) for name in LOOP_TASKS}
    ready = [name for name, count in counts.items() if count]
    if not ready:
        messages.error(request, "No new human labels since the last training: review some images first")
    else:
        from .tasks import retrain_task

        retrain_task.delay_on_commit(ready, request.user.pk)  # type: ignore[attr-defined]  # not in celery-types yet
        described = " and ".join(f"{name} ({counts[name]:,} new labels)" for name in ready)
        messages.success(
            request, f"Retraining {described}: the candidates appear below with their shadow passes, staff get an email"
        )
    return redirect(_models_url(task))


@staff_required
def staff_confusion_cell(request: HttpRequest, job_id: int, version_id: int) -> HttpResponse:
    """The test images behind one cell of a model's confusion matrix on a training job's split (?true=&predicted=;
    either may be left out for a whole row or column), as training evaluated them, with their thumbnails."""
    succeeded = TrainingJob.objects.filter(status=TrainingJob.Status.SUCCEEDED).select_related("parent")
    job = get_object_or_404(succeeded, pk=job_id)
    version = get_object_or_404(ModelVersion, pk=version_id)
    labels = TASK_LABELS.get(job.task, ())
    true, predicted = request.GET.get("true", ""), request.GET.get("predicted", "")
    if any(value and value not in labels for value in (true, predicted)):
        return HttpResponseBadRequest(f"true and predicted are labels of {job.task}: {', '.join(labels)}")
    try:
        rows = predictions_on_test_split(job=job, version=version)
    except (TrainingError, FeatureError) as exc:
        raise Http404(str(exc)) from exc
    chosen = [
        (item, label, confidence)
        for item, label, confidence in rows
        if (not true or item["label"] == true) and (not predicted or label == predicted)
    ]
    assets = ImageAsset.objects.in_bulk([int(item["asset"]) for item, _, _ in chosen])
    context = {
        "job": job,
        "version": version,
        "task": job.task,
        "true": true,
        "predicted": predicted,
        "total": len(rows),
        "rows": [(item, label, confidence, assets.get(int(item["asset"]))) for item, label, confidence in chosen],
    }
    return render(request, "reviews/confusion_cell.html", context)


def _models_url(task: str, job: object = None) -> str:
    url = reverse("reviews:staff-models", args=[task])
    return f"{url}?job={job}" if job else url


def _version_task(version: ModelVersion, request: HttpRequest) -> str:
    """The task the screen was showing (a version may have several heads)."""
    tasks = list(version.heads.values_list("task", flat=True))
    wanted = request.POST.get("task", "")
    return wanted if wanted in tasks else (tasks[0] if tasks else Task.IMAGE_TYPE)


@staff_required
@require_POST
def staff_model_shadow(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, pk=version_id)
    try:
        shadow = shadow_start(version=version, enqueue=True)
    except ShadowError as exc:
        messages.error(request, str(exc))
    else:
        shadow.refresh_from_db()
        messages.success(request, f"Shadow pass {shadow.pk} of {version.name}: {shadow.get_status_display().lower()}")
    return redirect(_models_url(_version_task(version, request), request.POST.get("job")))


@dataclass(frozen=True)
class TaskChange:
    """One task a promotion or rollback switches: the version serving it now, and the tags that would flip per
    advertiser (from the incoming version's results: its shadow pass, or its results from when it was active)."""

    task: str
    current: ModelVersion | None
    flips: list[AdvertiserFlips]
    confident: list[ConfidentFlips] | None = None  # a promotion's guard: the confident model tags it would flip

    @property
    def flipped(self) -> int:
        return sum(advertiser.flipped for advertiser in self.flips)


def _serving(tasks: list[str]) -> dict[str, ModelVersion | None]:
    """Each task and the version serving it now (None: no model), in the given order."""
    serving = {
        head.task: head.model_version
        for head in ModelHead.objects.filter(is_active=True, task__in=tasks).select_related("model_version")
    }
    return {task: serving.get(task) for task in tasks}


def _task_changes(version: ModelVersion, tasks: list[str], *, guard: bool = False) -> list[TaskChange]:
    serving = _serving(tasks)
    return [
        TaskChange(
            task,
            serving.get(task),
            candidate_flips(version=version, task=task),
            confident_flips(version=version, task=task) if guard else None,
        )
        for task in tasks
    ]


def _signature(changes: list[TaskChange], regressions: Sequence[Regression] = ()) -> str:
    """What a confirmation showed (each task and the version serving it, and the regressions it asked to accept):
    confirming writes only if it still holds."""
    shown = ",".join(f"{change.task}:{change.current.pk if change.current else 0}" for change in changes)
    if regressions:
        shown += ";accepts:" + ",".join(sorted(f"{r.task}/{r.advertiser}/{r.kind}" for r in regressions))
    return shown


def _confirmation(request: HttpRequest, context: dict[str, Any]) -> HttpResponse:
    """The step before a promotion or a rollback: what changes for every advertiser; nothing changes until confirmed
    (and it asks again if what it showed changed meanwhile)."""
    return render(request, "reviews/promotion_confirm.html", context | {"job": request.POST.get("job", "")})


@staff_required
@require_POST
def staff_model_promote(request: HttpRequest, version_id: int) -> HttpResponse:
    """Promote (or, forced, Promote anyway): first a confirmation naming the tasks it switches and the tags that
    would flip per advertiser; the promotion happens when that confirmation is posted back."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    task = _version_task(version, request)
    try:
        tasks = promotion_tasks(version=version)
        if not tasks:
            raise PromotionError(f"{version.name} is already the active model for its tasks")
        regressions = promotion_regressions(version=version, tasks=tasks)
    except PromotionError as exc:
        messages.error(request, f"Not promoted: {exc}")
        return redirect(_models_url(task, request.POST.get("job")))
    confirmed = request.POST.get("confirmed", "")
    signature = _signature([TaskChange(t, current, []) for t, current in _serving(tasks).items()], regressions)
    if confirmed != signature:
        changes = _task_changes(version, tasks, guard=True)
        problem = "What the promotion switches changed since the confirmation: look again." if confirmed else ""
        blocker = promotion_blocker(version=version)
        return _confirmation(
            request,
            {"action": "promote", "version": version, "task": task, "changes": changes, "signature": signature,
             "problem": problem, "blocker": blocker, "force": blocker is not None, "regressions": regressions},
        )  # fmt: skip
    try:
        promotion = model_promote(
            version=version,
            user=_user(request),
            force=request.POST.get("force") == "1",
            override_regressions=request.POST.get("override_regressions") == "1",
        )
    except PromotionError as exc:
        messages.error(request, f"Not promoted: {exc}")
    else:
        forced = " (forced before its shadow pass finished)" if promotion.forced else ""
        if regressions:
            forced += f" (regressions accepted, recorded: {'; '.join(r.describe() for r in regressions)})"
        serves = (
            f"answers {tasks[0]} for {version.advertiser}" if version.advertiser_id else "is now the active model for"
        )
        if not version.advertiser_id:
            serves += f" {', '.join(tasks)}"
        messages.success(request, f"{version.name} {serves}{forced}")
    return redirect(_models_url(task, request.POST.get("job")))


@staff_required
@require_POST
def staff_model_rollback(request: HttpRequest, task: str) -> HttpResponse:
    """Roll back: first a confirmation naming the version it makes active again, the tasks and the tags that would
    flip per advertiser; the rollback happens when that confirmation is posted back."""
    if task not in Task.values:
        raise Http404
    try:
        plan = rollback_plan(task=task)
    except PromotionError as exc:
        messages.error(request, f"Not rolled back: {exc}")
        return redirect(_models_url(task, request.POST.get("job")))
    changes = _task_changes(plan.version, plan.tasks)
    signature = f"{plan.undoes.pk}:{_signature(changes)}"
    confirmed = request.POST.get("confirmed", "")
    if confirmed != signature:
        problem = "The models changed since the confirmation: look again." if confirmed else ""
        return _confirmation(
            request,
            {"action": "rollback", "version": plan.version, "task": task, "changes": changes, "signature": signature,
             "problem": problem, "plan": plan},
        )  # fmt: skip
    try:
        promotion = model_rollback(task=task, user=_user(request), undoes=plan.undoes.pk)
    except PromotionError as exc:
        messages.error(request, f"Not rolled back: {exc}")
    else:
        switched = ", ".join(plan.tasks)
        messages.success(request, f"Rolled back: {promotion.to_version.name} is the active model again for {switched}")
    return redirect(_models_url(task, request.POST.get("job")))


@staff_required
@require_POST
def staff_scoped_rollback(request: HttpRequest, task: str, advertiser_id: int) -> HttpResponse:
    """Retire an advertiser's scoped head: the active model answers its placements again (instant: its results are
    cached), recorded as a rollback with the advertiser."""
    if task not in Task.values:
        raise Http404
    advertiser = get_object_or_404(Advertiser, pk=advertiser_id)
    try:
        record = scoped_rollback(advertiser=advertiser, task=task, user=_user(request))
    except ScopedError as exc:
        messages.error(request, f"Not rolled back: {exc}")
    else:
        messages.success(request, f"Rolled back: {record.to_version.name} answers {task} for {advertiser} again")
    return redirect(_models_url(task))


@staff_required
def staff_accuracy(request: HttpRequest, task: str) -> HttpResponse:
    """Accuracy over time: the share of model tags that fixes overturned, per week, overall and per advertiser,
    with the task's promotions marked."""
    if task not in Task.values:
        raise Http404
    weeks = min(max(_int(request.GET.get("weeks"), 26), 4), 104)
    by = "kind" if request.GET.get("by") == "kind" else "advertiser"  # the series per advertiser or per vehicle kind
    data = accuracy_over_time(task=task, weeks=weeks, by=by)
    context = {"task": task, "tasks": Task.choices, "data": data, "weeks": weeks, "by": by}
    return render(request, "reviews/accuracy.html", context)
