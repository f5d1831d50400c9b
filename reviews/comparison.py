"""What promoting a candidate would change, per advertiser, and how the active models age.

`candidate_flips` reads the candidate's shadow-pass results (its own Classification rows) beside the effective
tags of the one rule (reviews.effective.annotate_effective): a tag flips when it comes from the model today and
the candidate says something else. Fixes, scraped colors and a placeholder's "no color" (source "rule") do not
flip. It also says how many standing human fixes the candidate agrees with: the labels it would have got right.

`confident_flips` is the promotion guard's evidence where no human labelled: per advertiser, the confident model
tags in effect (`confident_model_tags`, >= training.CONFIDENT) that the candidate's shadow pass would change;
over 1% of an advertiser outside the candidate's export is a likely regression (registered with the promotion
service in ReviewsConfig.ready, so every way of promoting asks for an explicit override).

`accuracy_over_time` is the decay chart: per ISO week, the share of model tags that human fixes overturned.

Both cost a constant number of grouped queries whatever the number of advertisers and images.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import (
    CharField,
    Count,
    DateField,
    Exists,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.expressions import Window
from django.db.models.functions import Coalesce, RowNumber, TruncWeek
from django.utils import timezone

from catalog.models import Advertiser, Placement
from classifier.models import Classification, Detection, ModelVersion, Promotion
from classifier.services.promotion import Regression
from classifier.services.training import CONFIDENT, flips_over_tolerance

from .accuracy import latest_human_fixes
from .effective import PLACEMENT_ADVERTISER, ColumnNames, Source, annotate_effective
from .expressions import active_heads
from .models import ManualFix


@dataclass
class AdvertiserFlips:
    """What the candidate would change at one advertiser.

    `images`: live images with a candidate result; `flips`: (current label, candidate label) -> images whose
    effective tag comes from the model today and would change; `samples`: some of those placements (asset and
    listing loaded; `flip_from` / `flip_to` / `candidate_confidence` annotated) for thumbnails; `fixes_agree` /
    `fixes_disagree`: the advertiser's standing human fixes (live images) whose label the candidate gives / not.
    """

    advertiser: Advertiser
    images: int = 0
    flips: dict[tuple[str, str], int] = field(default_factory=dict)
    samples: list[Placement] = field(default_factory=list)
    fixes_agree: int = 0
    fixes_disagree: int = 0

    @property
    def flipped(self) -> int:
        return sum(self.flips.values())

    @property
    def flip_share(self) -> float | None:
        return self.flipped / self.images if self.images else None

    @property
    def fixes_agree_share(self) -> float | None:
        reviewed = self.fixes_agree + self.fixes_disagree
        return self.fixes_agree / reviewed if reviewed else None


def _live_placements() -> QuerySet[Placement]:
    """Placements production tags: still listed, fetched, with a picture."""
    return Placement.objects.filter(
        is_gone=False, listing__is_gone=False, status=Placement.Status.OK, asset__isnull=False
    )


def served_by(placements: QuerySet[Placement], version: ModelVersion) -> QuerySet[Placement]:
    """The placements the version would answer for: every one, or its advertiser's for a scoped head (a picture
    another advertiser shares is not that advertiser's flip)."""
    if version.advertiser_id is None:
        return placements
    return placements.filter(**{PLACEMENT_ADVERTISER: version.advertiser_id})


def confident_model_tags(*, task: str, heads: Mapping[str, int] | None = None) -> QuerySet[Placement]:
    """Live placements whose effective tag of `task` is the active model's, at a confidence of CONFIDENT or more
    (`<task>_label` and `<task>_model_confidence` annotated): tags that no human reviewed and everybody relies on.

    Where a candidate changes one, it is a likely regression: the training guard samples them (the export
    manifest's `guard` rows) and the promotion guard counts them (`confident_flips`)."""
    heads = active_heads() if heads is None else heads
    column = ColumnNames(task)
    return annotate_effective(_live_placements(), [task], heads).filter(
        **{column.source: Source.MODEL, f"{column('model_confidence')}__gte": CONFIDENT}
    )


