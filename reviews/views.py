"""Screens: staff review (every advertiser) and the advertiser portal (their own data only), server-rendered
with htmx for in-place updates. Views parse, call selectors and services, and render."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST, require_safe
from django_htmx.middleware import HtmxDetails

from catalog.models import TASK_LABELS, Placement, Sitemap, Task
from classifier.contract import VEHICLE_KINDS

from .bulk_confirm import SAMPLE as BULK_SAMPLE
from .bulk_confirm import BulkRequest
from .grid import GridFilters, Paging, similar_of, sitemap_grid, sitemap_placements
from .guards import staff_required
from .models import CONFIRMATION, ChangeSet, ManualFix
from .selectors import image_history, user_can_fix
from .services import FixError, manual_fix_revert
from .services.change_sets import change_set_apply
from .services.fixes import Change
from .templatetags.reviews_tags import LOW_CONFIDENCE

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


@require_safe
def home(request: HtmxHttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    return redirect("reviews:staff-advertisers" if request.user.is_staff else "reviews:portal-home")


def _grid(
    request: HtmxHttpRequest, realm: Realm, sitemap_id: int, extra: dict[str, object] | None = None
) -> HttpResponse:
    sitemap = get_object_or_404(realm.sitemaps(request), pk=sitemap_id)
    filters = GridFilters.from_params(request.GET)
    page = sitemap_grid(sitemap=sitemap, filters=filters, paging=Paging.from_params(request.GET, filters=filters))
    context = _grid_context(request, realm, sitemap, filters) | {"page": page} | (extra or {})
    template = "reviews/_partials/grid.html" if request.htmx else "reviews/sitemap_grid.html"
    return render(request, template, context)


def _grid_context(request: HtmxHttpRequest, realm: Realm, sitemap: Sitemap, filters: GridFilters) -> dict[str, object]:
    """What the grid and its bulk confirmation show besides the page itself."""
    density = request.GET.get("density", "")
    similar = similar_of(sitemap, filters)
    return {
        "similar": similar,
        "similar_url": realm.url("image", filters.similar_to[0]) if similar else "",
        "realm": realm,
        "sitemap": sitemap,
        "filters": filters,
        "query": urlencode(filters.as_pairs()),
        "tasks": Task.choices,
        "labels": TASK_LABELS[filters.task],
        "vocabulary": [(task, TASK_LABELS[task]) for task in Task.values],
        "tag_rows": grid_tag_rows(filters),
        "can_edit": realm.can_edit(request, sitemap),
        "fixes_url": realm.url("fixes", sitemap.pk),
        "grid_url": realm.url("grid", sitemap.pk),
        "changes_url": f"{realm.url('changes')}?{urlencode({'sitemap': sitemap.pk})}",
        "density": density if density in ("compact", "full") else "compact",
        "low_confidence": LOW_CONFIDENCE,
        "sources": ["fix", "scrape", "model", "failed", "unknown"],
        "sorts": ["position", "confidence", "margin", "newest"],
        "vehicle_kinds": VEHICLE_KINDS,
    }


@dataclass(frozen=True)
class TagRow:
    """One "and <task> is / is not <label>" condition of the grid's filter form."""

    task: str
    label: str
    negate: bool

    @property
    def param(self) -> str:
        return f"{self.task}:{'!' if self.negate else ''}{self.label}"


def grid_tag_rows(filters: GridFilters) -> list[TagRow]:
    """The filter's tag conditions (GridFilters.tags: "<task>:<label>" or "<task>:!<label>", from repeated `tag`
    parameters), for the form to show them again."""
    rows = []
    for condition in filters.tags:
        task, _, label = condition.partition(":")
        rows.append(TagRow(task=task, label=label.removeprefix("!"), negate=label.startswith("!")))
    return rows


def _changes(values: list[str], by_id: dict[int, Placement]) -> list[Change]:
    """Changes from the grid form's "<placement>:<task>:<label>" values, for the sitemap's placements only."""
    parsed = [value.split(":", 2) for value in values if value.count(":") >= 2]
    return [
        Change(by_id[int(pid)], task, label)
        for pid, task, label in parsed
        if pid.isdigit() and int(pid) in by_id and label
    ]


