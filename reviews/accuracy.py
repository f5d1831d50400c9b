"""Local accuracy: per advertiser and task, how often the active model is right on the tags a human looked at.

A tag a human looked at is an (advertiser, asset, task) of a live image with a human fix in its scope (staff
screen, API or portal; a confirmation is a fix to the label already in effect). It is correct when the latest
human label equals the active model's label. Carried fixes are left out: no human looked at that copy; so are fixes
withdrawn by an undo (the model's tag is in effect again).
The ratio with its count and a 95% interval is classifier.training.metrics.LocalAccuracy, the definition the
dataset export and the model comparison use too.

The review queue asks about the hard images first, so local accuracy is biased toward them. Audited accuracy counts
only the audit sample (reviews.audit: a random, stable share of the images the queue asks about whatever the model's
confidence), so it is unbiased; both come from one query per task (accuracies_with_audit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db.models import CharField, Count, Exists, F, OuterRef, Q, QuerySet, Subquery

from catalog.models import Placement
from classifier.models import Classification
from classifier.training.metrics import LocalAccuracy

from .audit import audited
from .expressions import active_heads, newer_in_scope
from .models import ManualFix, on_side


def latest_human_fixes() -> QuerySet[ManualFix]:
    """The latest human fix of every (advertiser, asset, task) that has one in effect: none where the latest human row
    is a withdrawal (an undo back to the model's tag)."""
    newer = newer_in_scope(on_side(ManualFix.HUMAN))
    return ManualFix.objects.filter(source__in=ManualFix.HUMAN, withdraws=False).filter(~Exists(newer))


def local_accuracies(
    *, advertiser_ids: Iterable[int] | None = None, heads: Mapping[str, int] | None = None
) -> dict[tuple[int, str], LocalAccuracy]:
    """(advertiser id, task) -> LocalAccuracy of the active model, one grouped query per task with a model. Biased
    toward hard images: the review queue asks about those first (audit_accuracies is not)."""
    return accuracies_with_audit(advertiser_ids=advertiser_ids, heads=heads)[0]


def audit_accuracies(
    *, advertiser_ids: Iterable[int] | None = None, heads: Mapping[str, int] | None = None
) -> dict[tuple[int, str], LocalAccuracy]:
    """(advertiser id, task) -> LocalAccuracy of the active model on the audit sample only (reviews.audit): human
    labels of audited images, a random sample, so unbiased; one grouped query per task with a model."""
    return accuracies_with_audit(advertiser_ids=advertiser_ids, heads=heads)[1]


def accuracies_with_audit(
    *, advertiser_ids: Iterable[int] | None = None, heads: Mapping[str, int] | None = None
) -> tuple[dict[tuple[int, str], LocalAccuracy], dict[tuple[int, str], LocalAccuracy]]:
    """local_accuracies and audit_accuracies together, from the same grouped query per task with a model."""
    heads = active_heads() if heads is None else heads
    live = Placement.objects.filter(
        is_gone=False,
        listing__is_gone=False,
        asset_id=OuterRef("asset_id"),
        listing__sitemap__advertiser_id=OuterRef("advertiser_id"),
    )
    local: dict[tuple[int, str], LocalAccuracy] = {}
    audit: dict[tuple[int, str], LocalAccuracy] = {}
    for task, version in heads.items():
        model_label = Classification.objects.filter(
            asset_id=OuterRef("asset_id"), model_version_id=version, task=task, status=Classification.Status.OK
        ).values("label")[:1]
        fixes = latest_human_fixes().filter(task=task)
        if advertiser_ids is not None:
            fixes = fixes.filter(advertiser_id__in=list(advertiser_ids))
        right = Q(new_label=F("model_label"))
        rows = (
            fixes.filter(Exists(live))
            .annotate(
                model_label=Subquery(model_label, output_field=CharField()),
                audited=audited(advertiser=F("advertiser_id"), asset=F("asset_id"), task=F("task")),
            )
            .filter(model_label__isnull=False)
            .values("advertiser_id")
            .annotate(
                reviewed=Count("id"),
                correct=Count("id", filter=right),
                audited_reviewed=Count("id", filter=Q(audited=True)),
                audited_correct=Count("id", filter=Q(audited=True) & right),
            )
            .order_by()
        )
        for row in rows:
            key = (row["advertiser_id"], task)
            local[key] = LocalAccuracy(reviewed=row["reviewed"], correct=row["correct"])
            if row["audited_reviewed"]:
                audit[key] = LocalAccuracy(reviewed=row["audited_reviewed"], correct=row["audited_correct"])
    return local, audit