@dataclass
class ConfidentFlips:
    """One advertiser's confident model tags of a task (`confident_model_tags`, on live images the version
    classified) and how many of them the version would flip, with up to a few flipped placements (`flip_from`,
    `flip_to` and `model_confidence` annotated) for thumbnails. `trained_for`: the advertiser's reviewed labels
    were in the version's training export, so its measured accuracy judges it, not these flips."""

    advertiser: Advertiser
    task: str
    confident: int = 0
    flipped: int = 0
    trained_for: bool = False
    samples: list[Placement] = field(default_factory=list)

    @property
    def share(self) -> float | None:
        return self.flipped / self.confident if self.confident else None

    @property
    def over(self) -> bool:
        """More of its confident tags flip than the tolerance allows (training.flips_over_tolerance's rule)."""
        counts = {self.advertiser.slug: {"confident": self.confident, "flipped": self.flipped}}
        return bool(flips_over_tolerance(counts, [self.advertiser.slug] if self.trained_for else []))

    def regression(self) -> Regression:
        return Regression(self.task, self.advertiser.slug, "confident_flips", self.confident, self.flipped)


def confident_flips(*, version: ModelVersion, task: str, samples: int = 6) -> list[ConfidentFlips]:
    """Per advertiser with confident model tags of `task` that `version` classified (its shadow pass), how many it
    would flip: likely regressions where no human looked. Those over the tolerance first, then by share. What the
    promotion guard refuses on (`promotion_regressions`) and the confirmation page shows; four queries."""
    column = ColumnNames(task)
    tags = (
        served_by(confident_model_tags(task=task), version)
        .annotate(candidate_label=_candidate_result(version, task, "label"))
        .filter(candidate_label__isnull=False)
    )
    confident = {
        row["advertiser"]: row["n"]
        for row in tags.values(advertiser=F(PLACEMENT_ADVERTISER)).annotate(n=Count("id")).order_by()
    }
    flipped_tags = tags.exclude(**{column.label: F("candidate_label")})
    flipped = {
        row["advertiser"]: row["n"]
        for row in flipped_tags.values(advertiser=F(PLACEMENT_ADVERTISER)).annotate(n=Count("id")).order_by()
    }
    sampled: dict[int, list[Placement]] = defaultdict(list)
    if samples > 0 and flipped:
        ranked = flipped_tags.annotate(
            flip_from=F(column.label),
            flip_to=F("candidate_label"),
            model_confidence=F(column("model_confidence")),
        ).annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F(PLACEMENT_ADVERTISER)],
                order_by=[F(column("model_confidence")).desc(nulls_last=True), F("id").asc()],
            )
        )
        chosen = ranked.filter(rank__lte=samples).select_related("asset", "listing__sitemap")
        for placement in chosen.order_by(PLACEMENT_ADVERTISER, "rank"):
            sampled[placement.listing.sitemap.advertiser_id].append(placement)
    trained_for = set(version.metrics.get("trained_for", []) if isinstance(version.metrics, dict) else [])
    out = [
        ConfidentFlips(
            advertiser=advertiser,
            task=task,
            confident=confident[pk],
            flipped=flipped.get(pk, 0),
            trained_for=advertiser.slug in trained_for,
            samples=sampled.get(pk, []),
        )
        for pk, advertiser in Advertiser.objects.in_bulk(list(confident)).items()
    ]
    return sorted(out, key=lambda item: (not item.over, -(item.share or 0.0), item.advertiser.name, item.advertiser.pk))


def confident_flip_regressions(version: ModelVersion, tasks: list[str]) -> list[Regression]:
    """The promotion guard's source (registered in ReviewsConfig.ready): each advertiser outside the version's
    export whose confident tags of a switching task it would flip beyond the tolerance."""
    return [
        entry.regression()
        for task in tasks
        for entry in confident_flips(version=version, task=task, samples=0)
        if entry.over
    ]


def _candidate_result(version: ModelVersion, task: str, field_name: str) -> Subquery:
    ok = Classification.objects.filter(
        asset_id=OuterRef("asset_id"), model_version_id=version.pk, task=task, status=Classification.Status.OK
    )
    output = FloatField() if field_name == "confidence" else CharField()
    return Subquery(ok.values(field_name)[:1], output_field=output)


