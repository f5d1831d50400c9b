"""Screens: staff review (every advertiser) and the advertiser portal (their own data only), server-rendered
with htmx for in-place updates. Views parse, call selectors and services, and render."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.views.decorators.http import require_POST, require_safe
from django_htmx.middleware import HtmxDetails

from catalog.models import TASK_LABELS, Placement, Sitemap, Task

from .grid import GridFilters, sitemap_grid, sitemap_placements
from .models import ManualFix
from .selectors import image_history, user_can_fix
from .services import FixError, manual_fix_revert, manual_fixes_apply, review_decision_record
from .services.fixes import Change

BULK_LIMIT = 100_000


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _user(request: HttpRequest) -> User:
    """The logged-in user (every view here requires one)."""
    assert isinstance(request.user, User)  # noqa: S101
    return request.user


@dataclass(frozen=True)
class Realm:
    """Staff see every advertiser; the portal shows a user their advertisers' data only, as if nothing else existed."""

    name: str
    source: str

    def sitemaps(self, request: HtmxHttpRequest) -> QuerySet[Sitemap]:
        if self.name == "staff":
            return Sitemap.objects.select_related("advertiser")
        return Sitemap.objects.filter(advertiser__memberships__user=_user(request)).select_related("advertiser")

    def placements(self, request: HtmxHttpRequest) -> QuerySet[Placement]:
        return Placement.objects.filter(listing__sitemap__in=self.sitemaps(request)).select_related(
            "asset", "listing__sitemap__advertiser"
        )

    def can_edit(self, request: HtmxHttpRequest, sitemap: Sitemap) -> bool:
        return user_can_fix(_user(request), sitemap.advertiser_id)

    def url(self, name: str, *args: object) -> str:
        return reverse(f"reviews:{self.name}-{name}", args=args)


STAFF = Realm("staff", ManualFix.Source.STAFF)
PORTAL = Realm("portal", ManualFix.Source.ADVERTISER)


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff screens: an anonymous visitor logs in first; a logged-in user who is not staff (an advertiser's
    editor or viewer) gets 403, not a login page that would not let them in either."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied("staff only")
        return view(request, *args, **kwargs)

    return login_required(wrapper)


