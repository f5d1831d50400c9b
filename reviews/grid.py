"""The review grid of a sitemap: its live images, filtered and sorted on effective tags in SQL, one page at
a time, in a constant number of queries whatever the page size or the sitemap's size."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Window,
)

from catalog.models import TASK_LABELS, Placement, Sitemap, Task

from .crosscheck import listing_disagrees_filter, page_cluster_sizes, reused_filter
from .effective import ColumnNames, Source, annotate_effective
from .expressions import active_heads
from .models import ManualFix
from .paging import PageNumbers
from .selectors import EffectiveTag, effective_tags

SORTS = {
    "position": ("listing_id", "position", "id"),
    "confidence": (F("model_confidence").asc(nulls_first=True), "id"),
    "margin": (F("model_margin").asc(nulls_first=True), "id"),
    "newest": ("-last_checked_at", "-id"),
}
AMBIGUOUS_MARGIN = 0.2


@dataclass
class GridFilters:
    task: str = Task.IMAGE_TYPE
    label: str = ""
    source: str = ""
    confidence_below: float | None = None
    ambiguous: bool = False
    failed: bool = False
    fixed: str = ""  # "yes", "no" or ""
    listing: str = ""
    listing_disagrees: bool = False  # photos of listings whose photos disagree on the color (reviews.crosscheck)
    reused: bool = False  # pictures shown in many listings that the model calls neither Placeholder nor Stock
    sort: str = "position"

    @classmethod
    def from_params(cls, params: Any) -> GridFilters:
        """From a query dict; anything malformed falls back to its default instead of failing the page."""
        task = params.get("task", Task.IMAGE_TYPE)
        try:
            below = float(params["confidence_below"]) if params.get("confidence_below") else None
        except ValueError:
            below = None
        return cls(
            task=task if task in Task.values else Task.IMAGE_TYPE,
            label=params.get("label", "").strip(),
            source=params.get("source", "") if params.get("source") in _SOURCES else "",
            confidence_below=below,
            ambiguous=params.get("ambiguous") in ("1", "on", "true"),
            failed=params.get("failed") in ("1", "on", "true"),
            fixed=params.get("fixed", "") if params.get("fixed") in ("yes", "no") else "",
            listing=params.get("listing", "").strip(),
            listing_disagrees=params.get("listing_disagrees") in ("1", "on", "true"),
            reused=params.get("reused") in ("1", "on", "true"),
            sort=params.get("sort", "position") if params.get("sort") in SORTS else "position",
        )

    def as_params(self) -> dict[str, str]:
        out = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value not in (None, "", False) and not (item.name == "sort" and value == "position"):
                out[item.name] = "1" if value is True else str(value)
        return out

    @property
    def needs_tags_in_sql(self) -> bool:
        return bool(
            self.label
            or self.source
            or self.confidence_below is not None
            or self.ambiguous
            or self.failed
            or self.listing_disagrees
            or self.reused
        ) or (self.sort in ("confidence", "margin"))


_SOURCES = Source.ALL


@dataclass
class GridItem:
    placement: Placement
    tags: dict[str, EffectiveTag]
    cluster_size: int = 0  # live placements of the sitemap showing the same picture (near-duplicates included)


@dataclass
class GridPage(PageNumbers):
    items: list[GridItem]
    number: int
    total: int
    per_page: int
    filters: GridFilters
    labels: tuple[str, ...] = field(default=())


def sitemap_placements(*, sitemap: Sitemap, filters: GridFilters) -> QuerySet[Placement]:
    """The sitemap's live placements matching the filters, in the chosen order (for a page or a bulk retag)."""
    queryset: QuerySet[Any] = Placement.objects.filter(listing__sitemap=sitemap, is_gone=False, listing__is_gone=False)
    if filters.listing:
        queryset = queryset.filter(Q(listing__external_id=filters.listing) | Q(listing__url__icontains=filters.listing))
    if filters.fixed:
        any_fix = Exists(ManualFix.objects.filter(advertiser_id=sitemap.advertiser_id, asset_id=OuterRef("asset_id")))
        queryset = queryset.filter(any_fix if filters.fixed == "yes" else ~any_fix)
    if filters.needs_tags_in_sql:
        queryset = _with_effective_tag(queryset, task=filters.task)
        if filters.label:
            queryset = queryset.filter(effective_label__iexact=filters.label)
        if filters.source:
            queryset = queryset.filter(effective_source=filters.source)
        if filters.confidence_below is not None:
            queryset = queryset.filter(effective_source=Source.MODEL, model_confidence__lt=filters.confidence_below)
        if filters.ambiguous:
            queryset = queryset.filter(effective_source=Source.MODEL, model_margin__lt=AMBIGUOUS_MARGIN)
        if filters.failed:
            queryset = queryset.filter(effective_source=Source.FAILED)
    order: tuple[Any, ...] = SORTS[filters.sort]
    if filters.reused:
        queryset = queryset.filter(reused_filter(sitemap=sitemap))
    if filters.listing_disagrees:
        disagreeing, contradicting_first = listing_disagrees_filter(sitemap=sitemap)
        queryset = queryset.filter(disagreeing)
        order = (contradicting_first, *order)
    return queryset.order_by(*order)


