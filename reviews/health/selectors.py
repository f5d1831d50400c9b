"""Reads for the staff screens: every advertiser's health, and the review queue (what most needs a human first).

Both run a constant number of grouped or limited queries, whatever the number of advertisers and images.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    DateTimeField,
    Exists,
    F,
    FloatField,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from catalog.models import Advertiser, Placement, Run, Task
from classifier.models import Classification
from classifier.training.metrics import LocalAccuracy
from reviews.accuracy import local_accuracies
from reviews.crosscheck import reused_pictures
from reviews.effective import (
    PLACEHOLDER,
    PLACEMENT_ADVERTISER,
    ColumnNames,
    annotate_effective,
    latest_fix,
    scrape_color,
)
from reviews.expressions import (
    active_heads,
    advertiser_conflicts,
    disagreements,
    label_counts,
    live_placements,
    model_result,
    shares_from_counts,
)
from reviews.models import ManualFix

FIXES_WINDOW = timedelta(days=30)
# The review queue: below this top-two margin (or this confidence) the model hesitated.
QUEUE_MARGIN = 0.2
QUEUE_CONFIDENCE = 0.5
PLACEHOLDER_MOOT = (Task.COLOR, Task.INTENT)


@dataclass(frozen=True)
class RunSummary:
    id: int
    sitemap_id: int
    status: str
    status_display: str
    finished_at: datetime | None
    health_flags: list[dict[str, Any]]

    @property
    def messages(self) -> list[str]:
        return [flag["message"] for flag in self.health_flags if isinstance(flag, dict) and flag.get("message")]


@dataclass(frozen=True)
class AdvertiserHealth:
    advertiser: Advertiser
    sitemaps: int
    last_run: RunSummary | None
    images: int  # live placements
    failed_images: int  # live placements whose image could not be fetched
    image_type_shares: dict[str, float] = field(default_factory=dict)  # over the live images with a label
    fixes_last_30_days: int = 0  # staff, advertiser and API fixes; carried ones left out
    model_tags: int = 0  # active-model results (all tasks) of the advertiser's live images
    overturned: int = 0  # of which the fix in effect says something else
    disagreements: int = 0  # (asset, task) where the advertiser's and staff's latest fixes differ, unsettled
    advertiser_conflicts: int = 0  # (asset, task) where another advertiser labels the same picture otherwise
    accuracy: dict[str, LocalAccuracy] = field(default_factory=dict)  # task -> on the tags a human looked at

    @property
    def overturned_share(self) -> float | None:
        """Share of the model's tags (reviewed or not) that a fix overturned; None without model tags."""
        return self.overturned / self.model_tags if self.model_tags else None

    @property
    def image_type_accuracy(self) -> LocalAccuracy | None:
        return self.accuracy.get(Task.IMAGE_TYPE)


