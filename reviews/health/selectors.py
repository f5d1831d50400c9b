"""Reads for the staff screens: every advertiser's health (the review queue is in reviews.health.queue).

It runs a constant number of grouped queries, whatever the number of advertisers and images.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import CharField, Count, F, OuterRef, Q, Subquery
from django.utils import timezone

from catalog.models import Advertiser, Placement, Run, Task
from classifier.models import Classification
from classifier.training.metrics import LocalAccuracy
from reviews.accuracy import accuracies_with_audit
from reviews.effective import PLACEMENT_ADVERTISER
from reviews.expressions import (
    active_heads,
    advertiser_conflicts,
    disagreements,
    label_counts,
    live_placements,
    shares_from_counts,
)
from reviews.models import ManualFix, label_in_effect

FIXES_WINDOW = timedelta(days=30)


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
    accuracy: dict[str, LocalAccuracy] = field(default_factory=dict)  # task -> on the tags a human looked at (biased)
    audited: dict[str, LocalAccuracy] = field(default_factory=dict)  # task -> on the audit sample only (unbiased)

    @property
    def overturned_share(self) -> float | None:
        """Share of the model's tags (reviewed or not) that a fix overturned; None without model tags."""
        return self.overturned / self.model_tags if self.model_tags else None

    @property
    def image_type_accuracy(self) -> LocalAccuracy | None:
        return self.accuracy.get(Task.IMAGE_TYPE)

    @property
    def image_type_audited(self) -> LocalAccuracy | None:
        return self.audited.get(Task.IMAGE_TYPE)


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
    audits: dict[int, dict[str, LocalAccuracy]] = defaultdict(dict)
    local, audit = accuracies_with_audit(heads=heads)
    for (advertiser_id, task), reviewed in local.items():
        accuracies[advertiser_id][task] = reviewed
    for (advertiser_id, task), reviewed in audit.items():
        audits[advertiser_id][task] = reviewed
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
                audited=audits.get(pk, {}),
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
        .values(label=label_in_effect())[:1]
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
