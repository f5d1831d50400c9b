"""The review grid of a sitemap: its live images, filtered and sorted on the stored effective tags
(reviews.models.EffectiveTag, written from the one rule by reviews.effective_store), one page at a time.

Every filter and sort is a range of one of the store's indexes, joined to nothing but what the filter names. Pages
are keyset pages: a cursor is the sort key of the row a page starts after (or ends before), never an OFFSET, so the
last page costs what the first does. A page is a constant number of queries whatever the page, the filter or the
sitemap's size: one count (matches, rows before the cursor, reviewed ones), the page's rows, then the cards.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from django.db.models import Count, Exists, F, Field, Func, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Lower
from django.db.models.lookups import Exact, GreaterThan, GreaterThanOrEqual, IsNull, LessThan, LessThanOrEqual
from django.utils.http import urlencode

from catalog.models import TASK_LABELS, Outcome, Placement, Sitemap, Task
from classifier.contract import VEHICLE_KINDS
from classifier.models import Detection
from core.errors import ApplicationError

from .crosscheck import page_cluster_sizes, reused_filter
from .effective import Source
from .expressions import latest_fixes
from .models import NO_SCORE
from .models import EffectiveTag as StoredTag
from .paging import PageNumbers
from .selectors import EffectiveTag, effective_tags
from .similar import DEFAULT_LIMIT as SIMILAR_LIMIT
from .similar import MAX_LIMIT as SIMILAR_MAX
from .similar import MAX_QUERIES as SIMILAR_QUERIES
from .similar import SimilarImages, similar_in_sitemap

# The sort keys over the stored row; every sort ends with the placement id, so a key is unique. Each has its index.
SORTS: dict[str, tuple[str, ...]] = {
    "position": ("listing_id", "position", "placement_id"),
    "confidence": ("model_confidence", "placement_id"),
    "margin": ("model_margin", "placement_id"),
    "newest": ("placement_id",),  # the latest placements first
}
DESCENDING = frozenset({"newest"})
SCORES = frozenset({"model_confidence", "model_margin"})  # NULL sorts first, as NO_SCORE
AMBIGUOUS_MARGIN = 0.2
YES = ("1", "on", "true")
NO_LABEL = "none"  # in a tag condition: the task has no label
PER_PAGE = 100
# At most this many matches: the page reads them all and sorts them (see _page_rows).
SPARSE_ROWS = 2_000
MAX_CURSOR = 200  # characters: a cursor is a sort's name and at most four numbers


class GridFilterError(ApplicationError):
    """A filter that cannot be read safely (see similar_param)."""

    code = "bad_filter"


@dataclass
class GridFilters:
    task: str = Task.IMAGE_TYPE
    label: str = ""
    source: str = ""
    confidence_below: float | None = None
    ambiguous: bool = False
    failed: bool = False
    fixed: str = ""  # "yes", "no" or "": a fix of the advertiser in effect on the picture, whatever the task
    reviewed: str = ""  # "yes", "no" or "": a human fix or confirmation in effect for the task (source fix)
    listing: str = ""
    listing_disagrees: bool = False  # photos of listings whose photos disagree on the color (reviews.crosscheck)
    reused: bool = False  # pictures shown in many listings that the model calls neither Placeholder nor Stock
    run: int | None = None  # the health flags' links: what that Run did with the image ...
    outcome: str = ""  # ... (catalog.models.Outcome) ...
    reason: str = ""  # ... and why it failed (Placement.failure_reason)
    # The kind of vehicle the active detector saw in the crop (classifier.contract.VEHICLE_KINDS).
    kind: str = ""
    # Conditions on any task's tag: "<task>:<label>", "<task>:!<label>"; label "none" is no label.
    tags: tuple[str, ...] = ()
    # The sitemap's images most like these (reviews.similar; one image, or a selection): the `similar_count` best, in
    # the chosen sort's order. Empty: no such condition.
    similar_to: tuple[int, ...] = ()
    similar_count: int = SIMILAR_LIMIT
    sort: str = "position"
    # What similar_to found, once per filter object (see similar_of): not a parameter.
    found: tuple[int, SimilarImages] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_params(cls, params: Any) -> GridFilters:
        """From a query dict; anything malformed falls back to its default instead of failing the page."""
        task = params.get("task", Task.IMAGE_TYPE)
        try:
            below = float(params["confidence_below"]) if params.get("confidence_below") else None
        except ValueError:
            below = None
        try:
            run = int(params.get("run") or 0) or None
        except ValueError:
            run = None
        tags = params.getlist("tag") if hasattr(params, "getlist") else params.get("tag") or []
        return cls(
            similar_to=similar_param(params.get("similar_to")),
            similar_count=similar_count_param(params.get("similar_count")),
            task=task if task in Task.values else Task.IMAGE_TYPE,
            label=params.get("label", "").strip(),
            source=params.get("source", "") if params.get("source") in Source.ALL else "",
            confidence_below=below if below is None or 0 <= below <= 1 else None,
            ambiguous=params.get("ambiguous") in YES,
            failed=params.get("failed") in YES,
            fixed=params.get("fixed", "") if params.get("fixed") in ("yes", "no") else "",
            reviewed=params.get("reviewed", "") if params.get("reviewed") in ("yes", "no") else "",
            listing=params.get("listing", "").strip(),
            listing_disagrees=params.get("listing_disagrees") in YES,
            reused=params.get("reused") in YES,
            run=run if run is None or 0 < run < 2**63 else None,
            outcome=params.get("outcome", "") if params.get("outcome") in Outcome.values else "",
            reason=params.get("reason", "").strip()[:40],
            kind=params.get("kind", "") if params.get("kind") in VEHICLE_KINDS else "",
            tags=tuple(dict.fromkeys(tag for tag in map(tag_condition, _listed(tags)) if tag)),
            sort=params.get("sort", "position") if params.get("sort") in SORTS else "position",
        )

    def as_params(self) -> dict[str, str]:
        """The filter as query parameters, one value each (the tag conditions repeat: see as_pairs)."""
        out = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("tags", "found") or (item.name == "sort" and value == "position"):
                continue
            if item.name == "similar_count" and (not self.similar_to or value == SIMILAR_LIMIT):
                continue
            if item.name == "similar_to":
                if value:
                    out[item.name] = ",".join(map(str, value))
                continue
            if value not in (None, "", False):
                out[item.name] = "1" if value is True else str(value)
        return out

    def as_pairs(self) -> list[tuple[str, str]]:
        """Every query parameter of the filter, the tag conditions included (one pair each)."""
        return [*self.as_params().items(), *(("tag", tag) for tag in self.tags)]

    @property
    def needs_tags_in_sql(self) -> bool:
        return bool(
            self.label
            or self.source
            or self.confidence_below is not None
            or self.ambiguous
            or self.failed
            or self.reviewed
            or self.tags
            or self.listing_disagrees
            or self.reused
        ) or (self.sort in ("confidence", "margin"))


def similar_param(value: object) -> tuple[int, ...]:
    """The `similar_to` parameter: image ids, comma-separated (one, or a grid selection of up to SIMILAR_QUERIES);
    empty when absent. Malformed, it is refused (GridFilterError) instead of falling back to no filter as the others
    do: a bulk retag of "the images like X" must never become a retag of the whole sitemap."""
    if value in (None, ""):
        return ()
    parts = [part.strip() for part in str(value).split(",")]
    if len(parts) > SIMILAR_QUERIES or not all(
        part.isascii() and part.isdigit() and 0 < int(part) < 2**63 for part in parts
    ):
        raise GridFilterError(
            f"similar_to must be up to {SIMILAR_QUERIES} image ids (positive whole numbers, comma-separated),"
            f" not {str(value)[:40]!r}"
        )
    return tuple(dict.fromkeys(int(part) for part in parts))


def similar_count_param(value: object) -> int:
    """The `similar_count` parameter: how many of the most similar images (SIMILAR_LIMIT when absent); refused when
    malformed or out of range, as `similar_to` is."""
    if value in (None, ""):
        return SIMILAR_LIMIT
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= SIMILAR_MAX:
        raise GridFilterError(f"similar_count must be a whole number from 1 to {SIMILAR_MAX}, not {str(value)[:40]!r}")
    return int(text)


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def tag_condition(text: object) -> str:
    """A tag condition ("<task>:<label>" or "<task>:!<label>", label "none" for no label) in its canonical spelling,
    or "" when it names no task or no label of the task."""
    task, _, label = str(text).partition(":")
    negate, label = label.startswith("!"), label.removeprefix("!").strip()
    if task not in TASK_LABELS:
        return ""
    known = {name.lower(): name for name in TASK_LABELS[task]} | {NO_LABEL: NO_LABEL}
    canonical = known.get(label.lower())
    return f"{task}:{'!' if negate else ''}{canonical}" if canonical else ""


@dataclass
class GridItem:
    placement: Placement
    tags: dict[str, EffectiveTag]
    cluster_size: int = 0  # live placements of the sitemap showing the same picture (near-duplicates included)


@dataclass
class GridPage(PageNumbers):
    """A keyset page: `before` rows of the filter come before it, `total` match, `reviewed_count` of them have a
    human fix or confirmation in effect for the task. Links carry a cursor (the sort key of the first or last row),
    the last page link a marker: every link costs the same queries."""

    items: list[GridItem]
    number: int
    total: int
    per_page: int
    filters: GridFilters
    labels: tuple[str, ...] = field(default=())
    before: int = 0
    reviewed_count: int = 0
    first_key: str = ""  # cursors of the first and the last row shown
    last_key: str = ""
    paging: dict[str, str] = field(default_factory=dict)  # the parameters that ask for this page again

    @property
    def has_previous(self) -> bool:
        return self.before > 0

    @property
    def has_next(self) -> bool:
        return self.before + len(self.items) < self.total

    def _query(self, **paging: str) -> str:
        return urlencode([*self.filters.as_pairs(), *paging.items()])

    @property
    def first_query(self) -> str:
        return self._query()

    @property
    def previous_query(self) -> str:
        return self._query(before=self.first_key)

    @property
    def next_query(self) -> str:
        return self._query(after=self.last_key)

    @property
    def last_query(self) -> str:
        return self._query(page="last")


@dataclass(frozen=True)
class Paging:
    """Which page: the first (no cursor), after or before a cursor, or the last."""

    after: tuple[Any, ...] | None = None
    before: tuple[Any, ...] | None = None
    last: bool = False

    @classmethod
    def from_params(cls, params: Any, *, filters: GridFilters) -> Paging:
        """From `after`, `before` (cursors) or `page=last`; a malformed cursor, or one of another sort, is the
        first page."""
        if params.get("page") == "last":
            return cls(last=True)
        if params.get("after"):
            return cls(after=decode_cursor(params["after"], filters=filters))
        if params.get("before"):
            return cls(before=decode_cursor(params["before"], filters=filters))
        return cls()

    def as_params(self, *, filters: GridFilters) -> dict[str, str]:
        if self.last:
            return {"page": "last"}
        if self.after is not None:
            return {"after": encode_cursor(self.after, filters=filters)}
        if self.before is not None:
            return {"before": encode_cursor(self.before, filters=filters)}
        return {}


def encode_cursor(key: tuple[Any, ...], *, filters: GridFilters) -> str:
    """An opaque cursor: the sort's name and the key's values, JSON in URL-safe base64."""
    text = json.dumps([filters.sort, *key], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(text: str, *, filters: GridFilters) -> tuple[Any, ...] | None:
    """The key of a cursor of the filter's sort, or None when it is malformed or of another sort."""
    if len(text) > MAX_CURSOR:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(values, list) or values[:1] != [filters.sort] or len(values) != len(sort_keys(filters)) + 1:
        return None
    key = tuple(values[1:])
    return key if all(_sort_value(v) for v in key) else None