def _apply_fixes(request: HtmxHttpRequest, realm: Realm, sitemap_id: int) -> HttpResponse:
    """The grid's "Update": every pending change and confirmation ("reviewed, no change") of the page, or one label
    for a selection or for everything the current filter matches, in one transaction, recorded as one ChangeSet (so
    it can be undone as a whole). A label for everything the filter matches is written only with a token of the
    confirmation step (bulk_confirmation): the count and a sample were shown for this very filter and count."""
    sitemap = get_object_or_404(realm.sitemaps(request), pk=sitemap_id)
    if not realm.can_edit(request, sitemap):
        raise PermissionDenied("viewers cannot change tags")
    filters = GridFilters.from_params(request.POST)
    placements = sitemap_placements(sitemap=sitemap, filters=GridFilters()).select_related("listing__sitemap")
    posted = request.POST.getlist("change") + request.POST.getlist("confirm")
    by_id = placements.in_bulk([int(pid) for pid, *_ in (v.split(":", 1) for v in posted) if pid.isdigit()])
    changes = _changes(request.POST.getlist("change"), by_id)
    confirmations = _changes(request.POST.getlist("confirm"), by_id)
    bulk_label, bulk_task = request.POST.get("bulk_label", ""), request.POST.get("bulk_task", filters.task)
    kind, summary = ChangeSet.Kind.SAVE, _save_summary(sitemap, changes, confirmations)
    if bulk_label:
        kind = ChangeSet.Kind.BULK
        if request.POST.get("select_all") == "filter":
            matching = sitemap_placements(sitemap=sitemap, filters=filters)
            bulk = BulkRequest(sitemap=sitemap, user=_user(request), filters=filters, task=bulk_task, label=bulk_label)
            problem = bulk.check(request.POST.get("bulk_token", ""), matching)
            if problem is not None:
                return _bulk_confirmation(request, realm, bulk, matching, problem)
            targets: Iterable[Placement] = matching.select_related("listing__sitemap")[:BULK_LIMIT]
            summary = f"{sitemap}: {bulk_task} set to {bulk_label} on all {bulk.count} images of {bulk.describe()}"
        else:
            ids = [int(pid) for pid in request.POST.getlist("selected") if pid.isdigit()]
            targets = placements.filter(pk__in=ids)
            summary = f"{sitemap}: {bulk_task} set to {bulk_label} on {len(ids)} selected images"
        # Every target is a confirmation too: where the label is in effect already, a human looked and agreed (a
        # fix to the same label, as the API and the queue record), else a change. First, so they beat a confirmation
        # of the page on the same tag; a change of the page to the same tag still beats them.
        confirmations = [Change(p, bulk_task, bulk_label) for p in targets if p.asset_id] + confirmations
    change_set = None
    try:
        change_set = change_set_apply(
            kind=kind, advertiser_id=sitemap.advertiser_id, changes=changes, confirmations=confirmations,
            user=_user(request), source=realm.source, summary=summary,
        )  # fmt: skip
    except FixError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _saved_message(change_set))
    if request.htmx:
        request.GET = request.POST.copy()  # type: ignore[assignment]  # re-render the same page in place
        extra: dict[str, object] = {
            "change_set": change_set,
            "undo_url": realm.url("change-undo", change_set.pk) if change_set else "",
        }
        return _grid(request, realm, sitemap.pk, extra)
    paging = Paging.from_params(request.POST, filters=filters).as_params(filters=filters)  # the same page again
    url = f"{realm.url('grid', sitemap.pk)}?{urlencode([*filters.as_pairs(), *paging.items()])}"
    return HttpResponseRedirect(url)


def _save_summary(sitemap: Sitemap, changes: list[Change], confirmations: list[Change]) -> str:
    return f"{sitemap}: {len(changes)} tag{pluralize(len(changes))} changed, {len(confirmations)} marked reviewed"


def _saved_message(change_set: ChangeSet | None) -> str:
    """ "2 tags changed, 1 marked reviewed"; a bulk retag names its confirmations first when it confirmed more than
    it changed ("60 tags confirmed (already that label: marked reviewed), 0 changed")."""
    if change_set is None:
        return "0 tags changed"
    confirmed = change_set.fix_rows.filter(CONFIRMATION).count()  # a bulk retag may hold thousands of rows
    changed = change_set.fixes - confirmed
    if change_set.kind == ChangeSet.Kind.BULK and confirmed:
        return (
            f"{confirmed} tag{pluralize(confirmed)} confirmed (already that label: marked reviewed), {changed} changed"
        )
    text = f"{changed} tag{pluralize(changed)} changed"
    return f"{text}, {confirmed} marked reviewed" if confirmed else text


def _bulk_confirmation(
    request: HtmxHttpRequest, realm: Realm, bulk: BulkRequest, matching: QuerySet[Placement], problem: str
) -> HttpResponse:
    """The step before a bulk retag of everything the filter matches: how many, a sample of them, and a token bound
    to this filter, label and count (a changed filter or count asks again instead of writing)."""
    context = _grid_context(request, realm, bulk.sitemap, bulk.filters) | {
        "bulk": bulk,
        "problem": problem,
        "token": bulk.token() if bulk.count <= BULK_LIMIT else "",
        "too_many": bulk.count > BULK_LIMIT,
        "bulk_limit": BULK_LIMIT,
        "sample": list(matching.select_related("asset")[:BULK_SAMPLE]),
        "carried_changes": request.POST.getlist("change"),
        "carried_confirmations": request.POST.getlist("confirm"),
        "paging": Paging.from_params(request.POST, filters=bulk.filters).as_params(filters=bulk.filters),
    }
    template = "reviews/_partials/bulk_confirm.html" if request.htmx else "reviews/bulk_confirm.html"
    return render(request, template, context)


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
