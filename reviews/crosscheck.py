"""Reviews that look across images: near-duplicate clusters, listings whose photos disagree on the color, and
pictures reused across many listings. Reads only (the cluster write is reviews.services.clusters), each a
constant number of queries, with effective tags from the one rule (reviews.effective).

A *picture* is what a reviewer sees as "the same photo": an asset's near-duplicate cluster
(`ImageAsset.cluster_id`), or the asset itself until it is clustered (reviews.expressions.picture()).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    F,
    FilteredRelation,
    Max,
    Min,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)
from django.db.models.functions import Lower, RowNumber

from catalog.models import TASK_LABELS, ImageAsset, Placement, Sitemap, Task
from classifier.models import Classification

from .effective import ColumnNames, Inputs, Source, annotate_effective, decide, scrape_color_of
from .expressions import active_heads, live_placements, picture
from .models import ManualFix
from .paging import PageNumbers
from .selectors import EffectiveTag, effective_tags

# A model's color below this confidence says too little to call a listing's photos inconsistent.
LOW_CONFIDENCE = 0.5
# What a reused picture is expected to be; a reused picture the model calls anything else is suspect.
REUSE_EXPECTED_TYPES = ("placeholder", "stock")
OK = Classification.Status.OK.value
NO_VEHICLE = Classification.CropSource.NO_VEHICLE.value


def picture_of(asset: ImageAsset) -> int:
    """The picture (cluster id, or the asset's own id until it is clustered) of an asset."""
    return asset.cluster_id or asset.pk


def in_pictures(pictures: Iterable[int]) -> Q:
    """Placements showing one of these pictures; written on the indexed columns, not on the Coalesce."""
    ids = list(pictures)
    return Q(asset__cluster_id__in=ids) | Q(asset__cluster_id__isnull=True, asset_id__in=ids)


def sitemap_live(sitemap: Sitemap) -> QuerySet[Placement]:
    """The sitemap's live placements that show a picture."""
    return live_placements().filter(listing__sitemap=sitemap, asset__isnull=False)


# Near-duplicate clusters ------------------------------------------------------------------------------------


def page_cluster_sizes(*, sitemap: Sitemap, placements: list[Placement]) -> dict[int, int]:
    """Placement id -> how many live placements of the sitemap show its picture, for a page of the grid: one
    grouped query (none for an empty page). Placements need `asset` loaded."""
    by_picture = {p.pk: picture_of(p.asset) for p in placements if p.asset is not None}
    if not by_picture:
        return {}
    sizes = dict(
        sitemap_live(sitemap)
        .filter(in_pictures(set(by_picture.values())))
        .annotate(picture=picture())
        .values_list("picture")
        .annotate(size=Count("id"))
        .order_by()
    )
    return {pk: sizes.get(pic, 0) for pk, pic in by_picture.items()}


def cluster_members(*, advertiser_id: int, cluster_id: int) -> list[Placement]:
    """One live placement per asset of the picture at the advertiser (every sitemap of it): the images a fix in
    the advertiser's scope covers. One query; placements come with `asset` and `listing__sitemap`."""
    first_of_each_asset = (
        live_placements()
        .filter(in_pictures([cluster_id]), listing__sitemap__advertiser_id=advertiser_id, asset__isnull=False)
        .values("asset_id")
        .annotate(first=Min("id"))
        .values("first")
        .order_by()
    )
    return list(
        Placement.objects.filter(id__in=first_of_each_asset).select_related("asset", "listing__sitemap").order_by("id")
    )


@dataclass
class ClusterMember:
    placement: Placement
    tag: EffectiveTag


@dataclass
class ClusterRow:
    picture: int
    size: int  # live placements of the sitemap showing the picture
    members: list[ClusterMember]  # the first few of them
    label_counts: list[tuple[str, int]]  # effective labels of all of them for the task, most frequent first

    @property
    def hidden(self) -> int:
        return self.size - len(self.members)


@dataclass
class ClusterPage(PageNumbers):
    rows: list[ClusterRow]
    number: int
    total: int
    per_page: int
    task: str
    labels: tuple[str, ...] = field(default=())


def sitemap_clusters(
    *,
    sitemap: Sitemap,
    task: str,
    page: int = 1,
    per_page: int = 25,
    cluster_id: int | None = None,
    members_per_row: int = 12,
) -> ClusterPage:
    """The sitemap's pictures, one row per cluster, the biggest first (so clusters of 2+ live placements lead),
    with the first `members_per_row` members and their effective tag for the task, and the counts of every
    member's effective label. `cluster_id` narrows it to one cluster. Constant queries whatever the page.
    """
    groups: QuerySet[Any] = sitemap_live(sitemap)
    if cluster_id is not None:
        groups = groups.filter(in_pictures([cluster_id]))
    groups = groups.annotate(picture=picture()).values("picture").annotate(size=Count("id")).order_by()
    total = groups.count()
    page = min(max(1, page), max(1, -(-total // per_page)))
    sizes = dict(
        groups.order_by("-size", "picture").values_list("picture", "size")[(page - 1) * per_page : page * per_page]
    )
    if not sizes:
        return ClusterPage([], page, total, per_page, task, TASK_LABELS[task])
    members: list[Any] = list(
        sitemap_live(sitemap)
        .filter(in_pictures(sizes))
        .annotate(
            picture=picture(),
            rank=Window(RowNumber(), partition_by=[picture()], order_by=[F("listing_id"), F("position"), F("id")]),
        )
        .filter(rank__lte=members_per_row)
        .select_related("asset", "listing__sitemap")
        .defer("failure_detail")
        .order_by("picture", "rank")
    )
    tags = effective_tags(members, [task])
    column = ColumnNames(task)
    counted = (
        annotate_effective(sitemap_live(sitemap).filter(in_pictures(sizes)), [task], active_heads())
        .annotate(picture=picture())
        .values_list("picture", column.label)
        .annotate(images=Count("id"))
        .order_by()
    )
    counts: dict[int, list[tuple[str, int]]] = {}
    for pic, label, images in counted:
        counts.setdefault(pic, []).append((label or "—", images))
    by_picture: dict[int, list[ClusterMember]] = {}
    for placement in members:
        by_picture.setdefault(placement.picture, []).append(ClusterMember(placement, tags[placement.pk][task]))
    rows = [
        ClusterRow(
            pic, size, by_picture.get(pic, []), sorted(counts.get(pic, []), key=lambda item: (-item[1], item[0]))
        )
        for pic, size in sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    ]
    return ClusterPage(rows, page, total, per_page, task, TASK_LABELS[task])


# Listing consistency ----------------------------------------------------------------------------------------


PHOTO_COLUMNS = (
    "id", "listing_id", "asset_id", "status",
    "color_result__status", "color_result__label", "color_result__confidence", "color_result__crop_source",
    "type_result__status", "type_result__label",
)  # fmt: skip


@dataclass(frozen=True)
class ObservedPhoto:
    placement_id: int
    listing_id: int
    color: str | None  # lower case; None: the photo has nothing to say about the vehicle's color
    contradicts_scrape: bool


def observed_colors(*, sitemap: Sitemap, heads: Mapping[str, int] | None = None) -> list[ObservedPhoto]:
    """What each live photo of the sitemap says the vehicle's color is, by the one rule (reviews.effective.decide).

    The observed color is a fix's label, or the active model's label where the color is the model's or the
    scrape's (the scrape wins the effective tag, so the photo's own word is the model's). None where the photo has
    nothing to say: a placeholder (rule source), no vehicle found (interior shots, details), a model tag below
    LOW_CONFIDENCE, a failed or unknown tag. `contradicts_scrape`: the listing's scrape gives a color and the
    photo observes another.

    Three queries whatever the sitemap's size: the photos with both active results (two hash joins), the
    listings' attributes, and the advertiser's fixes. The rule then runs in Python: in SQL, the nested rule
    re-evaluates its latest-fix subqueries many times per row (14 s at 100,000 photos, against about a second).
    """
    heads = active_heads() if heads is None else heads
    relation = "asset__classifications"

    def result(task: str) -> FilteredRelation:
        return FilteredRelation(
            relation, condition=Q(**{f"{relation}__model_version_id": heads.get(task), f"{relation}__task": task})
        )

    rows = (
        sitemap_live(sitemap)
        .annotate(color_result=result(Task.COLOR), type_result=result(Task.IMAGE_TYPE))
        .values_list(*PHOTO_COLUMNS)
    )
    attributes = dict(sitemap.listings.values_list("id", "attributes"))
    fixes: dict[tuple[int, str], str | None] = {}
    for asset_id, task, label in (
        ManualFix.objects.filter(advertiser_id=sitemap.advertiser_id, task__in=[Task.COLOR, Task.IMAGE_TYPE])
        .order_by("-created_at", "-id")
        .values_list("asset_id", "task", "new_label")
        .iterator(chunk_size=10_000)
    ):
        fixes.setdefault((asset_id, task), label)
    out = []
    for pk, listing_id, asset_id, status, c_status, c_label, c_confidence, crop, t_status, t_label in rows.iterator(
        chunk_size=10_000
    ):
        type_label, _ = decide(
            Task.IMAGE_TYPE,
            Inputs(
                fix_label=fixes.get((asset_id, Task.IMAGE_TYPE)),
                model_status=t_status,
                model_label=t_label,
                placement_status=status,
            ),
        )
        scrape = scrape_color_of(attributes.get(listing_id) or {})
        color_label, source = decide(
            Task.COLOR,
            Inputs(
                fix_label=fixes.get((asset_id, Task.COLOR)),
                scrape_color=scrape,
                model_status=c_status,
                model_label=c_label,
                placement_status=status,
                type_label=type_label,
            ),
        )
        color: str | None = None
        if crop == NO_VEHICLE:
            color = None
        elif source == Source.FIX and color_label:
            color = color_label.lower()
        elif source in (Source.SCRAPE, Source.MODEL) and c_status == OK and (c_confidence or 0.0) >= LOW_CONFIDENCE:
            color = (c_label or "").lower() or None
        contradicts = color is not None and scrape is not None and color != scrape.lower()
        out.append(ObservedPhoto(pk, listing_id, color, contradicts))
    return out


def _disagreements(photos: list[ObservedPhoto]) -> dict[int, tuple[int, int]]:
    """listing id -> (distinct observed colors, photos contradicting the scrape) of the disagreeing listings."""
    colors: dict[int, set[str]] = {}
    contradictions: dict[int, int] = {}
    for photo in photos:
        if photo.color is None:
            continue
        colors.setdefault(photo.listing_id, set()).add(photo.color)
        contradictions[photo.listing_id] = contradictions.get(photo.listing_id, 0) + photo.contradicts_scrape
    return {
        listing_id: (len(seen), contradictions[listing_id])
        for listing_id, seen in sorted(colors.items())
        if len(seen) >= 2 or contradictions[listing_id]
    }


def listing_color_disagreements(*, sitemap: Sitemap, heads: Mapping[str, int] | None = None) -> list[dict[str, int]]:
    """The listings of the sitemap whose live photos disagree on the color: rows of {listing_id, colors,
    contradictions} (distinct observed colors; photos contradicting the scrape's color), in listing order.

    A listing disagrees when its photos observe two colors or more, or one that the scrape's color contradicts
    (see observed_colors for what each photo observes and what it ignores).
    """
    return [
        {"listing_id": listing_id, "colors": colors, "contradictions": contradictions}
        for listing_id, (colors, contradictions) in _disagreements(
            observed_colors(sitemap=sitemap, heads=heads)
        ).items()
    ]


def listing_disagrees_filter(*, sitemap: Sitemap) -> tuple[Q, Case]:
    """For the grid: (the filter to the photos of disagreeing listings, an ordering key that puts the photos
    contradicting their listing's scrape color first), from one pass of observed_colors."""
    photos = observed_colors(sitemap=sitemap)
    contradicting = [photo.placement_id for photo in photos if photo.contradicts_scrape]
    first = Case(When(id__in=contradicting, then=Value(0)), default=Value(1))
    return Q(listing_id__in=list(_disagreements(photos))), first


# Reused pictures --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReusedPicture:
    picture: int  # cluster id, or the asset's id until it is clustered
    listings: int  # live listings showing it where the model does not call it Placeholder or Stock
    advertisers: int  # advertisers of those listings
    model_label: str  # the active image_type model's label (Dealer, or any label but Placeholder and Stock)
    placement: Placement  # a representative (with asset and listing__sitemap__advertiser loaded)


def _reuse_groups(*, advertiser_ids: Iterable[int] | None, min_listings: int | None) -> QuerySet:
    """Rows of {picture, listings, advertisers, model_label, representative} for the pictures shown in
    `min_listings` or more live listings (of these advertisers) where the active image_type model calls them
    neither Placeholder nor Stock. Nothing without an active image_type model."""
    heads = active_heads()
    relation = "asset__classifications"
    placements = live_placements().filter(asset__isnull=False)
    if advertiser_ids is not None:
        placements = placements.filter(listing__sitemap__advertiser_id__in=list(advertiser_ids))
    return (
        placements.annotate(
            type_result=FilteredRelation(
                relation,
                condition=Q(
                    **{
                        f"{relation}__model_version_id": heads.get(Task.IMAGE_TYPE),
                        f"{relation}__task": Task.IMAGE_TYPE,
                    }
                ),
            )
        )
        .filter(type_result__status=OK)
        .annotate(type_label=Lower("type_result__label"))
        .exclude(type_label__in=REUSE_EXPECTED_TYPES)
        .annotate(picture=picture())
        .values("picture")
        .annotate(
            listings=Count("listing_id", distinct=True),
            advertisers=Count("listing__sitemap__advertiser_id", distinct=True),
            model_label=Max("type_result__label"),
            representative=Min("id"),
        )
        .filter(listings__gte=settings.REUSED_PICTURE_LISTINGS if min_listings is None else min_listings)
        .order_by()
    )


def reused_pictures(
    *, advertiser_ids: Iterable[int] | None = None, min_listings: int | None = None, limit: int | None = None
) -> list[ReusedPicture]:
    """Pictures (same asset or same near-duplicate cluster) shown in `min_listings` (settings.
    REUSED_PICTURE_LISTINGS) or more live listings that the active image_type model calls neither Placeholder
    nor Stock: almost always a placeholder or a stock render. The most reused first. `advertiser_ids` counts
    within those advertisers only (None: across every advertiser). Three queries whatever the number of rows.
    """
    groups = _reuse_groups(advertiser_ids=advertiser_ids, min_listings=min_listings).order_by("-listings", "picture")
    rows = list(groups[:limit] if limit is not None else groups)
    placements = Placement.objects.select_related("asset", "listing__sitemap__advertiser").in_bulk(
        [row["representative"] for row in rows]
    )
    return [
        ReusedPicture(
            row["picture"], row["listings"], row["advertisers"], row["model_label"], placements[row["representative"]]
        )
        for row in rows
    ]


def reused_filter(*, sitemap: Sitemap) -> Q:
    """For the grid: the sitemap's photos whose picture is reused (counted within the sitemap's advertiser, so
    the portal's grid says nothing about other advertisers). A subquery: the page stays one query."""
    reused = _reuse_groups(advertiser_ids=[sitemap.advertiser_id], min_listings=None).values("picture")
    return Q(asset__cluster_id__in=reused) | Q(asset__cluster_id__isnull=True, asset_id__in=reused)


def picture_usage(*, asset: ImageAsset, advertiser_id: int | None = None) -> tuple[int, int]:
    """(live listings, advertisers) showing the asset's picture (the asset or a near-duplicate), one query;
    `advertiser_id` counts that advertiser's listings only (the portal)."""
    placements = live_placements().filter(in_pictures([picture_of(asset)]))
    if advertiser_id is not None:
        placements = placements.filter(listing__sitemap__advertiser_id=advertiser_id)
    usage = placements.aggregate(
        listings=Count("listing_id", distinct=True), advertisers=Count("listing__sitemap__advertiser_id", distinct=True)
    )
    return usage["listings"], usage["advertisers"]