def _sort_value(value: object) -> bool:
    """A value a sort key can hold: a 64-bit integer or a finite number."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float) and math.isfinite(value)


class Row(Func):
    """A row value, `(a, b, c)`: compared with another, it is the lexicographic order of the sort key."""

    template = "(%(expressions)s)"
    output_field = Field()


def sort_keys(filters: GridFilters, *, prefix: str = "") -> list[F | Coalesce]:
    """The sort key's expressions over the stored row (`prefix` names the row from a Placement queryset); "listing
    disagrees" puts the photos contradicting their listing's scrape color first."""
    names = (["listing_check"] if filters.listing_disagrees else []) + list(SORTS[filters.sort])
    return [Coalesce(F(prefix + name), Value(NO_SCORE)) if name in SCORES else F(prefix + name) for name in names]


def reviewed_q(prefix: str = "") -> Q:
    """A stored row a human reviewed: a fix or confirmation is in effect for its task (the grid's `reviewed=yes`,
    its "x of N reviewed", and the portal's counts of what is left to review)."""
    return Q(**{prefix + "source": Source.FIX})


def failed_q(prefix: str = "") -> Q:
    """A stored row with no tag because the image or the model failed (the grid's `failed=1`, the portal's counts)."""
    return Q(**{prefix + "source": Source.FAILED})


