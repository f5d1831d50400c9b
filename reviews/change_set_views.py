"""Recent changes: the change sets (a grid save, a bulk retag, a queue decision, an undo) newest first, each one
undoable as a whole. Staff see every advertiser's (all, one advertiser's or one sitemap's); the portal a user's own
advertisers' only (reviews.views.Realm), and undo only what was made in the portal (a staff change is listed without
Undo). Undo writes new rows (reviews.services.change_sets.change_set_undo)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from .guards import staff_required
from .models import ChangeSet
from .services.change_sets import (
    change_set_undo,
    change_sets_of_sitemap,
    change_sets_undo_allowed,
    change_sets_visible_to,
)
from .services.decisions import review_decision_undo
from .services.fixes import FixError
from .views import PORTAL, STAFF, HtmxHttpRequest, Realm

LIMIT = 100


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _changes(request: HtmxHttpRequest, realm: Realm) -> HttpResponse:
    user = _user(request)
    queryset = change_sets_visible_to(user, portal=realm is PORTAL)
    sitemap = None
    if (sitemap_id := _int(request.GET.get("sitemap"))) is not None:
        sitemap = get_object_or_404(realm.sitemaps(request), pk=sitemap_id)
        queryset = change_sets_of_sitemap(queryset, sitemap=sitemap)
    elif (advertiser_id := _int(request.GET.get("advertiser"))) is not None:
        queryset = queryset.filter(advertiser_id=advertiser_id)
    rows = list(queryset[:LIMIT])
    allowed = change_sets_undo_allowed(user, rows, portal=realm is PORTAL)
    context = {
        "realm": realm,
        "rows": [(row, allowed[row.pk] and _undoable(row)) for row in rows],
        "sitemap": sitemap,
        "limit": LIMIT,
        "next": request.get_full_path(),
    }
    return render(request, "reviews/change_sets.html", context)


def _undoable(row: ChangeSet) -> bool:
    """Not undone yet (the reverse one-to-one is missing), and it wrote something."""
    return row.fixes > 0 and not hasattr(row, "undone_by")


def _user(request: HtmxHttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - the decorators require a logged-in user
    return request.user


def _undo(request: HtmxHttpRequest, realm: Realm, change_set_id: int) -> HttpResponse:
    """Undoes a change set; back to where the request came from (`next`: the grid after its `u` key, or the list)."""
    user = _user(request)
    portal = realm is PORTAL
    change_set = get_object_or_404(change_sets_visible_to(user, portal=portal), pk=change_set_id)
    if not change_sets_undo_allowed(user, [change_set], portal=portal)[change_set.pk]:
        raise PermissionDenied("viewers cannot change tags, and the portal undoes only the changes made in it")
    try:
        if change_set.kind == ChangeSet.Kind.DECISION:  # the queue's own undo: the question comes back to the queue
            result = review_decision_undo(change_set=change_set, user=user)
        else:
            result = change_set_undo(change_set=change_set, user=user, source=realm.source)
    except FixError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, result.message())
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect(realm.url("changes"))


@staff_required
@require_safe
def staff_changes(request: HtmxHttpRequest) -> HttpResponse:
    return _changes(request, STAFF)


@staff_required
@require_POST
def staff_change_undo(request: HtmxHttpRequest, change_set_id: int) -> HttpResponse:
    return _undo(request, STAFF, change_set_id)


@login_required
@require_safe
def portal_changes(request: HtmxHttpRequest) -> HttpResponse:
    return _changes(request, PORTAL)


@login_required
@require_POST
def portal_change_undo(request: HtmxHttpRequest, change_set_id: int) -> HttpResponse:
    return _undo(request, PORTAL, change_set_id)