def candidate_flips(*, version: ModelVersion, task: str, samples: int = 6) -> list[AdvertiserFlips]:
    """Per advertiser with live images the candidate classified (most flips first): how many effective tags of
    `task` would flip if `version` were the active model, from what to what, with up to `samples` placements
    (the candidate's most confident flips first), and how many standing human fixes it agrees with.

    Six queries whatever the number of advertisers.
    """
    heads = active_heads()
    column = ColumnNames(task)
    with_candidate = served_by(_live_placements(), version).annotate(
        candidate_label=_candidate_result(version, task, "label")
    )
    with_candidate = with_candidate.filter(candidate_label__isnull=False)

    images = {
        row["advertiser"]: row["images"]
        for row in with_candidate.values(advertiser=F(PLACEMENT_ADVERTISER)).annotate(images=Count("id")).order_by()
    }
    flipped = (
        annotate_effective(with_candidate, [task], heads)
        .filter(**{column.source: Source.MODEL})
        .exclude(**{column.label: F("candidate_label")})
    )
    flips: dict[int, dict[tuple[str, str], int]] = defaultdict(dict)
    for row in (
        flipped.values(advertiser=F(PLACEMENT_ADVERTISER), flip_from=F(column.label), flip_to=F("candidate_label"))
        .annotate(images=Count("id"))
        .order_by()
    ):
        flips[row["advertiser"]][(row["flip_from"], row["flip_to"])] = row["images"]

    sampled: dict[int, list[Placement]] = defaultdict(list)
    if samples > 0 and flips:
        ranked = flipped.annotate(
            flip_from=F(column.label),
            flip_to=F("candidate_label"),
            candidate_confidence=_candidate_result(version, task, "confidence"),
        ).annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F(PLACEMENT_ADVERTISER)],
                order_by=[F("candidate_confidence").desc(nulls_last=True), F("id").asc()],
            )
        )
        chosen = ranked.filter(rank__lte=samples).select_related("asset", "listing__sitemap")
        for placement in chosen.order_by(PLACEMENT_ADVERTISER, "rank"):
            sampled[placement.listing.sitemap.advertiser_id].append(placement)

    fixes = _fix_agreement(version, task)
    advertisers = Advertiser.objects.in_bulk(set(images) | set(fixes))
    out = [
        AdvertiserFlips(
            advertiser=advertiser,
            images=images.get(pk, 0),
            flips=dict(sorted(flips.get(pk, {}).items(), key=lambda item: (-item[1], item[0]))),
            samples=sampled.get(pk, []),
            fixes_agree=fixes.get(pk, (0, 0))[0],
            fixes_disagree=fixes.get(pk, (0, 0))[1],
        )
        for pk, advertiser in advertisers.items()
    ]
    return sorted(out, key=lambda item: (-item.flipped, item.advertiser.name, item.advertiser.pk))


def _fix_agreement(version: ModelVersion, task: str) -> dict[int, tuple[int, int]]:
    """Advertiser id -> (agree, disagree): its latest human fix of each live picture against the candidate."""
    live = _live_placements().filter(asset_id=OuterRef("asset_id"), **{PLACEMENT_ADVERTISER: OuterRef("advertiser_id")})
    rows = (
        latest_human_fixes()
        .filter(task=task, **({"advertiser_id": version.advertiser_id} if version.advertiser_id else {}))
        .filter(Exists(live))
        .annotate(candidate_label=_candidate_result(version, task, "label"))
        .filter(candidate_label__isnull=False)
        .values("advertiser_id")
        .annotate(
            agree=Count("id", filter=Q(new_label=F("candidate_label"))),
            disagree=Count("id", filter=~Q(new_label=F("candidate_label"))),
        )
        .order_by()
    )
    return {row["advertiser_id"]: (row["agree"], row["disagree"]) for row in rows}