def _conditions(sitemap: Sitemap, filters: GridFilters, *, prefix: str, placement: str) -> Q:
    """The filter over the stored row of the chosen task (`prefix`: the path to it; `placement`: to the placement id).
    Each condition is a range of one of the store's indexes, or a lookup by (placement, task) for the others' tags."""

    def q(**lookups: Any) -> Q:
        return Q(**{prefix + name: value for name, value in lookups.items()})

    condition = q(sitemap=sitemap, task=filters.task, live=True)
    if filters.label:
        condition &= Q(Exact(Lower(F(prefix + "label")), filters.label.lower()))  # the index's Lower(label)
    if filters.source:
        condition &= q(source=filters.source)
    if filters.confidence_below is not None:
        below = Q(LessThan(Coalesce(F(prefix + "model_confidence"), Value(NO_SCORE)), filters.confidence_below))
        condition &= below & q(source=Source.MODEL, model_confidence__lt=filters.confidence_below)
    if filters.ambiguous:
        below = Q(LessThan(Coalesce(F(prefix + "model_margin"), Value(NO_SCORE)), AMBIGUOUS_MARGIN))
        condition &= below & q(source=Source.MODEL, model_margin__lt=AMBIGUOUS_MARGIN)
    if filters.failed:
        condition &= failed_q(prefix)
    if filters.reviewed:
        condition &= reviewed_q(prefix) if filters.reviewed == "yes" else ~reviewed_q(prefix)
    if filters.listing:
        condition &= q(listing__external_id=filters.listing) | q(listing__url__icontains=filters.listing)
    if filters.fixed:
        any_fix = Exists(latest_fixes().filter(advertiser_id=sitemap.advertiser_id, asset_id=OuterRef("asset_id")))
        condition &= Q(any_fix) if filters.fixed == "yes" else ~Q(any_fix)
    if filters.run is not None:
        condition &= q(placement__last_run_id=filters.run)
    if filters.outcome:
        condition &= q(placement__outcome=filters.outcome)
    if filters.reason:
        condition &= q(placement__failure_reason=filters.reason)
    if filters.listing_disagrees:
        condition &= q(listing_check__isnull=False)
    if filters.kind:
        condition &= Q(Exists(detections_of_kind(filters.kind)))
    similar = similar_of(sitemap, filters)
    if similar is not None:
        condition &= Q(**{f"{placement}__in": similar.placement_ids})
    if filters.reused:
        condition &= reused_filter(sitemap=sitemap, prefix=prefix)
    for tag in filters.tags:
        task, _, label = tag.partition(":")
        negate, label = label.startswith("!"), label.removeprefix("!")
        if task == filters.task:  # a condition on the row itself
            own = _has_label(label, prefix=prefix)
            condition &= ~own if negate else own
            continue
        # The other task's row of the placement: the same sitemap and liveness, so its indexes serve the lookup.
        other = StoredTag.objects.filter(
            _has_label(label), placement_id=OuterRef(placement), sitemap=sitemap, task=task, live=True
        )
        condition &= ~Q(Exists(other)) if negate else Q(Exists(other))
    return condition


