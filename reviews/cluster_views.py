"""Review by cluster: a sitemap's pictures, one row per near-duplicate cluster, where one key tags the whole
cluster. The POST names (sitemap, cluster, task, label); the service finds the members in the sitemap's
advertiser's scope. Staff see every sitemap; the portal its own (reviews.views.Realm)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.utils.http import urlencode
from django.views.decorators.http import require_POST, require_safe

from catalog.models import TASK_LABELS, Sitemap, Task

from .crosscheck import sitemap_clusters
from .guards import staff_required
from .services.clusters import cluster_fix_apply
from .services.fixes import FixError
from .views import PORTAL, STAFF, HtmxHttpRequest, Realm


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _task(value: Any) -> str:
    return value if value in Task.values else Task.IMAGE_TYPE


def _context(request: HtmxHttpRequest, realm: Realm, sitemap: Sitemap, task: str) -> dict[str, Any]:
    return {
        "realm": realm,
        "sitemap": sitemap,
        "task": task,
        "tasks": Task.choices,
        "labels": TASK_LABELS[task],
        "can_edit": realm.can_edit(request, sitemap),
        "clusters_url": realm.url("clusters", sitemap.pk),
        "fix_url": realm.url("cluster-fix", sitemap.pk),
        "grid_url": realm.url("grid", sitemap.pk),
    }


def _clusters(request: HtmxHttpRequest, realm: Realm, sitemap_id: int) -> HttpResponse:
    sitemap = get_object_or_404(realm.sitemaps(request), pk=sitemap_id)
    task = _task(request.GET.get("task"))
    cluster_id = _int(request.GET.get("cluster"))
    page = sitemap_clusters(
        sitemap=sitemap, task=task, page=_int(request.GET.get("page"), 1) or 1, cluster_id=cluster_id
    )
    context = _context(request, realm, sitemap, task) | {"page": page, "cluster": cluster_id}
    template = "reviews/_partials/cluster_list.html" if request.htmx else "reviews/cluster_review.html"
    return render(request, template, context)


def _cluster_fix(request: HtmxHttpRequest, realm: Realm, sitemap_id: int) -> HttpResponse:
    """One label for every image of a cluster at the sitemap's advertiser; htmx gets the row back, re-rendered."""
    sitemap = get_object_or_404(realm.sitemaps(request), pk=sitemap_id)
    if not realm.can_edit(request, sitemap):
        raise PermissionDenied("viewers cannot change tags")
    cluster_id = _int(request.POST.get("cluster"))
    task = _task(request.POST.get("task"))
    if cluster_id is None:
        return HttpResponse("cluster: a number is required", status=400)
    assert isinstance(request.user, User)  # noqa: S101 - the decorators require a logged-in user
    try:
        created = cluster_fix_apply(
            sitemap=sitemap,
            cluster_id=cluster_id,
            task=task,
            label=request.POST.get("label", ""),
            user=request.user,
            source=realm.source,
        )
    except FixError as exc:
        notice, failed = str(exc), True
    else:
        notice, failed = f"{len(created)} tag{'s' if len(created) != 1 else ''} changed", False
    if not request.htmx:
        (messages.error if failed else messages.success)(request, notice)
        query = {"task": task, "page": request.POST.get("page", "1")}
        return HttpResponseRedirect(f"{realm.url('clusters', sitemap.pk)}?{urlencode(query)}")
    page = sitemap_clusters(sitemap=sitemap, task=task, cluster_id=cluster_id)
    context = _context(request, realm, sitemap, task) | {
        "row": page.rows[0] if page.rows else None,
        "notice": notice,
        "failed": failed,
        "page": page,
    }
    # A refusal is shown in the row (htmx swaps 2xx answers only).
    return render(request, "reviews/_partials/cluster_row.html", context)


@staff_required
def staff_clusters(request: HtmxHttpRequest, sitemap_id: int) -> HttpResponse:
    return _clusters(request, STAFF, sitemap_id)


@staff_required
@require_POST
def staff_cluster_fix(request: HtmxHttpRequest, sitemap_id: int) -> HttpResponse:
    return _cluster_fix(request, STAFF, sitemap_id)


@login_required
@require_safe
def portal_clusters(request: HtmxHttpRequest, sitemap_id: int) -> HttpResponse:
    return _clusters(request, PORTAL, sitemap_id)


@login_required
@require_POST
def portal_cluster_fix(request: HtmxHttpRequest, sitemap_id: int) -> HttpResponse:
    return _cluster_fix(request, PORTAL, sitemap_id)
