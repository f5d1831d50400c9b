"""Reviews that look across images: near-duplicate clusters, listings whose photos disagree on the color, and
pictures reused across many listings. Reads only (the cluster write is reviews.services.clusters), each a
constant number of queries, over the stored effective tags (reviews.models.EffectiveTag, written from the one rule
by reviews.effective_store), so none of them computes an image's tag per request.

A *picture* is what a reviewer sees as "the same photo": an asset's near-duplicate cluster
(`ImageAsset.cluster_id`), or the asset itself until it is clustered (reviews.expressions.picture()).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    F,
    IntegerField,
    Max,
    Min,
    PositiveSmallIntegerField,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import Lower, NullIf, RowNumber

from catalog.models import TASK_LABELS, ImageAsset, Placement, Sitemap, Task
from classifier.models import Classification

from .effective import Source
from .expressions import live_placements
from .models import EffectiveTag as StoredTag
from .paging import PageNumbers
from .selectors import EffectiveTag, effective_tags

# A model's color below this confidence says too little to call a listing's photos inconsistent.
LOW_CONFIDENCE = 0.5
# What a reused picture is expected to be; a reused picture the model calls anything else is suspect.
REUSE_EXPECTED_TYPES = ("placeholder", "stock")
NO_VEHICLE = Classification.CropSource.NO_VEHICLE.value


def picture_of(asset: ImageAsset) -> int:
    """The picture (cluster id, or the asset's own id until it is clustered) of an asset."""
    return asset.cluster_id or asset.pk


def in_pictures(pictures: Iterable[int]) -> Q:
    """Placements showing one of these pictures; written on the indexed columns, not on the Coalesce."""
    ids = list(pictures)
    return Q(asset__cluster_id__in=ids) | Q(asset__cluster_id__isnull=True, asset_id__in=ids)


def stored_pictures(sitemap: Sitemap, task: str = Task.IMAGE_TYPE) -> QuerySet[StoredTag]:
    """The stored rows of the sitemap's live placements that show a picture: one per image (the task's row)."""
    return StoredTag.objects.filter(sitemap=sitemap, task=task, live=True, picture__isnull=False)


# Near-duplicate clusters ------------------------------------------------------------------------------------


def page_cluster_sizes(*, sitemap: Sitemap, placements: list[Placement]) -> dict[int, int]:
    """Placement id -> how many live placements of the sitemap show its picture, for a page of the grid: one
    grouped query on the stored pictures' index (none for an empty page). Placements need `asset` loaded."""
    by_picture = {p.pk: picture_of(p.asset) for p in placements if p.asset is not None}
    if not by_picture:
        return {}
    sizes = dict(
        stored_pictures(sitemap)
        .filter(picture__in=set(by_picture.values()))
        .values_list("picture")
        .annotate(size=Count("*"))
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
    member's effective label. `cluster_id` narrows it to one cluster. Constant queries whatever the page: the
    pictures, their sizes and the labels come from the stored tags' picture index.
    """
    rows = stored_pictures(sitemap, task)
    if cluster_id is not None:
        rows = rows.filter(picture=cluster_id)
    groups = rows.values("picture").annotate(size=Count("*")).order_by()
    page = max(1, page)
    ranked = groups.annotate(pictures=Window(Count("picture"))).order_by("-size", "picture")
    window = list(ranked.values_list("picture", "size", "pictures")[(page - 1) * per_page : page * per_page])
    if not window and page > 1:  # past the last page: the last one
        total = groups.count()
        page = max(1, -(-total // per_page))
        window = list(ranked.values_list("picture", "size", "pictures")[(page - 1) * per_page : page * per_page])
    if not window:
        return ClusterPage([], 1, 0, per_page, task, TASK_LABELS[task])
    total = window[0][2]
    sizes = {pic: size for pic, size, _ in window if pic is not None}  # stored_pictures has a picture
    members = list(
        rows.filter(picture__in=sizes)
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[F("picture")], order_by=[F("listing_id"), F("position"), F("placement_id")]
            )
        )
        .filter(rank__lte=members_per_row)
        .select_related("placement__asset", "placement__listing__sitemap")
        .defer("placement__failure_detail")
        .order_by("picture", "rank")
    )
    tags = effective_tags([row.placement for row in members], [task])
    counts: dict[int, list[tuple[str, int]]] = {}
    for pic, label, images in (
        rows.filter(picture__in=sizes).values_list("picture", "label").annotate(images=Count("*")).order_by()
    ):
        counts.setdefault(pic, []).append((label or "—", images))
    by_picture: dict[int, list[ClusterMember]] = {}
    for row in members:
        assert row.picture is not None  # noqa: S101 - stored_pictures has a picture
        by_picture.setdefault(row.picture, []).append(ClusterMember(row.placement, tags[row.placement_id][task]))
    cluster_rows = [
        ClusterRow(pic, size, by_picture.get(pic, []), sorted(counts.get(pic, []), key=lambda i: (-i[1], i[0])))
        for pic, size in sizes.items()
    ]
    return ClusterPage(cluster_rows, page, total, per_page, task, TASK_LABELS[task])


# Listing consistency ----------------------------------------------------------------------------------------


def observed_color() -> Case:
    """What a stored color row's photo says the vehicle's color is, lower case: a fix's label, or the active model's
    label where the color is the model's or the scrape's (the scrape wins the effective tag, so the photo's own word
    is the model's). None where the photo has nothing to say: a placeholder (rule source), no vehicle found
    (interior shots, details), a model tag below LOW_CONFIDENCE, a failed or unknown tag."""
    return Case(
        When(crop_source=NO_VEHICLE, then=Value(None)),
        When(source=Source.FIX, then=Lower("label")),
        When(
            source__in=(Source.SCRAPE, Source.MODEL),
            model_confidence__gte=LOW_CONFIDENCE,
            then=NullIf(Lower("model_label"), Value("")),
        ),
        default=Value(None),
        output_field=CharField(),
    )


def contradicting(colors: QuerySet[StoredTag]) -> QuerySet[StoredTag]:
    """The color rows whose photo observes a color that the listing's scrape color contradicts."""
    return (
        colors.annotate(observed=observed_color())
        .filter(observed__isnull=False, scrape_color__isnull=False)
        .exclude(observed=Lower("scrape_color"))
    )


def listing_colors(colors: QuerySet[StoredTag]) -> QuerySet[Any]:
    """Rows of {listing_id, colors, contradictions} of the disagreeing listings among these live color rows:
    distinct observed colors, and photos contradicting the scrape's color. A listing disagrees when its photos
    observe two colors or more, or one that the scrape's color contradicts (see observed_color)."""
    is_contradicting = Q(observed__isnull=False, scrape_color__isnull=False) & ~Q(observed=Lower("scrape_color"))
    return (
        colors.annotate(observed=observed_color())
        .values("listing_id")
        .annotate(
            colors=Count("observed", distinct=True),
            contradictions=Sum(Case(When(is_contradicting, then=1), default=0, output_field=IntegerField())),
        )
        .filter(Q(colors__gte=2) | Q(contradictions__gt=0))
        .order_by("listing_id")
    )


def listing_color_disagreements(*, sitemap: Sitemap) -> list[dict[str, int]]:
    """The listings of the sitemap whose live photos disagree on the color: rows of {listing_id, colors,
    contradictions}, in listing order; one grouped query over the stored color tags."""
    colors = StoredTag.objects.filter(sitemap=sitemap, task=Task.COLOR, live=True)
    return list(listing_colors(colors).values("listing_id", "colors", "contradictions"))


def listing_check(colors: QuerySet[StoredTag]) -> Case:
    """The listing check of an outer stored row (any task; reviews.models.EffectiveTag.ListingCheck), from the live
    color rows `colors` of its listing: "contradicts" for a live photo of a disagreeing listing whose own color
    contradicts the scrape's, "disagrees" for the other live photos of disagreeing listings, else None. The grid's
    "listing disagrees" filter and order read it from an index (reviews.effective_store keeps it)."""
    disagreeing = listing_colors(colors).values("listing_id")
    check = StoredTag.ListingCheck
    return Case(
        When(
            Q(live=True, listing_id__in=disagreeing, placement_id__in=contradicting(colors).values("placement_id")),
            then=Value(check.CONTRADICTS),
        ),
        When(live=True, listing_id__in=disagreeing, then=Value(check.DISAGREES)),
        default=Value(None),
        output_field=PositiveSmallIntegerField(),
    )


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
    neither Placeholder nor Stock. Nothing without an active image_type model (the stored model label is empty).

    Over the stored image type tags, in two steps: the pictures shown that many times at all (a count over the
    picture index alone, one query, its ids read here), then their listings and labels (the queryset returned).
    Counted within advertisers, it reads their sitemaps' ids first (one query): the picture index is by sitemap."""
    least = settings.REUSED_PICTURE_LISTINGS if min_listings is None else min_listings
    rows = StoredTag.objects.filter(task=Task.IMAGE_TYPE, live=True, picture__isnull=False)
    if advertiser_ids is not None:
        sitemaps = Sitemap.objects.filter(advertiser_id__in=list(advertiser_ids)).values_list("id", flat=True)
        rows = rows.filter(sitemap_id__in=list(sitemaps))
    shown_enough = list(
        rows.values("picture").annotate(shown=Count("*")).filter(shown__gte=least).values_list("picture", flat=True)
    )
    return (
        rows.filter(picture__in=shown_enough, model_label__isnull=False)
        .annotate(type_label=Lower("model_label"))
        .exclude(type_label__in=REUSE_EXPECTED_TYPES)
        .values("picture")
        .annotate(
            listings=Count("listing_id", distinct=True),
            advertisers=Count("sitemap__advertiser_id", distinct=True),
            model_label=Max("model_label"),
            representative=Min("placement_id"),
        )
        .filter(listings__gte=least)
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


def reused_filter(*, sitemap: Sitemap, prefix: str = "") -> Q:
    """For the grid's stored rows (`prefix`: the path to them): the sitemap's photos whose picture is reused (counted
    within the sitemap's advertiser, so the portal's grid says nothing about other advertisers). Three small queries
    (reused pictures are few); the filter is then a lookup of those pictures in the picture index."""
    reused = _reuse_groups(advertiser_ids=[sitemap.advertiser_id], min_listings=None).values_list("picture", flat=True)
    return Q(**{f"{prefix}picture__in": list(reused)})


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
