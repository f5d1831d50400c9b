"""The review queue (staff): what most needs a human, a page at a time, filtered by advertiser, task and reason, with
one-key decisions and an undo key for the last one. Views parse, call reviews.health.queue and the decision
services, and render; decisions answer htmx with the decision and the queue's progress (out of band)."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.views.decorators.http import require_POST, require_safe

from catalog.models import TASK_LABELS, Advertiser, Task

from .guards import staff_required
from .health import QUEUE_KINDS, queue_decided_today, review_queue, review_queue_count
from .models import ChangeSet
from .services import FixError, review_decision_record
from .services.decisions import last_decision, review_decision_undo
from .views import STAFF, HtmxHttpRequest

QUEUE_PAGE = 50
MAX_PAGE = 100  # a reviewer never pages 5,000 items deep: narrow the queue with its filters instead


@dataclass(frozen=True)
class QueueParams:
    """The queue's filters as the page's form and links send them; anything malformed is left out."""

    advertiser: int | None = None
    task: str = ""
    reason: str = ""

    @classmethod
    def from_params(cls, params: Any) -> QueueParams:
        advertiser = str(params.get("advertiser", ""))
        task, reason = params.get("task", ""), params.get("reason", "")
        return cls(
            advertiser=int(advertiser) if advertiser.isdigit() else None,
            task=task if task in Task.values else "",
            reason=reason if reason in QUEUE_KINDS else "",
        )

    @property
    def advertiser_ids(self) -> list[int] | None:
        return None if self.advertiser is None else [self.advertiser]

    def as_params(self) -> dict[str, str]:
        values = {"advertiser": str(self.advertiser or ""), "task": self.task, "reason": self.reason}
        return {name: value for name, value in values.items() if value}

    def queue_url(self, **extra: object) -> str:
        query = urlencode({**self.as_params(), **{k: str(v) for k, v in extra.items()}})
        return reverse("reviews:staff-queue") + (f"?{query}" if query else "")


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - staff_required requires a logged-in user
    return request.user


def _page_number(value: object) -> int:
    text = str(value or "1")
    return max(1, min(int(text), MAX_PAGE)) if text.isdigit() else 1


def _progress(params: QueueParams) -> dict[str, Any]:
    """What the queue's progress line shows: decided today, remaining, and the share done."""
    remaining = review_queue_count(user_advertiser_ids=params.advertiser_ids, task=params.task, kind=params.reason)
    decided = queue_decided_today(user_advertiser_ids=params.advertiser_ids, task=params.task)
    return {
        "remaining": remaining,
        "decided_today": decided,
        "progress_total": decided + remaining,
        "progress_share": decided / (decided + remaining) if decided + remaining else None,
    }


def _progress_html(request: HttpRequest, params: QueueParams) -> str:
    """The progress line, to swap in place (out of band) after a decision or an undo."""
    context = {**_progress(params), "oob": True}
    return render_to_string("reviews/_partials/queue_progress.html", context, request=request)


@staff_required
@require_safe
def staff_queue(request: HtmxHttpRequest) -> HttpResponse:
    params = QueueParams.from_params(request.GET)
    number = _page_number(request.GET.get("page"))
    items = review_queue(
        user_advertiser_ids=params.advertiser_ids,
        task=params.task,
        kind=params.reason,
        limit=QUEUE_PAGE,
        offset=(number - 1) * QUEUE_PAGE,
    )
    progress = _progress(params)
    pages = min(MAX_PAGE, max(1, ceil(progress["remaining"] / QUEUE_PAGE)))
    context = {
        **progress,
        "items": items,
        "labels": dict(TASK_LABELS),
        "params": params,
        "advertisers": Advertiser.objects.order_by("name", "id").only("id", "name"),
        "tasks": Task.choices,
        "reasons": list(QUEUE_KINDS.items()),
        "number": number,
        "pages": pages,
        "first_index": (number - 1) * QUEUE_PAGE + 1,
        "last_index": (number - 1) * QUEUE_PAGE + len(items),
        "previous_url": params.queue_url(page=number - 1) if number > 1 else "",
        "next_url": params.queue_url(page=number + 1) if number < pages else "",
        "filtered": bool(params.as_params()),
    }
    return render(request, "reviews/queue.html", context)


@staff_required
@require_POST
def staff_queue_decide(request: HtmxHttpRequest) -> HttpResponse:
    """One decision from the queue: keep the model's label (recorded as a staff confirmation) or set another. It is
    one ChangeSet (kind "decision"), which the undo key writes back."""
    params = QueueParams.from_params(request.POST)
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
        return redirect(params.queue_url())
    if request.htmx:
        answer = format_html(
            '<span class="ok" data-change-set="{}">{}: {} ✓ <span class="muted">(<kbd>u</kbd> undoes)</span></span>',
            decision.change_set_id or "",
            task,
            decision.new_label,
        )
        return HttpResponse(answer + _progress_html(request, params))
    return redirect(params.queue_url())


@staff_required
@require_POST
def staff_queue_undo(request: HtmxHttpRequest) -> HttpResponse:
    """Undoes a decision of the queue: the one posted (`change_set`), else the user's latest one not undone."""
    params = QueueParams.from_params(request.POST)
    posted = str(request.POST.get("change_set", ""))
    decision: ChangeSet | None
    if posted.isdigit():
        decision = get_object_or_404(ChangeSet, pk=int(posted), kind=ChangeSet.Kind.DECISION)
    else:
        decision = last_decision(user=_user(request))
    try:
        if decision is None:
            raise FixError("no decision of yours to undo")
        result = review_decision_undo(change_set=decision, user=_user(request))
    except FixError as exc:
        if request.htmx:
            return HttpResponse(format_html('<span class="failed">{}</span>', exc), status=409)
        messages.error(request, str(exc))
        return redirect(params.queue_url())
    fix = decision.fix_rows.order_by("id").first()
    if result.written > result.withdrawn and fix is not None:
        text = format_html("undone: {} back to {}", fix.task, fix.old_label)
    elif fix is not None and fix.old_label:  # withdrawn: no fix in effect, the model's (or the scrape's) tag again
        text = format_html("undone: {} is asked again (no fix: {} again)", fix.task, fix.old_label)
    else:
        text = format_html("undone: {} is asked again", fix.task if fix else "the question")
    if request.htmx:
        answer = format_html('<span class="muted" data-undone="{}">{}</span>', decision.pk, text)
        return HttpResponse(answer + _progress_html(request, params))
    messages.success(request, text)
    return redirect(params.queue_url())
