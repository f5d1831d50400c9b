"""Effective tags: what a placement is tagged, and where that came from.

For each placement and task, in order: the latest manual fix for (advertiser, asset, task) (the hook is
`fixes_for`, filled by the reviews issue); for color, the color the scrape configured on the listing; the
active model's classification; else explicitly failed (with the reason) or unknown. The data and the
screens say what happened; only the legacy API view may map failed/unknown to Placeholder / null.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from catalog.models import TASK_LABELS, Membership, Placement, Task
from catalog.selectors import AnyUser, advertisers_visible_to
from classifier.models import Classification, ModelHead

from .models import ManualFix

# How a scrape may spell each color (any case; "gray" too), to the vocabulary's spelling.
COLOR_NAMES = {color.lower(): color for color in TASK_LABELS[Task.COLOR]} | {"gray": "Grey"}


class Source:
    FIX = "fix"
    SCRAPE = "scrape"
    MODEL = "model"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class EffectiveTag:
    task: str
    label: str | None
    source: str
    confidence: float | None = None
    margin: float | None = None
    model_version_id: int | None = None
    reason: str = ""
    crop_box: list[int] | None = None
    fix_id: int | None = None
    fix_source: str = ""
    fixed_by: str = ""


def scrape_color(attributes: dict[str, object]) -> str | None:
    """The listing's configured color, if it names one of the 12 colors (case-insensitive; 'gray' too)."""
    value = attributes.get("color") or attributes.get("colour")
    return COLOR_NAMES.get(str(value).strip().lower()) if value else None


def fixes_for(placements: list[Placement], tasks: Iterable[str]) -> dict[tuple[int, int, str], EffectiveTag]:
    """The latest manual fix per (advertiser, asset, task) of these placements, in one query."""
    scopes = {(p.listing.sitemap.advertiser_id, p.asset_id) for p in placements if p.asset_id}
    if not scopes:
        return {}
    fixes = (
        ManualFix.objects.filter(
            advertiser_id__in={a for a, _ in scopes}, asset_id__in={s for _, s in scopes}, task__in=list(tasks)
        )
        .order_by("advertiser_id", "asset_id", "task", "-created_at", "-id")
        .select_related("user")
    )
    latest: dict[tuple[int, int, str], EffectiveTag] = {}
    for fix in fixes:
        key = (fix.advertiser_id, fix.asset_id, fix.task)
        if key not in latest and key[:2] in scopes:
            who = fix.user.get_username() if fix.user else ""
            latest[key] = EffectiveTag(
                fix.task, fix.new_label, Source.FIX, fix_id=fix.pk, fix_source=fix.source, fixed_by=who
            )
    return latest


def effective_tags(
    placements: list[Placement], tasks: Iterable[str] | None = None
) -> dict[int, dict[str, EffectiveTag]]:
    """Effective tag per placement id and task, in a constant number of queries for any number of placements.

    Placements need `listing__sitemap` loaded (select_related) for the advertiser and the scrape's attributes.
    """
    tasks = list(tasks or Task.values)
    heads = {head.task: head.model_version_id for head in ModelHead.objects.filter(is_active=True, task__in=tasks)}
    asset_ids = {p.asset_id for p in placements if p.asset_id}
    results = {
        (c.asset_id, c.task): c
        for c in Classification.objects.filter(asset_id__in=asset_ids, task__in=list(heads)).only(
            "asset_id", "task", "model_version_id", "status", "label", "confidence", "margin", "error", "crop_box"
        )
        if heads.get(c.task) == c.model_version_id
    }
    fixes = fixes_for(placements, tasks)
    out: dict[int, dict[str, EffectiveTag]] = {}
    for placement in placements:
        advertiser_id = placement.listing.sitemap.advertiser_id
        tags: dict[str, EffectiveTag] = {}
        for task in tasks:
            fix = fixes.get((advertiser_id, placement.asset_id or 0, task))
            color = scrape_color(placement.listing.attributes) if task == Task.COLOR else None
            result = results.get((placement.asset_id, task)) if placement.asset_id else None
            if fix is not None:
                tags[task] = fix
            elif color is not None:
                tags[task] = EffectiveTag(task, color, Source.SCRAPE)
            elif result is not None and result.status == Classification.Status.OK:
                tags[task] = EffectiveTag(
                    task, result.label, Source.MODEL, result.confidence, result.margin, result.model_version_id,
                    crop_box=result.crop_box,
                )  # fmt: skip
            elif result is not None:
                tags[task] = EffectiveTag(task, None, Source.FAILED, model_version_id=result.model_version_id,
                                          reason=result.error)  # fmt: skip
            elif placement.status == Placement.Status.FAILED:
                tags[task] = EffectiveTag(task, None, Source.FAILED, reason=f"image: {placement.failure_reason}")
            else:
                why = "no active model" if task not in heads else "not classified yet"
                tags[task] = EffectiveTag(task, None, Source.UNKNOWN, reason=why)
        out[placement.pk] = tags
    return out


@dataclass
class ImageHistory:
    """Everything about one image as an advertiser shows it: its tags and where they came from, every
    classification by model version, every fix in its scope, and every placement of the same picture."""

    tags: dict[str, EffectiveTag]
    classifications: list[Classification]
    fixes: list[ManualFix]
    placements: list[Placement]
    crop_box: list[int] | None


def image_history(*, placement: Placement, all_advertisers: bool = False) -> ImageHistory:
    """`all_advertisers` (staff) lists the picture's placements at every advertiser; fixes stay scoped to
    the placement's advertiser either way."""
    advertiser_id = placement.listing.sitemap.advertiser_id
    tags = effective_tags([placement])[placement.pk]
    if placement.asset_id is None:
        return ImageHistory(tags, [], [], [placement], None)
    classifications = list(
        Classification.objects.filter(asset_id=placement.asset_id)
        .select_related("model_version")
        .order_by("task", "-created_at")
    )
    fixes = list(
        ManualFix.objects.filter(advertiser_id=advertiser_id, asset_id=placement.asset_id).select_related(
            "user", "origin", "reverts"
        )
    )
    others = Placement.objects.filter(asset_id=placement.asset_id).select_related("listing__sitemap__advertiser")
    if not all_advertisers:
        others = others.filter(listing__sitemap__advertiser_id=advertiser_id)
    crop = next((tag.crop_box for tag in tags.values() if tag.crop_box), None)
    return ImageHistory(tags, classifications, fixes, list(others.order_by("-last_checked_at")[:200]), crop)


def fixes_visible_to(user: AnyUser) -> QuerySet[ManualFix]:
    return ManualFix.objects.filter(advertiser__in=advertisers_visible_to(user)).select_related("user")


def user_can_fix(user: User | AnonymousUser, advertiser_id: int) -> bool:
    """Staff, or an editor of the advertiser: viewers read only."""
    if isinstance(user, AnonymousUser):
        return False
    if user.is_staff:
        return True
    return Membership.objects.filter(user=user, advertiser_id=advertiser_id, role=Membership.Role.EDITOR).exists()
