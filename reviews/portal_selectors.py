"""Reads of the advertiser portal's home: what needs the advertiser's attention (failed images, images nobody has
reviewed yet), the staff decisions on the advertiser's own labels, and an example of each image type from the
advertiser's own inventory.

Every function takes the sitemaps the viewer may see (the portal's scope, reviews.views.PORTAL) and reads nothing
outside them. Tags are the stored effective tags the grid reads (reviews.models.EffectiveTag, written from the one
rule by reviews.effective_store), with the grid's conditions, so each count here is what the grid's link finds.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Lower
from django.db.models.lookups import Exact

from catalog.models import TASK_LABELS, Placement, Run, Sitemap, Task

from .grid import failed_q, reviewed_q
from .models import EffectiveTag as StoredTag
from .models import ManualFix, label_in_effect, on_side

# The task the home page counts on: the image type is tagged on every sitemap and is what advertisers fix most.
HOME_TASK = Task.IMAGE_TYPE.value
DECISIONS_SHOWN = 20


@dataclass(frozen=True)
class SitemapAttention:
    """One sitemap's live images, those whose tag failed and those without a fix or confirmation in effect."""

    sitemap: Sitemap
    images: int
    failed: int
    unreviewed: int
    last_run: Run | None

    @property
    def last_run_failed(self) -> int:
        return self.last_run.failed if self.last_run is not None else 0


@dataclass(frozen=True)
class StaffDecision:
    """A staff decision from the review queue on a scope where the advertiser had given its own label."""

    fix: ManualFix
    your_label: str  # the advertiser's latest own label before the decision
    placement_id: int | None  # one of the advertiser's images showing the picture (live ones first)

    @property
    def confirmed(self) -> bool:
        return self.your_label.lower() == self.fix.new_label.lower()


@dataclass(frozen=True)
class LabelExample:
    label: str
    placement_id: int | None  # an image of the viewer's own inventory tagged `label`


def sitemaps_attention(*, sitemaps: QuerySet[Sitemap], task: str = HOME_TASK) -> list[SitemapAttention]:
    """Per sitemap (in the queryset's order): live images, failed ones (the grid's `failed=1`: no tag because the
    image or the model failed) and unreviewed ones (no fix or confirmation in effect in the advertiser's scope: the
    grid's `reviewed=no`), with the last Run. A constant number of queries: one grouped count for every sitemap."""
    rows = list(sitemaps.annotate(last_run_id=Subquery(_latest_run().values("pk")[:1])))
    grouped = (
        StoredTag.objects.filter(sitemap_id__in=[sitemap.pk for sitemap in rows], task=task, live=True)
        .values("sitemap_id")
        .annotate(
            images=Count("placement_id"),
            failed=Count("placement_id", filter=failed_q()),
            unreviewed=Count("placement_id", filter=~reviewed_q()),
        )
        .order_by()
    )
    counts = {row["sitemap_id"]: row for row in grouped}
    runs = Run.objects.in_bulk([s.last_run_id for s in rows if s.last_run_id])
    empty = {"images": 0, "failed": 0, "unreviewed": 0}
    return [
        SitemapAttention(
            sitemap=sitemap,
            images=counts.get(sitemap.pk, empty)["images"],
            failed=counts.get(sitemap.pk, empty)["failed"],
            unreviewed=counts.get(sitemap.pk, empty)["unreviewed"],
            last_run=runs.get(sitemap.last_run_id),
        )
        for sitemap in rows
    ]


def _latest_run() -> QuerySet[Run]:
    return Run.objects.filter(sitemap_id=OuterRef("pk")).order_by("-created_at", "-id")


def staff_decisions(
    *, sitemaps: QuerySet[Sitemap], task: str | None = None, limit: int = DECISIONS_SHOWN
) -> list[StaffDecision]:
    """The staff decisions from the review queue (fixes that settle) on the sitemaps' advertisers' scopes where the
    advertiser had labelled the picture itself before: each changed or confirmed the advertiser's own label. Latest
    first, with one of the advertiser's images showing the picture; one query."""
    scope = {"advertiser_id": OuterRef("advertiser_id"), "asset_id": OuterRef("asset_id"), "task": OuterRef("task")}
    earlier = Q(created_at__lt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), id__lt=OuterRef("id"))
    own_label = (
        ManualFix.objects.filter(on_side(ManualFix.ADVERTISER_SIDE), **scope)
        .filter(earlier)
        .order_by("-created_at", "-id")
        .values(label=label_in_effect())[:1]
    )
    shown_in = (
        Placement.objects.filter(asset_id=OuterRef("asset_id"), listing__sitemap__in=sitemaps)
        .filter(listing__sitemap__advertiser_id=OuterRef("advertiser_id"))
        .order_by("is_gone", "listing__is_gone", "id")
        .values("pk")[:1]
    )
    decisions = ManualFix.objects.filter(
        settles=True, advertiser_id__in=sitemaps.values("advertiser_id"), source__in=ManualFix.STAFF_SIDE
    )
    if task is not None:
        decisions = decisions.filter(task=task)
    rows = (
        decisions.annotate(your_label=Subquery(own_label), placement_id=Subquery(shown_in))
        .filter(your_label__isnull=False)
        .select_related("advertiser")
        .order_by("-created_at", "-id")[:limit]
    )
    return [StaffDecision(fix=row, your_label=row.your_label, placement_id=row.placement_id) for row in rows]


def label_examples(*, sitemaps: QuerySet[Sitemap], task: str = HOME_TASK) -> list[LabelExample]:
    """For each label of the task, one live image with a picture in these sitemaps whose effective tag is that label
    (None when there is none yet): one query per label, on the store's label index as the grid's label filter."""
    stored = StoredTag.objects.filter(sitemap__in=sitemaps, task=task, live=True, asset__isnull=False)
    return [
        LabelExample(
            label,
            stored.filter(Exact(Lower(F("label")), label.lower()))
            .order_by("placement_id")
            .values_list("placement_id", flat=True)
            .first(),
        )
        for label in TASK_LABELS[task]
    ]


@dataclass(frozen=True)
class PortalHome:
    attention: list[SitemapAttention]
    decisions: list[StaffDecision]
    examples: list[LabelExample]

    @property
    def failed(self) -> int:
        return sum(row.failed for row in self.attention)

    @property
    def unreviewed(self) -> int:
        return sum(row.unreviewed for row in self.attention)

    @property
    def images(self) -> int:
        return sum(row.images for row in self.attention)


def portal_home(*, sitemaps: QuerySet[Sitemap]) -> PortalHome:
    """Everything the portal's home shows, for the sitemaps the viewer may see."""
    return PortalHome(
        attention=sitemaps_attention(sitemaps=sitemaps),
        decisions=staff_decisions(sitemaps=sitemaps),
        examples=label_examples(sitemaps=sitemaps),
    )