def detections_of_kind(kind: str) -> QuerySet[Detection]:
    """The active detector's box of the outer row's asset, when it holds a vehicle of this kind."""
    return Detection.objects.of_active_detector().filter(asset_id=OuterRef("asset_id"), kind=kind)


def similar_of(sitemap: Sitemap, filters: GridFilters) -> SimilarImages | None:
    """The images `similar_to` names (reviews.similar), found once per filter object: a page's counts, its rows and
    its banner, or a bulk step's count, sample and token, all read the very same images."""
    if not filters.similar_to:
        return None
    if filters.found is None or filters.found[0] != sitemap.pk:
        found = similar_in_sitemap(sitemap=sitemap, placement_ids=filters.similar_to, limit=filters.similar_count)
        filters.found = (sitemap.pk, found)
    return filters.found[1]


def _has_label(label: str, *, prefix: str = "") -> Q:
    """The stored row has this label (any case), or none for NO_LABEL."""
    if label == NO_LABEL:  # written on Lower(label), as the index is: a label is NULL exactly when its Lower() is
        return Q(IsNull(Lower(F(f"{prefix}label")), True))
    return Q(Exact(Lower(F(f"{prefix}label")), label.lower()))


def grid_rows(*, sitemap: Sitemap, filters: GridFilters) -> QuerySet[StoredTag]:
    """The stored rows (the chosen task's) of the sitemap's live images that match the filters, unordered."""
    return StoredTag.objects.filter(_conditions(sitemap, filters, prefix="", placement="placement_id"))


def sitemap_placements(*, sitemap: Sitemap, filters: GridFilters) -> QuerySet[Placement]:
    """The sitemap's live placements matching the filters, in the chosen order (for the API or a bulk retag):
    one join to the stored row of the chosen task."""
    prefix = "effective_tags__"
    keys = sort_keys(filters, prefix=prefix)
    order = [key.desc() if filters.sort in DESCENDING else key.asc() for key in keys]
    return Placement.objects.filter(_conditions(sitemap, filters, prefix=prefix, placement="pk")).order_by(*order)