def accuracy_over_time(
    *, task: str, weeks: int = 26, now: datetime | None = None, by: str = "advertiser"
) -> dict[str, Any]:
    """Per ISO week (its Monday) of the last `weeks`, the share of model tags that human fixes made that week
    overturned, overall and per advertiser, with the task's promotions and rollbacks as markers. Two queries.

    A fix "looked at a model tag" when it records a label that was in effect (`old_label` not empty), and it
    "overturned" it when it says something else (`old_label != new_label`; a confirmation keeps it). This is an
    approximation: `old_label` is the effective label at the time of the fix, which is the model's for nearly
    every first fix, but may be an earlier fix or a scraped color. Carried fixes are copies, not humans looking,
    and are left out. Weeks are in the site's time zone.

    Returns {"task", "weeks": [iso Monday...], "overall": [{"week", "reviewed", "overturned", "share"}...],
    "advertisers": [{"advertiser", "slug", "name", "reviewed", "overturned", "share", "series": [...]}...],
    "promotions": [{"week", "date", "task", "to_version", "to_version_id", "from_version_id", "kind"}...]}.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    this_monday = today - timedelta(days=today.weekday())
    mondays = [this_monday - timedelta(weeks=back) for back in range(weeks - 1, -1, -1)]
    start = timezone.make_aware(datetime.combine(mondays[0], time.min))
    week = TruncWeek("created_at", output_field=DateField())

    looked = (
        ManualFix.objects.filter(task=task, source__in=ManualFix.HUMAN, created_at__gte=start, created_at__lte=now)
        .exclude(old_label="")
        .exclude(withdraws=True)  # an undo back to the model's tag: no one looked at the tag again
        .exclude(reverted_by__withdraws=True)  # the mistake that undo took back: no judgement on the model's tag
    )
    counted = {"reviewed": Count("id"), "overturned": Count("id", filter=~Q(old_label=F("new_label")))}
    rows: list[Any]
    if by == "kind":  # the series per vehicle kind (the active detector's), in the advertisers' places
        detected = Detection.objects.of_active_detector().filter(asset_id=OuterRef("asset_id")).exclude(kind="")
        vehicle = Coalesce(Subquery(detected.values("kind")[:1]), Value(""))
        rows = list(looked.annotate(vehicle=vehicle).values("vehicle", week=week).annotate(**counted).order_by())
    else:
        grouped = looked.values("advertiser_id", "advertiser__slug", "advertiser__name", week=week)
        rows = list(grouped.annotate(**counted).order_by())
    overall: dict[date, list[int]] = {monday: [0, 0] for monday in mondays}
    per_advertiser: dict[int | str, dict[str, Any]] = {}
    for row in rows:
        counts = overall.setdefault(row["week"], [0, 0])
        counts[0] += row["reviewed"]
        counts[1] += row["overturned"]
        if by == "kind":
            name = row["vehicle"] or "no kind said"
            entry = per_advertiser.setdefault(name, {"slug": name, "name": name, "weeks": {}})
        else:
            entry = per_advertiser.setdefault(
                row["advertiser_id"],
                {"slug": row["advertiser__slug"], "name": row["advertiser__name"], "weeks": {}},
            )
        entry["weeks"][row["week"]] = (row["reviewed"], row["overturned"])

    promotions = [
        {
            "week": row["week"].isoformat(),
            "date": timezone.localtime(row["created_at"]).isoformat(),
            "task": row["task"],
            "to_version": row["to_version__name"],
            "to_version_id": row["to_version_id"],
            "from_version_id": row["from_version_id"],
            "kind": row["kind"],
        }
        for row in Promotion.objects.filter(task=task, created_at__gte=start, created_at__lte=now)
        .order_by("created_at", "id")
        .values("created_at", "task", "to_version__name", "to_version_id", "from_version_id", "kind", week=week)
    ]
    advertisers = []
    for pk, entry in per_advertiser.items():
        reviewed = sum(r for r, _ in entry["weeks"].values())
        overturned = sum(o for _, o in entry["weeks"].values())
        advertisers.append(
            {
                "advertiser": pk,
                "slug": entry["slug"],
                "name": entry["name"],
                **_point(reviewed, overturned),
                "series": [
                    {"week": monday.isoformat(), **_point(*entry["weeks"].get(monday, (0, 0)))} for monday in mondays
                ],
            }
        )
    advertisers.sort(key=lambda item: (-item["reviewed"], item["name"]))
    return {
        "task": task,
        "by": by,
        "weeks": [monday.isoformat() for monday in mondays],
        "overall": [{"week": monday.isoformat(), **_point(*overall[monday])} for monday in mondays],
        "advertisers": advertisers,
        "promotions": promotions,
    }


def _point(reviewed: int, overturned: int) -> dict[str, Any]:
    return {
        "reviewed": reviewed,
        "overturned": overturned,
        "share": round(overturned / reviewed, 4) if reviewed else None,
    }