@require_safe
def home(request: HtmxHttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    return redirect("reviews:staff-advertisers" if request.user.is_staff else "reviews:portal-sitemaps")


def _grid(request: HtmxHttpRequest, realm: Realm, sitemap_id: int) -> HttpResponse:
    sitemap = get_object_or_404(realm.sitemaps(request), pk=sitemap_id)
    filters = GridFilters.from_params(request.GET)
    try:
        number = int(request.GET.get("page", "1"))
    except ValueError:
        number = 1
    page = sitemap_grid(sitemap=sitemap, filters=filters, page=number)
    context = {
        "realm": realm,
        "sitemap": sitemap,
        "page": page,
        "filters": filters,
        "query": urlencode(filters.as_params()),
        "tasks": Task.choices,
        "labels": TASK_LABELS[filters.task],
        "can_edit": realm.can_edit(request, sitemap),
        "fixes_url": realm.url("fixes", sitemap.pk),
        "grid_url": realm.url("grid", sitemap.pk),
        "sources": ["fix", "scrape", "model", "failed", "unknown"],
        "sorts": ["position", "confidence", "margin", "newest"],
    }
    template = "reviews/_partials/grid.html" if request.htmx else "reviews/sitemap_grid.html"
    return render(request, template, context)


def _apply_fixes(request: HtmxHttpRequest, realm: Realm, sitemap_id: int) -> HttpResponse:
    """The grid's "Update": every pending change of the page, or one label for a selection or for everything
    the current filter matches, in one transaction. Each changed tag is one ManualFix."""
    sitemap = get_object_or_404(realm.sitemaps(request), pk=sitemap_id)
    if not realm.can_edit(request, sitemap):
        raise PermissionDenied("viewers cannot change tags")
    filters = GridFilters.from_params(request.POST)
    placements = sitemap_placements(sitemap=sitemap, filters=GridFilters()).select_related("listing__sitemap")
    changes: list[Change] = []
    pending = [value.split(":", 2) for value in request.POST.getlist("change") if value.count(":") >= 2]
    by_id = placements.in_bulk([int(pid) for pid, _, _ in pending if pid.isdigit()])
    changes += [
        Change(by_id[int(pid)], task, label) for pid, task, label in pending if pid.isdigit() and int(pid) in by_id
    ]
    bulk_label, bulk_task = request.POST.get("bulk_label", ""), request.POST.get("bulk_task", filters.task)
    if bulk_label:
        if request.POST.get("select_all") == "filter":
            targets = sitemap_placements(sitemap=sitemap, filters=filters).select_related("listing__sitemap")[
                :BULK_LIMIT
            ]
        else:
            ids = [int(pid) for pid in request.POST.getlist("selected") if pid.isdigit()]
            targets = placements.filter(pk__in=ids)
        changes += [Change(p, bulk_task, bulk_label) for p in targets if p.asset_id]
    try:
        created = manual_fixes_apply(changes=changes, user=_user(request), source=realm.source)
    except FixError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{len(created)} tag{'s' if len(created) != 1 else ''} changed")
    url = f"{realm.url('grid', sitemap.pk)}?{urlencode({**filters.as_params(), 'page': request.POST.get('page', '1')})}"
    if request.htmx:
        request.GET = request.POST.copy()  # type: ignore[assignment]  # re-render the same page in place
        return _grid(request, realm, sitemap.pk)
    return HttpResponseRedirect(url)


def _image(request: HtmxHttpRequest, realm: Realm, placement_id: int) -> HttpResponse:
    placement = get_object_or_404(realm.placements(request), pk=placement_id)
    history = image_history(placement=placement, all_advertisers=realm.name == "staff")
    return render(
        request,
        "reviews/image.html",
        {"realm": realm, "placement": placement, "history": history,
         "can_edit": realm.can_edit(request, placement.listing.sitemap)},
    )  # fmt: skip


def _revert(request: HtmxHttpRequest, realm: Realm, fix_id: int) -> HttpResponse:
    placement = get_object_or_404(realm.placements(request), pk=request.POST.get("placement", 0))
    fix = get_object_or_404(
        ManualFix, pk=fix_id, advertiser_id=placement.listing.sitemap.advertiser_id, asset_id=placement.asset_id
    )
    if not realm.can_edit(request, placement.listing.sitemap):
        raise PermissionDenied("viewers cannot change tags")
    try:
        manual_fix_revert(fix=fix, user=_user(request), source=realm.source)
        messages.success(request, f"Fix {fix.pk} reverted: {fix.task} is {fix.old_label} again")
    except FixError as exc:
        messages.error(request, str(exc))
    return redirect(realm.url("image", placement.pk))


def _sitemaps(request: HtmxHttpRequest, realm: Realm) -> HttpResponse:
    sitemaps = realm.sitemaps(request).order_by("advertiser__name", "id")
    return render(request, "reviews/portal_sitemaps.html", {"realm": realm, "sitemaps": sitemaps})


# Staff screens
@staff_required
def staff_grid(request: HtmxHttpRequest, sitemap_id: int) -> HttpResponse:
    return _grid(request, STAFF, sitemap_id)


@staff_required
@require_POST
def staff_fixes(request: HtmxHttpRequest, sitemap_id: int) -> HttpResponse:
    return _apply_fixes(request, STAFF, sitemap_id)


@staff_required
def staff_image(request: HtmxHttpRequest, placement_id: int) -> HttpResponse:
    return _image(request, STAFF, placement_id)


@staff_required
@require_POST
def staff_revert(request: HtmxHttpRequest, fix_id: int) -> HttpResponse:
    return _revert(request, STAFF, fix_id)


# The advertiser portal
@login_required
@require_safe
def portal_sitemaps(request: HtmxHttpRequest) -> HttpResponse:
    return _sitemaps(request, PORTAL)


@login_required
@require_safe
def portal_grid(request: HtmxHttpRequest, sitemap_id: int) -> HttpResponse:
    return _grid(request, PORTAL, sitemap_id)


@login_required
@require_POST
def portal_fixes(request: HtmxHttpRequest, sitemap_id: int) -> HttpResponse:
    return _apply_fixes(request, PORTAL, sitemap_id)


@login_required
@require_safe
def portal_image(request: HtmxHttpRequest, placement_id: int) -> HttpResponse:
    return _image(request, PORTAL, placement_id)


@login_required
@require_POST
def portal_revert(request: HtmxHttpRequest, fix_id: int) -> HttpResponse:
    return _revert(request, PORTAL, fix_id)


@staff_required
def staff_advertisers(request: HtmxHttpRequest) -> HttpResponse:
    from .health import advertisers_health

    rows = advertisers_health()
    sitemaps = Sitemap.objects.select_related("advertiser").order_by("advertiser__name", "id")
    by_advertiser: dict[int, list[Sitemap]] = {}
    for sitemap in sitemaps:
        by_advertiser.setdefault(sitemap.advertiser_id, []).append(sitemap)
    return render(request, "reviews/advertisers.html", {"rows": rows, "sitemaps": by_advertiser})


@staff_required
def staff_queue(request: HtmxHttpRequest) -> HttpResponse:
    from .health import review_queue

    items = review_queue(limit=50)
    return render(request, "reviews/queue.html", {"items": items, "labels": dict(TASK_LABELS)})


@staff_required
@require_POST
def staff_queue_decide(request: HtmxHttpRequest) -> HttpResponse:
    """One decision from the queue: keep the model's label (recorded as a staff confirmation) or set another."""
    placement = get_object_or_404(
        STAFF.placements(request).select_related("listing__sitemap"), pk=request.POST.get("placement", 0)
    )
    task, label = request.POST.get("task", ""), request.POST.get("label", "")
    try:
        decision = review_decision_record(placement=placement, task=task, label=label, user=_user(request))
    except FixError as exc:
        if request.htmx:
            return HttpResponse(format_html('<span class="failed">{}</span>', exc), status=400)
        messages.error(request, str(exc))
        return redirect("reviews:staff-queue")
    if request.htmx:
        return HttpResponse(format_html('<span class="ok">{}: {} ✓</span>', task, decision.new_label))
    return redirect("reviews:staff-queue")