def _page_rows(
    rows: QuerySet[StoredTag], filters: GridFilters, paging: Paging, limit: int, *, dense: bool
) -> list[tuple[int, tuple[Any, ...]]]:
    """(placement id, sort key) of the page's rows in the sort's order, one query. `dense`: an index range read in
    the sort's order until `limit` rows match; else (few matches, at most SPARSE_ROWS) every match after the cursor,
    sorted here: an ordered scan would read the whole range to find a few rows."""
    keys = sort_keys(filters)
    names = [f"key_{n}" for n in range(len(keys))]
    descending = filters.sort in DESCENDING
    backwards = paging.before is not None or paging.last  # read from the end, then turn the rows around
    cursor = paging.before if paging.before is not None else paging.after
    queryset = rows.annotate(**dict(zip(names, keys, strict=True)))
    if cursor is not None:
        ahead = LessThan if backwards != descending else GreaterThan
        queryset = queryset.filter(ahead(Row(*keys), Row(*(Value(v) for v in cursor))))
    reverse = backwards != descending
    if dense:
        order = [F(name).desc() if reverse else F(name).asc() for name in names]
        matches = queryset.order_by(*order).values_list("placement_id", *names)[:limit]
        found = [(row[0], tuple(row[1:])) for row in matches]
    else:
        every = [(row[0], tuple(row[1:])) for row in queryset.order_by().values_list("placement_id", *names)]
        found = sorted(every, key=lambda row: row[1], reverse=reverse)[:limit]
    return found[::-1] if backwards else found


def _counts(rows: QuerySet[StoredTag], filters: GridFilters, paging: Paging) -> dict[str, int]:
    """Matches, reviewed matches, and the rows up to the cursor (up to and with it after `after`, before it for
    `before`), in one pass over the filter's index range."""
    # Counted on placement_id: it is in every index the filters use, so the count reads the index alone.
    counts = {"total": Count("placement_id"), "reviewed": Count("placement_id", filter=reviewed_q())}
    cursor = paging.after if paging.after is not None else paging.before
    if cursor is not None:
        descending = filters.sort in DESCENDING
        if paging.after is not None:
            upto: Any = GreaterThanOrEqual if descending else LessThanOrEqual
        else:
            upto = GreaterThan if descending else LessThan
        position = upto(Row(*sort_keys(filters)), Row(*(Value(v) for v in cursor)))
        counts["upto"] = Count("placement_id", filter=Q(position))
    return {"upto": 0, **rows.aggregate(**counts)}


def sitemap_grid(
    *,
    sitemap: Sitemap,
    filters: GridFilters,
    paging: Paging | None = None,
    per_page: int = PER_PAGE,
    cluster_sizes: bool = True,
) -> GridPage:
    """One keyset page of the grid with every task's effective tag per image (the first page without `paging`).

    Two queries find the page, whichever it is: the counts (matches, reviewed ones, rows before the cursor), then
    the page's rows; then the cards (placements, their tags, and with `cluster_sizes` their clusters' sizes). The
    screen and the API read pages alike (reviews.apis.SitemapImageListApi)."""
    paging = paging or Paging()
    rows = grid_rows(sitemap=sitemap, filters=filters)
    counts = _counts(rows, filters, paging)
    total = counts["total"]
    # The last page holds what is left after whole pages, as if paged from the first.
    limit = ((total - 1) % per_page + 1 if total else 0) if paging.last else per_page
    found = _page_rows(rows, filters, paging, limit, dense=total > SPARSE_ROWS) if limit and total else []
    if paging.last:
        before = total - len(found)
    elif paging.before is not None:
        before = max(0, counts["upto"] - len(found))
    else:
        before = counts["upto"]
    ids = [pk for pk, _ in found]
    loaded = Placement.objects.select_related("asset", "listing__sitemap").defer("failure_detail").in_bulk(ids)
    placements = [loaded[pk] for pk in ids]
    tags = effective_tags(placements)
    sizes = page_cluster_sizes(sitemap=sitemap, placements=placements) if cluster_sizes else {}
    return GridPage(
        items=[GridItem(placement=p, tags=tags[p.pk], cluster_size=sizes.get(p.pk, 0)) for p in placements],
        number=before // per_page + 1,
        total=total,
        per_page=per_page,
        filters=filters,
        labels=TASK_LABELS[filters.task],
        before=before,
        reviewed_count=counts["reviewed"],
        first_key=encode_cursor(found[0][1], filters=filters) if found else "",
        last_key=encode_cursor(found[-1][1], filters=filters) if found else "",
        paging=paging.as_params(filters=filters),
    )