def _with_effective_tag(queryset: QuerySet[Any], *, task: str) -> QuerySet[Any]:
    """Annotates the task's effective label and source by the one rule (reviews.effective), under the names the
    filters and sorts use."""
    column = ColumnNames(task)
    queryset = annotate_effective(queryset, [task], active_heads())
    return queryset.annotate(
        effective_label=F(column.label),
        effective_source=F(column.source),
        model_confidence=F(column("model_confidence")),
        model_margin=F(column("model_margin")),
    )


def _page_ids_and_total(queryset: QuerySet[Placement], page: int, per_page: int) -> tuple[list[int], int]:
    """A page of ids and the number of matches in one pass of the filter (COUNT(*) OVER ()), not two."""
    rows = list(
        queryset.annotate(matches=Window(Count("id"))).values_list("id", "matches")[
            (page - 1) * per_page : page * per_page
        ]
    )
    if rows:
        return [pk for pk, _ in rows], rows[0][1]
    return [], queryset.count() if page > 1 else 0


def sitemap_grid(*, sitemap: Sitemap, filters: GridFilters, page: int = 1, per_page: int = 100) -> GridPage:
    """One page of the grid with every task's effective tag per image."""
    queryset = sitemap_placements(sitemap=sitemap, filters=filters)
    # The page's ids first, from the narrow ordered index (an OFFSET then skips index entries, not joined
    # rows), then those rows with what the cards show.
    if filters.needs_tags_in_sql:  # one pass of the costly filter gives the page and the count
        page = max(1, page)
        ids, total = _page_ids_and_total(queryset, page, per_page)
        if not ids:  # past the last page: show the last one (the first when nothing matches)
            page = max(1, -(-total // per_page))
            ids, total = _page_ids_and_total(queryset, page, per_page) if total else ([], 0)
    else:  # the count the last Run's sync stored when unfiltered, else a cheap exact count
        unfiltered = filters == GridFilters(task=filters.task, sort=filters.sort)
        total = sitemap.live_images if unfiltered and sitemap.live_images is not None else queryset.count()
        page = min(max(1, page), max(1, -(-total // per_page)))
        ids = list(queryset.values_list("id", flat=True)[(page - 1) * per_page : page * per_page])
    rows = Placement.objects.select_related("asset", "listing__sitemap").defer("failure_detail").in_bulk(ids)
    placements = [rows[pk] for pk in ids]
    tags = effective_tags(placements)
    sizes = page_cluster_sizes(sitemap=sitemap, placements=placements)
    return GridPage(
        items=[GridItem(placement=p, tags=tags[p.pk], cluster_size=sizes.get(p.pk, 0)) for p in placements],
        number=page,
        total=total,
        per_page=per_page,
        filters=filters,
        labels=TASK_LABELS[filters.task],
    )