def advertisers_health() -> list[AdvertiserHealth]:
    """Every advertiser with its health, in a constant number of queries whatever the number of advertisers."""
    last_run = Run.objects.filter(sitemap__advertiser_id=OuterRef("pk")).order_by("-created_at", "-id")
    advertisers = list(
        Advertiser.objects.annotate(
            sitemap_count=Count("sitemaps", distinct=True), last_run_id=Subquery(last_run.values("id")[:1])
        ).order_by("name", "id")
    )
    runs = {
        run.pk: RunSummary(
            run.pk, run.sitemap_id, run.status, run.get_status_display(), run.finished_at, run.health_flags
        )
        for run in Run.objects.filter(pk__in=[a.last_run_id for a in advertisers if a.last_run_id]).only(
            "id", "sitemap_id", "status", "finished_at", "health_flags"
        )
    }
    images: dict[int, dict[str, Any]] = {
        row["advertiser"]: dict(row)
        for row in live_placements()
        .values(advertiser=F(PLACEMENT_ADVERTISER))
        .annotate(images=Count("id"), failed=Count("id", filter=Q(status=Placement.Status.FAILED)))
        .order_by()
    }
    heads = active_heads()
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for row in label_counts(live_placements(), Task.IMAGE_TYPE, heads, PLACEMENT_ADVERTISER):
        counts[row[PLACEMENT_ADVERTISER]][row["label"]] = row["images"]
    fixes = dict(
        ManualFix.objects.filter(created_at__gte=timezone.now() - FIXES_WINDOW)
        .exclude(source=ManualFix.Source.CARRIED)
        .values_list("advertiser_id")
        .annotate(fixes=Count("id"))
        .order_by()
    )
    accuracy = {row["advertiser"]: row for row in _model_tags_by_advertiser(heads)}
    conflicts = dict(disagreements().values_list("advertiser_id").annotate(tags=Count("id")).order_by())
    crossed = dict(advertiser_conflicts().values_list("advertiser_id").annotate(tags=Count("id")).order_by())
    accuracies: dict[int, dict[str, LocalAccuracy]] = defaultdict(dict)
    for (advertiser_id, task), reviewed in local_accuracies(heads=heads).items():
        accuracies[advertiser_id][task] = reviewed
    out = []
    for advertiser in advertisers:
        pk = advertiser.pk
        out.append(
            AdvertiserHealth(
                advertiser=advertiser,
                sitemaps=advertiser.sitemap_count,
                last_run=runs.get(advertiser.last_run_id),
                images=images.get(pk, {}).get("images", 0),
                failed_images=images.get(pk, {}).get("failed", 0),
                image_type_shares=shares_from_counts(counts.get(pk, {})),
                fixes_last_30_days=fixes.get(pk, 0),
                model_tags=accuracy.get(pk, {}).get("tags", 0),
                overturned=accuracy.get(pk, {}).get("overturned", 0),
                disagreements=conflicts.get(pk, 0),
                advertiser_conflicts=crossed.get(pk, 0),
                accuracy=accuracies.get(pk, {}),
            )
        )
    return out


def _model_tags_by_advertiser(heads: dict[str, int]) -> list[dict[str, Any]]:
    """Per advertiser: active-model results of its live images (one per asset and task), and how many of them the
    fix in effect for (advertiser, asset, task) overturned."""
    if not heads:
        return []
    advertiser = "asset__placements__" + PLACEMENT_ADVERTISER
    fix_label = (
        ManualFix.objects.filter(
            advertiser_id=OuterRef(advertiser), asset_id=OuterRef("asset_id"), task=OuterRef("task")
        )
        .order_by("-created_at", "-id")
        .values("new_label")[:1]
    )
    return [
        dict(row)
        for row in Classification.objects.filter(
            reduce(or_, (Q(task=task, model_version_id=version) for task, version in heads.items())),
            status=Classification.Status.OK,
            asset__placements__is_gone=False,
            asset__placements__listing__is_gone=False,
            asset__placements__status=Placement.Status.OK,
        )
        .annotate(fix_label=Subquery(fix_label, output_field=CharField()))
        .values(advertiser=F(advertiser))
        .annotate(
            tags=Count("id", distinct=True),
            overturned=Count("id", distinct=True, filter=Q(fix_label__isnull=False) & ~Q(fix_label=F("label"))),
        )
        .order_by()
    ]


@dataclass(frozen=True)
class QueueItem:
    """One (advertiser, asset, task) that needs a human, shown through one of its live placements."""

    placement: Placement  # with listing__sitemap__advertiser and asset loaded
    advertiser_id: int
    asset_id: int
    task: str
    kind: str  # "failed", "conflict", "disagreement" or "hesitated"
    priority: float
    reason: str
    model_label: str | None
    confidence: float | None
    margin: float | None
    fix_label: str | None
    fix_source: str

    @property
    def placement_id(self) -> int:
        return self.placement.pk


