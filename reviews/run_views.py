"""Staff screens of advertisers and their Runs: every advertiser's health, a sitemap's Runs (status, counters, failures
by reason with sample URLs, health flags, a chart of the last Runs), one Run with its notifications, and the buttons
that start a Run now or cancel a queued or running one (POST, CSRF). Every flag and failed count links to the grid
filtered to exactly those images (reviews.health.runs). Staff only: anyone else logged in gets 403."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from catalog.models import Run, Sitemap, Task
from catalog.services.runs import RUN_CANCELLED, RunAlreadyActive, RunError, run_cancel, run_start
from notifications.selectors import run_notifications

from .guards import staff_required
from .health import advertisers_health
from .health.runs import flag_views, run_view, runs_chart, sitemap_runs, sitemaps_last_runs
from .views import HtmxHttpRequest


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - staff_required requires a logged-in user
    return request.user


@staff_required
@require_safe
def staff_advertisers(request: HtmxHttpRequest) -> HttpResponse:
    rows = advertisers_health()
    by_advertiser: dict[int, list[object]] = {}
    for last in sitemaps_last_runs():
        by_advertiser.setdefault(last.sitemap.advertiser_id, []).append(last)
    flags = {
        row.advertiser.pk: flag_views(
            row.last_run.health_flags,
            run_id=row.last_run.id,
            sitemap_id=row.last_run.sitemap_id,
            advertiser_id=row.advertiser.pk,
        )
        for row in rows
        if row.last_run
    }
    return render(request, "reviews/advertisers.html", {"rows": rows, "sitemaps": by_advertiser, "flags": flags})


@staff_required
@require_safe
def staff_sitemap_runs(request: HtmxHttpRequest, sitemap_id: int) -> HttpResponse:
    sitemap = get_object_or_404(Sitemap.objects.select_related("advertiser"), pk=sitemap_id)
    task = request.GET.get("task", "")
    if task not in sitemap.tasks_enabled or task not in Task.values:
        task = next((each for each in Task.values if each in sitemap.tasks_enabled), Task.IMAGE_TYPE)
    runs = sitemap_runs(sitemap=sitemap)
    context = {
        "sitemap": sitemap,
        "runs": runs,
        "active": next((view for view in runs if view.is_active), None),
        "chart": runs_chart(sitemap=sitemap, task=task),
        "task": task,
        "tasks": [(value, name) for value, name in Task.choices if value in sitemap.tasks_enabled],
    }
    return render(request, "reviews/sitemap_runs.html", context)


@staff_required
@require_safe
def staff_run(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    """A Run's page; while the Run is under way, htmx polls its summary (the `_partials/run_summary.html` part)."""
    run = get_object_or_404(Run.objects.select_related("sitemap__advertiser", "requested_by"), pk=run_id)
    context = {
        "view": run_view(run=run),
        "sitemap": run.sitemap,
        "notifications": list(run_notifications(run=run)),
        "cancelled": RUN_CANCELLED,
    }
    template = "reviews/_partials/run_summary.html" if request.htmx else "reviews/run.html"
    return render(request, template, context)


@staff_required
@require_POST
def staff_run_start(request: HtmxHttpRequest, sitemap_id: int) -> HttpResponse:
    """ "Run now": a manual Run of the sitemap, handed to a worker once committed."""
    sitemap = get_object_or_404(Sitemap, pk=sitemap_id)
    try:
        run = run_start(sitemap=sitemap, trigger=Run.Trigger.MANUAL, user=_user(request))
    except RunAlreadyActive as exc:
        messages.error(request, f"Run {exc.active.pk} is {exc.active.status}: cancel it first, or wait for it to end")
        return redirect("reviews:staff-run", exc.active.pk)
    except RunError as exc:
        messages.error(request, str(exc))
        return redirect("reviews:staff-sitemap-runs", sitemap.pk)
    messages.success(request, f"Run {run.pk} queued")
    return redirect("reviews:staff-run", run.pk)


@staff_required
@require_POST
def staff_run_cancel(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    """Cancels a queued or running Run (catalog.services.runs.run_cancel): failed with the error "cancelled"; what it
    brought in is kept and the next Run carries on."""
    run = get_object_or_404(Run, pk=run_id)
    try:
        run_cancel(run_id=run.pk)
    except RunError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Run {run.pk} cancelled: the next Run carries on from what it brought in")
    return redirect("reviews:staff-run", run.pk)
