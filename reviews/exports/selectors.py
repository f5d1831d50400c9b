"""Reads of the dataset export: which human labels may go in, what keeps some out, and what an export holds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import BigIntegerField, Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Least

from catalog.models import TASK_LABELS, Placement, Task
from reviews.accuracy import latest_human_fixes
from reviews.effective import PLACEHOLDER, ColumnNames, annotate_effective
from reviews.expressions import active_heads, advertiser_conflicts, disagreements, live_placements, picture
from reviews.models import DatasetExport, ExportExclusion, ExportItem, ManualFix

KEPT_DECISIONS = (ExportItem.Decision.NONE, ExportItem.Decision.KEEP)


@dataclass(frozen=True)
class Filters:
    """What an export takes: the human labels of `task` fixed since `since` (None: all), of these advertisers
    and fix sources (empty: all), on images at least `min_side` pixels on their shorter side."""

    task: str
    since: datetime | None = None
    advertiser_ids: tuple[int, ...] = ()
    sources: tuple[str, ...] = ()
    min_side: int = 64
    extends_id: int | None = None


def training_cutoff(*, task: str) -> DatasetExport | None:
    """The export of `task` most recently used for training (None when none was): a new export takes the fixes
    made since it was built."""
    return (
        DatasetExport.objects.filter(task=task, used_for_training_at__isnull=False)
        .order_by("-used_for_training_at", "-id")
        .first()
    )


def _live_of_scope() -> QuerySet[Placement]:
    """Live placements of the outer fix's (advertiser, asset)."""
    return live_placements().filter(
        asset_id=OuterRef("asset_id"), listing__sitemap__advertiser_id=OuterRef("advertiser_id")
    )


def export_candidates(filters: Filters) -> QuerySet[ManualFix]:
    """The human label in effect (latest staff, API or portal fix; a confirmation counts, a carried fix does not)
    of every (advertiser, asset) that may go in: it matches the filters and the advertiser still shows the image,
    or it was an item (kept) of the export being extended. Annotated with `ok_listing` (a listing where the image
    is live and fetched, None when every live placement failed), `min_side` and `picture`.
    """
    fixes = latest_human_fixes().filter(task=filters.task)
    new = Q(Exists(_live_of_scope()))
    if filters.since is not None:
        new &= Q(created_at__gte=filters.since)
    if filters.advertiser_ids:
        new &= Q(advertiser_id__in=filters.advertiser_ids)
    if filters.sources:
        new &= Q(source__in=filters.sources)
    kept = ExportItem.objects.filter(
        export_id=filters.extends_id,
        advertiser_id=OuterRef("advertiser_id"),
        asset_id=OuterRef("asset_id"),
        decision__in=KEPT_DECISIONS,
    )
    fixes = fixes.filter(new | Q(Exists(kept))) if filters.extends_id is not None else fixes.filter(new)
    ok_listing = _live_of_scope().filter(status=Placement.Status.OK).order_by("listing_id").values("listing_id")[:1]
    return fixes.annotate(
        ok_listing=Subquery(ok_listing, output_field=BigIntegerField()),
        min_side=Least("asset__width", "asset__height"),
        picture=picture(),
    )


def export_has_candidates(filters: Filters) -> bool:
    """Whether any label passes the filters and the cheap exclusions (a fetched image of the minimum size, no
    unsettled conflict): one query, run before an export is created, so an empty one is never created."""
    scope = {"advertiser_id": OuterRef("advertiser_id"), "asset_id": OuterRef("asset_id"), "task": filters.task}
    return (
        export_candidates(filters)
        .filter(**{"ok_listing__isnull": False, "min_side__gte": filters.min_side})  # annotations
        .exclude(asset__original="")
        .filter(~Exists(disagreements().filter(**scope)), ~Exists(advertiser_conflicts().filter(**scope)))
        .exists()
    )


