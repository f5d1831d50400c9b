"""Effective tags of placements, in Python, by the one rule of reviews.effective, with what the screens show
beside each tag (confidence, reason, who fixed it). The data and the screens say what happened; only the legacy
API view may map failed/unknown to Placeholder / null.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet

from catalog.models import Placement, Task
from catalog.selectors import AnyUser, advertisers_visible_to, placements_visible_to, user_can_edit
from classifier.models import Classification, Detection, OcclusionMap

from .effective import Inputs, Source, decide, scrape_color_of, tasks_needed
from .expressions import ActiveHeads, active_heads, latest_fixes, picture
from .models import ManualFix

__all__ = ["IMAGE_FAILED", "EffectiveTag", "Source", "effective_tags"]

#: The reason of a tag whose picture could not be brought in starts with this, then the failure code
#: (catalog.failures): "image: http_404". Screens show the code's sentence instead.
IMAGE_FAILED = "image: "


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


def fixes_for(placements: list[Placement], tasks: Iterable[str]) -> dict[tuple[int, int, str], EffectiveTag]:
    """The fix in effect per (advertiser, asset, task) of these placements, in one query: the latest row of each
    scope, unless that row is a withdrawal (then no fix is in effect: the scope has no entry)."""
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
    latest: dict[tuple[int, int, str], ManualFix] = {}
    for fix in fixes:
        key = (fix.advertiser_id, fix.asset_id, fix.task)
        if key[:2] in scopes:
            latest.setdefault(key, fix)
    return {
        key: EffectiveTag(
            fix.task,
            label,
            Source.FIX,
            fix_id=fix.pk,
            fix_source=fix.source,
            fixed_by=fix.user.get_username() if fix.user else "",
        )
        for key, fix in latest.items()
        if (label := fix.label_in_effect) is not None
    }


def effective_tags(
    placements: list[Placement], tasks: Iterable[str] | None = None
) -> dict[int, dict[str, EffectiveTag]]:
    """Effective tag per placement id and task, in a constant number of queries for any number of placements.

    Placements need `listing__sitemap` loaded (select_related) for the advertiser and the scrape's attributes.
    """
    tasks = list(tasks or Task.values)
    needed = tasks_needed(tasks)
    heads = active_heads()
    heads = ActiveHeads({task: heads[task] for task in needed if task in heads}, heads.scoped)
    versions = set(heads.values()) | {version for task in needed for version in heads.scoped.get(task, {}).values()}
    asset_ids = {p.asset_id for p in placements if p.asset_id}
    # Every answer of the versions that may answer (the active models; the advertisers' scoped heads), by asset, task
    # and version: each placement then reads the one that answers for its advertiser (as annotate_inputs does in SQL).
    answers = {
        (c.asset_id, c.task, c.model_version_id): c
        for c in Classification.objects.filter(
            asset_id__in=asset_ids, task__in=needed, model_version_id__in=versions
        ).only("asset_id", "task", "model_version_id", "status", "label", "confidence", "margin", "error", "crop_box")
    }
    results = {
        (asset, task): answer for (asset, task, version), answer in answers.items() if heads.get(task) == version
    }
    fixes = fixes_for(placements, needed)
    out: dict[int, dict[str, EffectiveTag]] = {}
    for placement in placements:
        advertiser_id = placement.listing.sitemap.advertiser_id
        tags: dict[str, EffectiveTag] = {}
        for task in needed:  # the image type first: the color's rule reads it
            fix = fixes.get((advertiser_id, placement.asset_id or 0, task))
            scoped = heads.scoped.get(task, {}).get(advertiser_id)
            result = (
                (answers.get((placement.asset_id, task, scoped)) if scoped else None)
                or results.get((placement.asset_id, task))
                if placement.asset_id
                else None
            )
            inputs = Inputs(
                fix_label=fix.label if fix else None,
                scrape_color=scrape_color_of(placement.listing.attributes) if task == Task.COLOR else None,
                model_status=result.status if result else None,
                model_label=result.label if result else None,
                placement_status=placement.status,
                type_label=tags[Task.IMAGE_TYPE].label if task == Task.COLOR else None,
            )
            label, source = decide(task, inputs)
            tags[task] = _tag(task, label, source, fix, result, placement, has_head=task in heads)
        out[placement.pk] = {task: tags[task] for task in tasks}
    return out


def _tag(
    task: str,
    label: str | None,
    source: str,
    fix: EffectiveTag | None,
    result: Classification | None,
    placement: Placement,
    *,
    has_head: bool,
) -> EffectiveTag:
    """The rule's answer with what the screens show beside it (confidence, reason, who fixed it)."""
    if source == Source.FIX and fix is not None:
        return fix
    if source == Source.MODEL and result is not None:
        return EffectiveTag(
            task, label, source, result.confidence, result.margin, result.model_version_id, crop_box=result.crop_box
        )
    if source == Source.RULE:
        return EffectiveTag(task, None, source, reason="a placeholder has no color")
    if source == Source.FAILED:
        if result is not None and result.status == Classification.Status.FAILED:
            return EffectiveTag(task, None, source, model_version_id=result.model_version_id, reason=result.error)
        return EffectiveTag(task, None, source, reason=f"{IMAGE_FAILED}{placement.failure_reason}")
    if source == Source.UNKNOWN:
        return EffectiveTag(task, None, source, reason="not classified yet" if has_head else "no active model")
    return EffectiveTag(task, label, source)


