"""SQL building blocks of the health figures: live images, label counts and advertiser/staff conflicts, as
annotations and grouped queries, so a figure costs one query whatever the number of advertisers or images.

Effective labels come from the one rule in reviews.effective; here the advertiser is taken from each
placement's sitemap, so one query spans advertisers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact, Lookup

from catalog.models import Placement
from classifier.models import Classification, ModelHead, ScopedHead
from reviews.effective import PLACEMENT_ADVERTISER, ColumnNames, annotate_effective, scoped_versions
from reviews.models import ManualFix, label_in_effect, on_side


class Slot:
    """A list of ids left open in a compiled statement (see InArray): filled in, by name, each time it runs."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Slot({self.name!r})"


class InArray(Lookup):
    """`lhs` is one of a list of integers, sent as ONE parameter (an array on PostgreSQL, JSON elsewhere), so that
    the statement is the same whatever their number: it can be compiled once and run with any list (a Slot stands
    for the list until then; fill_slots puts it in). `id IN (%s, %s, ...)` is a new statement for every length."""

    lookup_name = "in_array"
    prepare_rhs = False

    def get_prep_lookup(self) -> Any:
        return self.rhs

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        value = self.rhs if isinstance(self.rhs, Slot) else array_param(self.rhs, connection.vendor)
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s::bigint[])", (*lhs_params, value)
        return f"{lhs} IN (SELECT value FROM json_each(%s))", (*lhs_params, value)  # noqa: S608 - lhs is a column


def array_param(ids: Sequence[int], vendor: str) -> Any:
    """A list of ids as InArray sends it to this database."""
    return list(ids) if vendor == "postgresql" else json.dumps(list(ids))


def fill_slots(params: Sequence[Any], values: Mapping[str, Sequence[int]], vendor: str) -> list[Any]:
    """A compiled statement's parameters with each Slot replaced by its list of ids."""
    return [array_param(values[p.name], vendor) if isinstance(p, Slot) else p for p in params]


class ActiveHeads(dict[str, int]):
    """Task -> the model version of its active head; and `scoped`: task -> {advertiser id: version} of the heads that
    answer for one advertiser instead (classifier.models.ScopedHead). Read as a plain mapping, it is the active
    models; reviews.effective.annotate_inputs reads `scoped` too."""

    def __init__(self, active: Mapping[str, int], scoped: Mapping[str, Mapping[int, int]] | None = None) -> None:
        super().__init__(active)
        self.scoped: dict[str, dict[int, int]] = {task: dict(by) for task, by in (scoped or {}).items()}


def active_heads() -> ActiveHeads:
    """The model version of the active head of each task, and the advertisers' scoped heads (one query)."""
    active = (
        ModelHead.objects.filter(is_active=True)
        .values_list("task", "model_version_id", Value(None, output_field=IntegerField()))
        .order_by()
    )
    scoped_rows = ScopedHead.objects.values_list("task", "model_version_id", "advertiser_id").order_by()
    rows = active.union(scoped_rows, all=True)
    scoped: dict[str, dict[int, int]] = {}
    heads: dict[str, int] = {}
    for task, version, advertiser in rows:
        if advertiser is None:
            heads[task] = version
        else:
            scoped.setdefault(task, {})[advertiser] = version
    return ActiveHeads(heads, scoped)


def live_placements() -> QuerySet[Placement]:
    """Image URLs still listed: neither the placement nor its listing is gone."""
    return Placement.objects.filter(is_gone=False, listing__is_gone=False)


def model_result(
    task: str, heads: Mapping[str, int], *, advertiser_ref: str = PLACEMENT_ADVERTISER
) -> QuerySet[Classification]:
    """The answering model's result for the outer placement's asset, first (none when the task has no active head):
    the scoped head of the placement's advertiser where it has one (`heads.scoped`), else the active model's."""
    results = Classification.objects.filter(asset_id=OuterRef("asset_id"), task=task)
    scoped = scoped_versions(heads, task)
    if not scoped:
        return results.filter(model_version_id=heads.get(task))
    answering = Case(
        *(When(Exact(OuterRef(advertiser_ref), by), then=Value(version)) for by, version in scoped.items()),
        default=Value(None),
        output_field=IntegerField(),
    )
    active_last = Case(When(model_version_id=heads.get(task), then=Value(1)), default=Value(0))
    return results.filter(Q(model_version_id=heads.get(task)) | Q(model_version_id=answering)).order_by(active_last)


