"""SQL building blocks of the health figures: live images, effective labels and advertiser/staff conflicts,
as annotations and grouped queries, so a figure costs one query whatever the number of advertisers or images.

The effective label is the one reviews.selectors.effective_tags computes in Python (and reviews.grid for one
sitemap): the latest fix of (advertiser, asset, task), else for color the scrape's color, else the active
model's label; here the advertiser is taken from each placement's sitemap, so one query spans advertisers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, Lower, NullIf, Trim
from django.db.models.lookups import Exact

from catalog.models import Placement, Task
from classifier.models import Classification, ModelHead
from reviews.models import ManualFix
from reviews.selectors import COLOR_NAMES

PLACEMENT_ADVERTISER = "listing__sitemap__advertiser_id"


def active_heads() -> dict[str, int]:
    """The model version of the active head of each task (one query)."""
    return dict(ModelHead.objects.filter(is_active=True).values_list("task", "model_version_id"))


def live_placements() -> QuerySet[Placement]:
    """Image URLs still listed: neither the placement nor its listing is gone."""
    return Placement.objects.filter(is_gone=False, listing__is_gone=False)


def latest_fix(task: str, *, source: str = "", advertiser_ref: str = PLACEMENT_ADVERTISER) -> QuerySet[ManualFix]:
    """Fixes of the outer row's (advertiser, asset) for the task, latest first (slice [:1] for the one in effect)."""
    fixes = ManualFix.objects.filter(advertiser_id=OuterRef(advertiser_ref), asset_id=OuterRef("asset_id"), task=task)
    if source:
        fixes = fixes.filter(source=source)
    return fixes.order_by("-created_at", "-id")


def model_result(task: str, heads: Mapping[str, int]) -> QuerySet[Classification]:
    """The active model's result for the outer row's asset (none when the task has no active head)."""
    return Classification.objects.filter(asset_id=OuterRef("asset_id"), model_version_id=heads.get(task), task=task)


def model_label(task: str, heads: Mapping[str, int]) -> Subquery:
    return Subquery(
        model_result(task, heads).filter(status=Classification.Status.OK).values("label")[:1],
        output_field=CharField(),
    )


def scrape_color() -> Case:
    """The color the scrape configured on the placement's listing, spelled as the vocabulary spells it."""
    text = CharField()
    configured = NullIf(KeyTextTransform("color", "listing__attributes"), Value(""), output_field=text)
    raw = Lower(Trim(Coalesce(configured, KeyTextTransform("colour", "listing__attributes"), output_field=text)))
    return Case(
        *(When(Exact(raw, Value(name)), then=Value(color)) for name, color in COLOR_NAMES.items()),
        default=Value(None),
        output_field=CharField(),
    )


def effective_label(task: str, heads: Mapping[str, int]) -> Coalesce:
    """The effective label of the outer placement for the task, or NULL (failed, unknown)."""
    fix = Subquery(latest_fix(task).values("new_label")[:1], output_field=CharField())
    parts: list[Any] = (
        [fix, scrape_color(), model_label(task, heads)] if task == Task.COLOR else [fix, model_label(task, heads)]
    )
    return Coalesce(*parts, output_field=CharField())


def label_counts(placements: QuerySet[Placement], task: str, heads: Mapping[str, int], *group_by: str) -> QuerySet:
    """Rows of {*group_by, "label", "images"}: live placements per effective label (unlabelled ones left out)."""
    return (
        placements.annotate(label=effective_label(task, heads))
        .filter(label__isnull=False)
        .values(*group_by, "label")
        .annotate(images=Count("id"))
        .order_by()
    )


def shares_from_counts(counts: Mapping[str, int]) -> dict[str, float]:
    """Label -> share of the labelled images (4 decimals), the most frequent first."""
    total = sum(counts.values())
    if not total:
        return {}
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {label: round(images / total, 4) for label, images in ordered}


def disagreements() -> QuerySet[ManualFix]:
    """The latest staff fix of every (advertiser, asset, task) whose latest advertiser fix says something else.

    One row per conflicting scope: count them, or group them by advertiser.
    """
    scope = {"advertiser_id": OuterRef("advertiser_id"), "asset_id": OuterRef("asset_id"), "task": OuterRef("task")}
    newer_staff_fix = ManualFix.objects.filter(**scope, source=ManualFix.Source.STAFF).filter(
        Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), id__gt=OuterRef("id"))
    )
    advertiser_label = (
        ManualFix.objects.filter(**scope, source=ManualFix.Source.ADVERTISER)
        .order_by("-created_at", "-id")
        .values("new_label")[:1]
    )
    return (
        ManualFix.objects.filter(source=ManualFix.Source.STAFF)
        .filter(~Exists(newer_staff_fix))
        .annotate(advertiser_label=Subquery(advertiser_label, output_field=CharField()))
        .filter(advertiser_label__isnull=False)
        .exclude(advertiser_label=F("new_label"))
    )