@dataclass
class ImageHistory:
    """Everything about one image as an advertiser shows it: its tags and where they came from, every
    classification by model version, every fix in its scope, and every placement of the same picture."""

    tags: dict[str, EffectiveTag]
    classifications: list[Classification]
    fixes: list[ManualFix]
    placements: list[Placement]
    crop_box: list[int] | None
    # Staff only: other advertisers' labels in effect on the same picture (same SHA-256 or near-duplicate
    # cluster) that contradict this image's tag: conflicts to settle before the picture goes into a training set.
    conflicts: list[ManualFix] = field(default_factory=list)
    # The fix in effect per task (the latest row of its scope): the only ones a revert may undo.
    revertible: set[int] = field(default_factory=set)
    vehicle_kind: str = ""  # what the active detector saw in the crop, when its contract says


def vehicle_kinds(asset_ids: Iterable[int]) -> dict[int, str]:
    """Asset -> the kind of vehicle the active detector saw in its crop (assets without one are left out): one
    query."""
    return dict(
        Detection.objects.of_active_detector()
        .filter(asset_id__in=list(asset_ids))
        .exclude(kind="")
        .values_list("asset_id", "kind")
    )


def image_history(*, placement: Placement, all_advertisers: bool = False) -> ImageHistory:
    """`all_advertisers` (staff) lists the picture's placements at every advertiser; fixes stay scoped to
    the placement's advertiser either way."""
    advertiser_id = placement.listing.sitemap.advertiser_id
    tags = effective_tags([placement])[placement.pk]
    if placement.asset_id is None:
        return ImageHistory(tags, [], [], [placement], None)
    classifications = list(
        Classification.objects.filter(asset_id=placement.asset_id)
        .select_related("model_version__advertiser")
        .order_by("task", "-created_at")
    )
    for result in classifications:  # which model answers this placement's tag (the active one, or a scoped head)
        tag = tags.get(result.task)
        result.answers = tag is not None and tag.model_version_id == result.model_version_id  # type: ignore[attr-defined]
    fixes = list(
        ManualFix.objects.filter(advertiser_id=advertiser_id, asset_id=placement.asset_id).select_related(
            "user", "origin", "reverts"
        )
    )
    others = Placement.objects.filter(asset_id=placement.asset_id).select_related("listing__sitemap__advertiser")
    if not all_advertisers:
        others = others.filter(listing__sitemap__advertiser_id=advertiser_id)
    crop = next((tag.crop_box for tag in tags.values() if tag.crop_box), None)
    conflicts = _other_advertisers_contradicting(placement, tags) if all_advertisers else []
    latest: dict[str, int] = {}
    for fix in fixes:  # latest first (ManualFix's ordering)
        latest.setdefault(fix.task, fix.pk)
    return ImageHistory(
        tags, classifications, fixes, list(others.order_by("-last_checked_at")[:200]), crop, conflicts,
        set(latest.values()), vehicle_kinds([placement.asset_id]).get(placement.asset_id, ""),
    )  # fmt: skip


def _other_advertisers_contradicting(placement: Placement, tags: dict[str, EffectiveTag]) -> list[ManualFix]:
    asset = placement.asset
    assert asset is not None  # noqa: S101 - image_history returns earlier without one
    same_picture = latest_fixes().annotate(picture=picture()).filter(picture=asset.cluster_id or asset.pk)
    return [
        fix
        for fix in same_picture.filter(source__in=ManualFix.HUMAN)
        .exclude(advertiser_id=placement.listing.sitemap.advertiser_id)
        .select_related("advertiser", "user")
        .order_by("task", "advertiser__name")
        if fix.task in tags and tags[fix.task].source == Source.FIX and tags[fix.task].label != fix.new_label
    ]


def fixes_visible_to(user: AnyUser) -> QuerySet[ManualFix]:
    return ManualFix.objects.filter(advertiser__in=advertisers_visible_to(user)).select_related("user")


def user_can_fix(user: User | AnonymousUser, advertiser_id: int) -> bool:
    """Staff, or an editor of the advertiser: viewers read only (catalog.selectors.user_can_edit)."""
    return user_can_edit(user, advertiser_id)


# Stored names of a picture's files all hold its SHA-256 (catalog.services.assets.asset_storage_names, the occlusion
# service): the asset is found by its unique key, then the exact stored name is checked.
_PICTURE_FILE = re.compile(r"(originals|thumbnails|occlusion)/(?:[^/]+/)*([0-9a-f]{64})[^/]*")


def media_visible_to(user: AnyUser, name: str) -> bool:
    """Whether the user may see this stored file: staff any; an advertiser's user the original, the thumbnail and
    the occlusion heatmaps of the pictures in their advertisers' placements; exports, model files and anything
    else staff only."""
    if not (user.is_authenticated and user.is_active):
        return False
    if user.is_staff:
        return True
    match = _PICTURE_FILE.fullmatch(name)
    if match is None:
        return False
    kind, sha256 = match.groups()
    placements = placements_visible_to(user).filter(asset__sha256=sha256)
    if kind == "occlusion":
        return OcclusionMap.objects.filter(heatmap=name, asset__in=placements.values("asset")).exists()
    return placements.filter(Q(asset__original=name) | Q(asset__thumbnail=name)).exists()