def model_label(task: str, heads: Mapping[str, int]) -> Subquery:
    return Subquery(
        model_result(task, heads).filter(status=Classification.Status.OK).values("label")[:1],
        output_field=CharField(),
    )


def label_counts(placements: QuerySet[Placement], task: str, heads: Mapping[str, int], *group_by: str) -> QuerySet:
    """Rows of {*group_by, "label", "images"}: live placements per effective label (unlabelled ones left out)."""
    column = ColumnNames(task)
    return (
        annotate_effective(placements, [task], heads)
        .filter(**{f"{column.label}__isnull": False})
        .values(*group_by, label=F(column.label))
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


def newer_in_scope(*conditions: Q, **extra: Any) -> QuerySet[ManualFix]:
    """Fix rows of the outer fix's (advertiser, asset, task) made after it (and matching `conditions`, `extra`)."""
    scope = {"advertiser_id": OuterRef("advertiser_id"), "asset_id": OuterRef("asset_id"), "task": OuterRef("task")}
    return ManualFix.objects.filter(*conditions, **scope, **extra).filter(
        Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), id__gt=OuterRef("id"))
    )


def latest_fixes() -> QuerySet[ManualFix]:
    """The fix in effect of every (advertiser, asset, task): no newer row in its scope, and no withdrawal (a scope
    whose latest row is a withdrawal has no fix in effect)."""
    return ManualFix.objects.filter(~Exists(newer_in_scope()), withdraws=False)


def disagreements() -> QuerySet[ManualFix]:
    """The latest staff-side fix (staff screen or API) of every (advertiser, asset, task) whose latest advertiser
    fix says something else, unless the latest fix of the scope is a staff decision that settled it. A side whose
    latest row is a withdrawal (reviews.models.on_side) says nothing.

    One row per conflicting scope: count them, or group them by advertiser.
    """
    scope = {"advertiser_id": OuterRef("advertiser_id"), "asset_id": OuterRef("asset_id"), "task": OuterRef("task")}
    advertiser_label = (
        ManualFix.objects.filter(on_side(ManualFix.ADVERTISER_SIDE), **scope)
        .order_by("-created_at", "-id")
        .values(label=label_in_effect())[:1]
    )
    settled = ManualFix.objects.filter(**scope, settles=True).filter(~Exists(newer_in_scope()))
    return (
        ManualFix.objects.filter(source__in=ManualFix.STAFF_SIDE, withdraws=False)
        .filter(~Exists(newer_in_scope(on_side(ManualFix.STAFF_SIDE))))
        .annotate(advertiser_label=Subquery(advertiser_label, output_field=CharField()))
        .filter(advertiser_label__isnull=False)
        .exclude(advertiser_label=F("new_label"))
        .filter(~Exists(settled))
    )


def picture() -> Coalesce:
    """The picture of a fix's asset: its near-duplicate cluster (the asset itself until it is clustered)."""
    return Coalesce(F("asset__cluster_id"), F("asset_id"), output_field=BigIntegerField())


def advertiser_conflicts() -> QuerySet[ManualFix]:
    """The fix in effect of every (advertiser, asset, task) that another advertiser contradicts on the same picture
    (same SHA-256, or the same near-duplicate cluster), unless staff settled both scopes in the review queue.

    Only human labels count (staff, API, portal): a carried fix copies the advertiser's own label. One row per
    conflicting scope: count them, or group them by advertiser.
    """
    latest = latest_fixes().filter(source__in=ManualFix.HUMAN).annotate(picture=picture())
    contradicting = (
        latest.filter(picture=OuterRef("picture"), task=OuterRef("task"))
        .exclude(advertiser_id=OuterRef("advertiser_id"))
        .exclude(new_label=OuterRef("new_label"))
    )
    unsettled = Q(settles=False) | Exists(contradicting.filter(settles=False))
    return latest.filter(Exists(contradicting)).filter(unsettled)