def review_queue(*, user_advertiser_ids: list[int] | None = None, limit: int = 50) -> list[QueueItem]:
    """The images that most need a human, across sitemaps, most urgent first; one query per task (plus one).

    Priority: 3 the model failed on the image; 2.5 a conflict staff have not settled here (the advertiser's and
    staff's latest fixes disagree, or another advertiser labels the same picture otherwise); 1.5 to 2 a picture
    reused in many listings that the model calls neither Placeholder nor Stock (the more listings, the higher); 2 to 2.4
    the fix in effect overturns the model (the more confident the model, the higher); 1 - margin the model
    hesitated (margin under QUEUE_MARGIN or confidence under QUEUE_CONFIDENCE, no fix, no scrape color).
    Left out: what staff decided after the model's result (the latest fix is staff's and newer than the result),
    and color or intent questions about images whose effective type is Placeholder.
    `user_advertiser_ids` (None: every advertiser) restricts the queue to those advertisers.
    """
    heads = active_heads()
    items = []
    for task in Task.values:
        items += _queue_of_task(task, heads, user_advertiser_ids, limit)
    items += _reused_pictures(user_advertiser_ids, limit)
    items.sort(key=lambda item: (-item.priority, item.placement.pk, Task.values.index(item.task)))
    return items[:limit]


def _reused_pictures(advertiser_ids: list[int] | None, limit: int) -> list[QueueItem]:
    """Pictures used in many listings that the model calls neither Placeholder nor Stock, unless a human already
    fixed or confirmed the representative's image type (one query more than reused_pictures)."""
    reused = reused_pictures(advertiser_ids=advertiser_ids, limit=limit)
    looked_at = set(
        ManualFix.objects.filter(
            task=Task.IMAGE_TYPE, asset_id__in=[row.placement.asset_id for row in reused], source__in=ManualFix.HUMAN
        ).values_list("advertiser_id", "asset_id")
    )
    items = []
    for row in reused:
        placement = row.placement
        advertiser_id = placement.listing.sitemap.advertiser_id
        if (advertiser_id, placement.asset_id) in looked_at:
            continue
        where = f"{row.listings} listings" + (f" of {row.advertisers} advertisers" if row.advertisers > 1 else "")
        items.append(
            QueueItem(
                placement=placement,
                advertiser_id=advertiser_id,
                asset_id=placement.asset_id or 0,
                task=Task.IMAGE_TYPE,
                kind="reused",
                priority=round(1.5 + min(row.listings, 50) / 100, 4),
                reason=f"appears in {where}, and the model calls it {row.model_label}: a placeholder or stock render?",
                model_label=row.model_label,
                confidence=None,
                margin=None,
                fix_label=None,
                fix_source="",
            )
        )
    return items