def conflicting_scopes(*, task: str) -> dict[str, set[tuple[int, int]]]:
    """Exclusion reason -> (advertiser id, asset id) of the unsettled conflicts of `task` (two queries)."""
    return {
        ExportExclusion.Reason.CONFLICT_STAFF: set(
            disagreements().filter(task=task).values_list("advertiser_id", "asset_id")
        ),
        ExportExclusion.Reason.CONFLICT_ADVERTISERS: set(
            advertiser_conflicts().filter(task=task).values_list("advertiser_id", "asset_id")
        ),
    }


def placeholder_scopes(*, scopes: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Of these (advertiser id, asset id), those whose effective image type is Placeholder on a live placement
    (the rule of reviews.effective: a placeholder has no color). One query."""
    scopes = set(scopes)
    if not scopes:
        return set()
    placements = live_placements().filter(
        asset_id__in={asset for _, asset in scopes},
        listing__sitemap__advertiser_id__in={advertiser for advertiser, _ in scopes},
    )
    label = ColumnNames(Task.IMAGE_TYPE).label
    rows = (
        annotate_effective(placements, [Task.IMAGE_TYPE], active_heads())
        .filter(**{label: PLACEHOLDER})
        .values_list("listing__sitemap__advertiser_id", "asset_id")
        .distinct()
    )
    return {(advertiser, asset) for advertiser, asset in rows if (advertiser, asset) in scopes}


def earlier_test(*, export: DatasetExport) -> tuple[set[int], set[int]]:
    """Assets, and pictures (near-duplicate clusters), that were in test in an earlier export of the same task."""
    rows = (
        ExportItem.objects.filter(export__task=export.task, export_id__lt=export.pk, split=ExportItem.Split.TEST)
        .annotate(picture=picture())
        .values_list("asset_id", "picture")
        .distinct()
    )
    assets: set[int] = set()
    pictures: set[int] = set()
    for asset, seen in rows:
        assets.add(asset)
        pictures.add(seen)
    return assets, pictures


def extended_items(*, export_id: int) -> dict[tuple[int, int], tuple[str, str, int | None]]:
    """(advertiser id, asset id) -> (label, split, listing id) of the kept items of an export."""
    rows = ExportItem.objects.filter(export_id=export_id, decision__in=KEPT_DECISIONS).values_list(
        "advertiser_id", "asset_id", "label", "split", "listing_id"
    )
    return {(advertiser, asset): (label, split, listing) for advertiser, asset, label, split, listing in rows}


def extended_drops(*, export_id: int) -> set[tuple[int, int, int | None]]:
    """(advertiser id, asset id, fix id) of the items an export dropped after a second look."""
    return set(
        ExportItem.objects.filter(export_id=export_id, decision=ExportItem.Decision.DROP).values_list(
            "advertiser_id", "asset_id", "fix_id"
        )
    )


# What an export holds.


@dataclass(frozen=True)
class LabelCounts:
    label: str
    train: int
    test: int

    @property
    def total(self) -> int:
        return self.train + self.test


@dataclass(frozen=True)
class ExportSummary:
    """Per label train/test counts, the totals and the imbalance ratio (largest class / smallest class)."""

    labels: list[LabelCounts]
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def train(self) -> int:
        return sum(row.train for row in self.labels)

    @property
    def test(self) -> int:
        return sum(row.test for row in self.labels)

    @property
    def total(self) -> int:
        return self.train + self.test

    @property
    def imbalance(self) -> float | None:
        """Largest class / smallest class (None without items)."""
        totals = [row.total for row in self.labels if row.total]
        return round(max(totals) / min(totals), 2) if totals else None


def split_counts(*, export: DatasetExport) -> dict[str, dict[str, int]]:
    """{"train": {label: n}, "test": {label: n}} of the items that go in (not dropped), labels sorted. One query."""
    counts: dict[str, dict[str, int]] = {ExportItem.Split.TRAIN: {}, ExportItem.Split.TEST: {}}
    rows = (
        ExportItem.objects.filter(export=export)
        .exclude(decision=ExportItem.Decision.DROP)
        .values_list("split", "label")
        .annotate(n=Count("id"))
        .order_by("split", "label")
    )
    for split, label, n in rows:
        counts[split][label] = n
    return counts


def exclusion_counts(*, export: DatasetExport) -> dict[str, int]:
    """{reason: n} of what the export left out. One query."""
    rows = export.exclusions.values_list("reason").annotate(n=Count("id")).order_by("reason")
    return dict(rows)


def export_summary(export: DatasetExport) -> ExportSummary:
    """Class counts of an export from its stored counts (no query), labels in vocabulary order."""
    counts = export.counts or {}
    train, test = counts.get(ExportItem.Split.TRAIN, {}), counts.get(ExportItem.Split.TEST, {})
    labels = _ordered_labels(export.task, {*train, *test})
    rows = [LabelCounts(label, train.get(label, 0), test.get(label, 0)) for label in labels]
    return ExportSummary(rows, dict(export.excluded or {}))


def _ordered_labels(task: str, labels: set[str]) -> list[str]:
    vocabulary = list(TASK_LABELS.get(task, ()))
    return [label for label in vocabulary if label in labels] + sorted(labels - set(vocabulary))


def export_list() -> QuerySet[DatasetExport]:
    """Every export, newest first, with who made it."""
    return DatasetExport.objects.select_related("created_by", "extends", "model_version").order_by("-created_at", "-id")


def export_label_issues(*, export: DatasetExport, decisions: Sequence[str] = ()) -> QuerySet[ExportItem]:
    """The items flagged as likely label mistakes (pending, or kept/dropped after a look), least self-confident
    first, with their asset, advertiser and listing loaded."""
    flagged = (
        ExportItem.objects.filter(export=export)
        .exclude(decision=ExportItem.Decision.NONE)
        .select_related("asset", "advertiser", "listing")
    )
    if decisions:
        flagged = flagged.filter(decision__in=list(decisions))
    return flagged.order_by(F("self_confidence").asc(nulls_last=True), "id")


def export_exclusions(*, export: DatasetExport) -> QuerySet[ExportExclusion]:
    """What the export left out, by reason, with asset and advertiser loaded."""
    return export.exclusions.select_related("asset", "advertiser").order_by("reason", "id")


@dataclass(frozen=True)
class KindShare:
    """One vehicle kind's share of an export's items beside its share of the live inventory (distinct pictures)."""

    kind: str
    items: int
    items_share: float
    live: int
    live_share: float


def kind_shares(*, export: DatasetExport) -> list[KindShare]:
    """Each vehicle kind the active detector saw (classifier.contract.VEHICLE_KINDS; images without one are "none
    said") in the export's items and in the live inventory, with their shares: a kind whose share of the dataset
    falls below its share of the inventory is the one retrains let fade (issue 20). Two queries; empty when the
    active detector names no kind."""
    from classifier.models import Detection

    detections = Detection.objects.of_active_detector().exclude(kind="")
    live_assets = live_placements().filter(status=Placement.Status.OK).values("asset_id")
    in_inventory = detections.filter(asset_id__in=live_assets).order_by().values("kind")
    live = dict(in_inventory.annotate(n=Count("asset_id", distinct=True)).values_list("kind", "n"))
    if not live:
        return []
    kept = ExportItem.objects.filter(export=export).exclude(decision=ExportItem.Decision.DROP).values("asset_id")
    items = dict(
        detections.filter(asset_id__in=kept).values("kind").annotate(n=Count("asset_id")).values_list("kind", "n")
    )
    total_items, total_live = sum(items.values()), sum(live.values())
    kinds = sorted(set(live) | set(items), key=lambda kind: -live.get(kind, 0))
    return [
        KindShare(
            kind,
            items.get(kind, 0),
            round(items.get(kind, 0) / total_items, 4) if total_items else 0.0,
            live.get(kind, 0),
            round(live.get(kind, 0) / total_live, 4) if total_live else 0.0,
        )
        for kind in kinds
    ]
