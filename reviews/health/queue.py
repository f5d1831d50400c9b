"""The review queue: the images that most need a human first, across sitemaps, with its count and the day's progress.

Every read runs a constant number of queries (one per task, plus a few), whatever the number of images; a page beyond
the first reads the items before it too (the order is by priority across tasks), which stays cheap for the depths a
reviewer reaches.

An undone decision (a ChangeSet undone by another, reviews.services.change_sets) is as if it had not been made: the
queue reads a scope's fixes without the fixes of undone change sets and without the fixes that undid them, so the
question comes back exactly as it was asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    CharField,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    JSONField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from catalog.models import Placement, Task
from classifier.models import Classification, Novelty
from reviews.audit import audited
from reviews.crosscheck import reused_pictures
from reviews.effective import (
    PLACEHOLDER,
    PLACEMENT_ADVERTISER,
    ColumnNames,
    annotate_effective,
    latest_fix,
    scrape_color,
)
from reviews.expressions import active_heads, advertiser_conflicts, live_placements, model_result
from reviews.models import ChangeSet, ManualFix, label_in_effect

# Below this top-two margin (or this confidence) the model hesitated.
QUEUE_MARGIN = 0.2
QUEUE_CONFIDENCE = 0.5
# A placeholder has no color and no shopping intent to ask about.
PLACEHOLDER_MOOT = (Task.COLOR, Task.INTENT)
# Why an item is in the queue (QueueItem.kind), most urgent first, as the queue's filter names them.
QUEUE_KINDS = {
    "failed": "the model failed",
    "conflict": "advertiser and staff disagree",
    "advertisers": "advertisers disagree",
    "disagreement": "a fix overturns the model",
    "reused": "a picture reused in many listings",
    "unfamiliar": "unlike what the model knows",
    "audit": "a random check: keeps the accuracy honest",
    "hesitated": "the model hesitated",
}
# An audited image no human labelled (reviews.audit) ranks just above the most hesitant tag, whatever the confidence.
AUDIT_PRIORITY = 1.0
# The model-side questions, ranked by what a label would teach the model (teaching_value) and spread over the
# near-duplicate clusters (QUEUE_PER_CLUSTER). The audit sample keeps its fixed place: it measures, it does not teach.
TEACHING_KINDS = ("unfamiliar", "hesitated")
# Not a question: an image the model tagged with confidence, nobody labelled and nothing else asks about. Only
# teaching_order reads it (the rest of an advertiser's images, after its questions), never the queue.
CONFIDENT = "confident"


def teaching_value() -> Any:
    """What a human label of the image would teach the model, as the priority of the unfamiliar and hesitated
    questions (a SQL expression over the queue's annotations; the one place the formula lives):

        0.5 + (uncertainty + unfamiliarity) / 2
        uncertainty   = 1 - top-two margin (1 - confidence where no margin was recorded; 0 where neither was)
        unfamiliarity = 1 - 1 / Novelty ratio where the ratio is above 1 (classifier.services.drift), else 0

    Both terms lie in [0, 1], so the value lies in [0.5, 1.5): a hesitant image of a style the model never saw
    ranks above one that is merely hesitant or merely unfamiliar, and the most hesitant familiar image (margin 0)
    reaches AUDIT_PRIORITY."""
    uncertainty = Value(1.0) - Coalesce(F("model_margin"), F("model_confidence"), Value(1.0))
    unfamiliarity = Case(
        When(novelty__gt=1.0, then=Value(1.0) - Value(1.0) / F("novelty")),
        default=Value(0.0),
        output_field=FloatField(),
    )
    return Value(0.5) + (uncertainty + unfamiliarity) / Value(2.0)


def per_cluster() -> int:
    """settings.QUEUE_PER_CLUSTER, checked: how many images of one near-duplicate cluster the model-side questions
    ask before every other cluster has had its turn."""
    value = getattr(settings, "QUEUE_PER_CLUSTER", 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ImproperlyConfigured(f"QUEUE_PER_CLUSTER must be a whole number of at least 1, not {value!r}")
    return value


@dataclass(frozen=True)
class QueueItem:
    """One (advertiser, asset, task) that needs a human, shown through one of its live placements."""

    placement: Placement  # with listing__sitemap__advertiser and asset loaded
    advertiser_id: int
    asset_id: int
    task: str
    kind: str  # one of QUEUE_KINDS
    priority: float
    reason: str
    model_label: str | None
    confidence: float | None
    margin: float | None
    fix_label: str | None
    fix_source: str
    crop_box: list[int] | None = None  # the model's crop, in the original image's pixels
    spread: int = 0  # the model-side questions' turn (_spread): 0 for the first QUEUE_PER_CLUSTER of each cluster

    @property
    def order_key(self) -> tuple[int, float, int, int]:
        """The queue's order, as _queue_of_task orders each task's questions in SQL."""
        return (self.spread, -self.priority, self.placement.pk, Task.values.index(self.task))

    @property
    def placement_id(self) -> int:
        return self.placement.pk


@dataclass(frozen=True)
class QueueFilters:
    """What the queue is narrowed to: some advertisers (None: all), one task, one kind of question."""

    advertiser_ids: list[int] | None = None
    task: str = ""
    kind: str = ""

    def tasks(self) -> list[str]:
        if self.kind == "reused":
            return []
        return [self.task] if self.task else list(Task.values)

    @property
    def with_reused(self) -> bool:
        return self.task in ("", Task.IMAGE_TYPE) and self.kind in ("", "reused")


def review_queue(
    *,
    user_advertiser_ids: list[int] | None = None,
    limit: int = 50,
    offset: int = 0,
    task: str = "",
    kind: str = "",
) -> list[QueueItem]:
    """The images that most need a human, across sitemaps, most urgent first; one query per task (plus one).

    Priority: 3 the model failed on the image; 2.5 a conflict staff have not settled here (the advertiser's and
    staff's latest fixes disagree, or another advertiser labels the same picture otherwise); 1.5 to 2 a picture
    reused in many listings that the model calls neither Placeholder nor Stock (the more listings, the higher); 2 to 2.4
    the fix in effect overturns the model (the more confident the model, the higher); 1 an image of the audit sample
    (reviews.audit) whose model tag no human labelled, whatever the model's confidence, unless it is in the queue for
    another reason; the model-side questions, ranked by what a label would teach (teaching_value, 0.5 to 1.5): an
    image type the model gave an image unlike what it knows (its Novelty ratio above 1, classifier.services.drift)
    that no one labelled, and a tag the model hesitated on (margin under QUEUE_MARGIN or confidence under
    QUEUE_CONFIDENCE, no fix, no scrape color).
    Spread: among the model-side questions of a task, only the first QUEUE_PER_CLUSTER images of a near-duplicate
    cluster (ImageAsset.cluster_id) keep their place; the next ones wait until every other cluster had its turn
    (QueueItem.spread), so fifty near-identical pictures are not all asked first.
    Left out: what staff decided after the model's result (the latest fix is staff's and newer than the result),
    and the questions the tag rules make moot: color or intent of images whose effective type is Placeholder, and
    the model's color where the scrape gave one and no one fixed it (the scrape's color wins).
    `user_advertiser_ids` (None: every advertiser) restricts the queue to those advertisers, `task` to one task,
    `kind` to one kind of question (QUEUE_KINDS); `offset` skips that many items.
    """
    filters = QueueFilters(advertiser_ids=user_advertiser_ids, task=task, kind=kind)
    heads = active_heads()
    depth = offset + limit
    items = []
    for each in filters.tasks():
        items += [_queue_item(placement, each) for placement in _queue_of_task(each, heads, filters)[:depth]]
    if filters.with_reused:
        items += _reused_pictures(user_advertiser_ids, depth)
    items.sort(key=lambda item: item.order_key)
    return items[offset:depth]


def review_queue_count(*, user_advertiser_ids: list[int] | None = None, task: str = "", kind: str = "") -> int:
    """How many items the queue holds with these filters (review_queue's arguments); one query per task, plus the
    reused pictures."""
    filters = QueueFilters(advertiser_ids=user_advertiser_ids, task=task, kind=kind)
    heads = active_heads()
    count = sum(_queue_of_task(each, heads, filters).count() for each in filters.tasks())
    if filters.with_reused:
        count += len(_reused_pictures(user_advertiser_ids, None))
    return count


def queue_decided_today(*, user_advertiser_ids: list[int] | None = None, task: str = "") -> int:
    """Decisions taken in the review queue since midnight (the server's time zone), undone ones left out."""
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return _decisions_since(midnight, user_advertiser_ids, task)


def _decisions_since(since: datetime, advertiser_ids: list[int] | None, task: str) -> int:
    decisions = ChangeSet.objects.filter(kind=ChangeSet.Kind.DECISION, created_at__gte=since, undone_by__isnull=True)
    if advertiser_ids is not None:
        decisions = decisions.filter(advertiser_id__in=advertiser_ids)
    if task:
        decisions = decisions.filter(Exists(ManualFix.objects.filter(change_set_id=OuterRef("pk"), task=task)))
    return decisions.count()


def standing_fixes(fixes: QuerySet[ManualFix]) -> QuerySet[ManualFix]:
    """The fixes that stand for the queue: neither part of an undone change set nor written by an undo."""
    return fixes.filter(change_set__undone_by__isnull=True).exclude(change_set__kind=ChangeSet.Kind.UNDO)


def _reused_pictures(advertiser_ids: list[int] | None, limit: int | None) -> list[QueueItem]:
    """Pictures used in many listings that the model calls neither Placeholder nor Stock, unless a human already
    fixed or confirmed the representative's image type (one query more than reused_pictures)."""
    reused = reused_pictures(advertiser_ids=advertiser_ids, limit=limit)
    looked_at = set(
        standing_fixes(
            ManualFix.objects.filter(
                task=Task.IMAGE_TYPE,
                asset_id__in=[row.placement.asset_id for row in reused],
                source__in=ManualFix.HUMAN,
            )
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


def teaching_order(*, placements: list[Placement], task: str) -> list[Placement]:
    """The placements in the order the review queue asks about them for their advertisers and this task (the queue
    as filtered to those advertisers: same priority, teaching_value and cluster spread), then the images the queue
    does not ask about by the same teaching value and spread (confident tags no one labelled), then the rest (a
    human decided, or the tag rules make the question moot) in the order given. The cluster spread counts only the
    placements given: given all of an advertiser's images, this is exactly its queue's order. Two queries, whatever
    the number of placements; the scripted loop picks its labels with it (LoopScenario.label(pick="queue"))."""
    if task not in Task.values:
        raise ValueError(f"unknown task {task!r}: one of {', '.join(Task.values)}")
    placements = list(placements)
    advertiser_ids = sorted({placement.listing.sitemap.advertiser_id for placement in placements})
    filters = QueueFilters(advertiser_ids=advertiser_ids, task=task)
    ordered = (
        _queue_of_task(task, active_heads(), filters, rest=True)
        .filter(asset_id__in={placement.asset_id for placement in placements})
        .order_by(Case(When(kind=CONFIDENT, then=Value(1)), default=Value(0)), F("spread"), F("priority").desc(), "id")
        .values_list(PLACEMENT_ADVERTISER, "asset_id")
    )
    rank = {scope: position for position, scope in enumerate(ordered)}
    last = len(rank)
    return sorted(
        placements,
        key=lambda placement: rank.get((placement.listing.sitemap.advertiser_id, placement.asset_id), last),
    )


def _queue_of_task(
    task: str, heads: dict[str, int], filters: QueueFilters, *, rest: bool = False
) -> QuerySet[Placement]:
    """The task's questions, most urgent first, as placements annotated with what QueueItem shows; with `rest`, also
    the images that are no question (kind CONFIDENT: a model tag no one labelled and no rule makes moot)."""
    placements = live_placements().filter(status=Placement.Status.OK, asset__isnull=False)
    if filters.advertiser_ids is not None:
        placements = placements.filter(**{f"{PLACEMENT_ADVERTISER}__in": filters.advertiser_ids})
    # One representative per (advertiser, asset): its first live placement.
    earlier = live_placements().filter(
        status=Placement.Status.OK,
        asset_id=OuterRef("asset_id"),
        **{PLACEMENT_ADVERTISER: OuterRef(PLACEMENT_ADVERTISER)},
        id__lt=OuterRef("id"),
    )
    result = model_result(task, heads)
    fix = standing_fixes(latest_fix(task))

    def first(queryset: Any, column: str, output_field: Any = None) -> Subquery:
        return Subquery(queryset.values(column)[:1], output_field=output_field)

    def side(sources: tuple[str, ...]) -> QuerySet[ManualFix]:
        """The latest standing row of one side, with the label it puts in effect (none: a withdrawal)."""
        return standing_fixes(latest_fix(task, sources=sources)).annotate(in_effect=label_in_effect())

    placements = placements.filter(~Exists(earlier)).annotate(
        model_status=first(result, "status"),
        model_label=first(result, "label"),
        model_confidence=first(result, "confidence"),
        model_margin=first(result, "margin"),
        model_error=first(result, "error"),
        model_crop_box=first(result, "crop_box", JSONField()),
        model_at=first(result, "updated_at", DateTimeField()),
        fix_label=first(fix.annotate(in_effect=label_in_effect()), "in_effect", CharField()),
        fix_source=first(fix, "source"),
        fix_at=first(fix, "created_at", DateTimeField()),
        fix_settles=first(fix, "settles", BooleanField()),
        advertiser_label=first(side(ManualFix.ADVERTISER_SIDE), "in_effect", CharField()),
        staff_label=first(side(ManualFix.STAFF_SIDE), "in_effect", CharField()),
        human_label=first(side(ManualFix.HUMAN), "in_effect", CharField()),
        audited=audited(advertiser=F(PLACEMENT_ADVERTISER), asset=F("asset_id"), task=Value(task)),
        configured_color=scrape_color() if task == Task.COLOR else Value(None, output_field=CharField()),
        novelty=_novelty(task, heads),
        other_advertiser=Exists(
            advertiser_conflicts().filter(
                advertiser_id=OuterRef(PLACEMENT_ADVERTISER), asset_id=OuterRef("asset_id"), task=task
            )
        ),
    )
    if task in PLACEHOLDER_MOOT:
        type_label = ColumnNames(Task.IMAGE_TYPE).label  # NULL (no type yet) is no placeholder: keep it
        placements = annotate_effective(placements, [Task.IMAGE_TYPE], heads).filter(
            Q(**{f"{type_label}__isnull": True}) | ~Q(**{type_label: PLACEHOLDER})
        )
    if task == Task.COLOR:  # the scrape's color wins over the model's: only a fix makes it a question again
        placements = placements.filter(Q(configured_color__isnull=True) | Q(fix_label__isnull=False))
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
    unfamiliar = ok & Q(fix_label__isnull=True, novelty__gt=1.0)
    # Unlabelled as reviews.accuracy counts it: no human label in effect (a carried fix is no human's look).
    audit = ok & Q(audited=True, human_label__isnull=True, configured_color__isnull=True)
    # No question: a tag no one labelled that no rule makes moot (teaching_order only).
    confident = (
        [When(ok & Q(fix_label__isnull=True, configured_color__isnull=True), then=Value(CONFIDENT))] if rest else []
    )
    decided = (  # a withdrawal decides nothing: the model's tag is in effect again
        Q(fix_source__in=ManualFix.STAFF_SIDE, fix_label__isnull=False)
        & (Q(model_at__isnull=True) | Q(fix_at__gte=F("model_at")))
    )
    placements = (
        placements.annotate(
            kind=Case(
                When(model_status=Classification.Status.FAILED, then=Value("failed")),
                When(conflict, then=Value("conflict")),
                When(other_advertiser=True, then=Value("advertisers")),
                When(overturned, then=Value("disagreement")),
                When(unfamiliar, then=Value("unfamiliar")),
                When(hesitated, then=Value("hesitated")),
                When(audit, then=Value("audit")),  # last: an image in the queue for another reason keeps it
                *confident,
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
                When(kind="audit", then=Value(AUDIT_PRIORITY)),
                default=teaching_value(),  # TEACHING_KINDS, and CONFIDENT for teaching_order
                output_field=FloatField(),
            )
        )
        .annotate(spread=_spread())
        .select_related("listing__sitemap__advertiser", "asset")
        .order_by("spread", F("priority").desc(), "id")
    )
    if filters.kind:
        placements = placements.filter(kind=filters.kind)
    return placements


def _spread() -> Any:
    """The turn of a model-side question within its near-duplicate cluster: 0 for the cluster's first
    QUEUE_PER_CLUSTER (by priority), 1 for the next ones, and so on; 0 for every other kind. A window over the
    task's questions (after the filters), in the same query; CONFIDENT images take turns among themselves."""
    spreads = Q(kind__in=(*TEACHING_KINDS, CONFIDENT))
    group = Case(When(kind=CONFIDENT, then=Value(1)), default=Value(0), output_field=IntegerField())
    cluster = Case(
        When(spreads, then=Coalesce(F("asset__cluster_id"), F("asset_id"), output_field=BigIntegerField())),
        default=-F("id"),
        output_field=BigIntegerField(),
    )
    turn = Window(RowNumber(), partition_by=[group, cluster], order_by=[F("priority").desc(), F("id").asc()])
    return ExpressionWrapper((turn - Value(1)) / Value(per_cluster()), output_field=IntegerField())


def _novelty(task: str, heads: dict[str, int]) -> Any:
    """How unfamiliar the image is to the active image_type model (its Novelty ratio; NULL when not measured). Only
    the image type is asked about: the drift measure reads that head's features."""
    if task != Task.IMAGE_TYPE or task not in heads:
        return Value(None, output_field=FloatField())
    ratios = Novelty.objects.filter(asset_id=OuterRef("asset_id"), model_version_id=heads[task]).values("ratio")
    return Subquery(ratios[:1], output_field=FloatField())


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
    elif kind == "unfamiliar":
        reason = (
            f"unlike what the model knows ({placement.novelty:.1f}x the distance to known images at which one counts "
            "as unfamiliar), "
            f"the model says {placement.model_label} ({placement.model_confidence:.2f})"
        )
    elif kind == "audit":
        reason = (
            f"a random check (audit sample): the model says {placement.model_label} "
            f"({placement.model_confidence:.2f}); is it right?"
        )
    elif placement.model_margin is not None and placement.model_margin < QUEUE_MARGIN:
        reason = f"model hesitated: margin {placement.model_margin:.2f}"
    else:
        reason = f"model unsure: confidence {placement.model_confidence:.2f}"
    box = placement.model_crop_box
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
        crop_box=[int(value) for value in box] if isinstance(box, list) and len(box) == 4 else None,
        spread=placement.spread,
    )