def _queue_of_task(task: str, heads: dict[str, int], advertiser_ids: list[int] | None, limit: int) -> list[QueueItem]:
    placements = live_placements().filter(status=Placement.Status.OK, asset__isnull=False)
    if advertiser_ids is not None:
        placements = placements.filter(**{f"{PLACEMENT_ADVERTISER}__in": advertiser_ids})
    # One representative per (advertiser, asset): its first live placement.
    earlier = live_placements().filter(
        status=Placement.Status.OK,
        asset_id=OuterRef("asset_id"),
        **{PLACEMENT_ADVERTISER: OuterRef(PLACEMENT_ADVERTISER)},
        id__lt=OuterRef("id"),
    )
    result = model_result(task, heads)
    fix = latest_fix(task)

    def first(queryset: Any, column: str, output_field: Any = None) -> Subquery:
        return Subquery(queryset.values(column)[:1], output_field=output_field)

    placements = placements.filter(~Exists(earlier)).annotate(
        model_status=first(result, "status"),
        model_label=first(result, "label"),
        model_confidence=first(result, "confidence"),
        model_margin=first(result, "margin"),
        model_error=first(result, "error"),
        model_at=first(result, "updated_at", DateTimeField()),
        fix_label=first(fix, "new_label"),
        fix_source=first(fix, "source"),
        fix_at=first(fix, "created_at", DateTimeField()),
        fix_settles=first(fix, "settles", BooleanField()),
        advertiser_label=first(latest_fix(task, sources=ManualFix.ADVERTISER_SIDE), "new_label"),
        staff_label=first(latest_fix(task, sources=ManualFix.STAFF_SIDE), "new_label"),
        configured_color=scrape_color() if task == Task.COLOR else Value(None, output_field=CharField()),
        other_advertiser=Exists(
            advertiser_conflicts().filter(
                advertiser_id=OuterRef(PLACEMENT_ADVERTISER), asset_id=OuterRef("asset_id"), task=task
            )
        ),
    )
    if task in PLACEHOLDER_MOOT:  # a placeholder has no color and no shopping intent to ask about
        type_label = ColumnNames(Task.IMAGE_TYPE).label  # NULL (no type yet) is no placeholder: keep it
        placements = annotate_effective(placements, [Task.IMAGE_TYPE], heads).filter(
            Q(**{f"{type_label}__isnull": True}) | ~Q(**{type_label: PLACEHOLDER})
        )
    ok = Q(model_status=Classification.Status.OK)
    conflict = (
        Q(advertiser_label__isnull=False, staff_label__isnull=False)
        & ~Q(advertiser_label=F("staff_label"))
        & ~Q(fix_settles=True)
    )
    overturned = ok & Q(fix_label__isnull=False) & ~Q(fix_label=F("model_label"))
    hesitated = (
        ok
        & Q(fix_label__isnull=True, configured_color__isnull=True)
        & (Q(model_margin__lt=QUEUE_MARGIN) | Q(model_confidence__lt=QUEUE_CONFIDENCE))
    )
    decided = Q(fix_source__in=ManualFix.STAFF_SIDE) & (Q(model_at__isnull=True) | Q(fix_at__gte=F("model_at")))
    placements = (
        placements.annotate(
            kind=Case(
                When(model_status=Classification.Status.FAILED, then=Value("failed")),
                When(conflict, then=Value("conflict")),
                When(other_advertiser=True, then=Value("advertisers")),
                When(overturned, then=Value("disagreement")),
                When(hesitated, then=Value("hesitated")),
                default=Value(None),
                output_field=CharField(),
            ),
            # A conflict stays until staff settle it in the queue, whoever fixed the scope last.
            decided=Case(
                When(Q(kind__in=("conflict", "advertisers")), then=Value(False)),
                When(decided, then=Value(True)),
                default=Value(False),
                output_field=BooleanField(),
            ),
        )
        .filter(kind__isnull=False, decided=False)
        .annotate(
            priority=Case(
                When(kind="failed", then=Value(3.0)),
                When(kind__in=("conflict", "advertisers"), then=Value(2.5)),
                When(kind="disagreement", then=Value(2.0) + Value(0.4) * F("model_confidence")),
                default=Value(1.0) - Coalesce(F("model_margin"), F("model_confidence")),
                output_field=FloatField(),
            )
        )
        .select_related("listing__sitemap__advertiser", "asset")
        .order_by(F("priority").desc(), "id")[:limit]
    )
    return [_queue_item(placement, task) for placement in placements]


def _queue_item(placement: Any, task: str) -> QueueItem:
    kind = placement.kind
    if kind == "failed":
        reason = f"inference failed: {placement.model_error or 'no reason recorded'}"[:300]
    elif kind == "conflict":
        reason = f"advertiser and staff disagree: {placement.advertiser_label} vs {placement.staff_label}"
    elif kind == "advertisers":
        reason = f"another advertiser labels the same picture otherwise (this one: {placement.fix_label})"
    elif kind == "disagreement":
        reason = (
            f"fix ({placement.fix_source}) says {placement.fix_label}, "
            f"the model says {placement.model_label} ({placement.model_confidence:.2f})"
        )
    elif placement.model_margin is not None and placement.model_margin < QUEUE_MARGIN:
        reason = f"model hesitated: margin {placement.model_margin:.2f}"
    else:
        reason = f"model unsure: confidence {placement.model_confidence:.2f}"
    return QueueItem(
        placement=placement,
        advertiser_id=placement.listing.sitemap.advertiser_id,
        asset_id=placement.asset_id,
        task=task,
        kind=kind,
        priority=round(placement.priority, 4),
        reason=reason,
        model_label=placement.model_label or None,
        confidence=placement.model_confidence,
        margin=placement.model_margin,
        fix_label=placement.fix_label,
        fix_source=placement.fix_source or "",
    )
