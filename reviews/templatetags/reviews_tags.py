from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from catalog.failures import Failure
from catalog.failures import failure as failure_of
from catalog.imaging import crop_box_style
from catalog.models import ImageAsset, Placement
from reviews.grid import GridItem
from reviews.selectors import IMAGE_FAILED, EffectiveTag, Source

register = template.Library()

# Keys for the labels of a task, in order: 1-9, 0, then - and = (12 colors).
LABEL_KEYS = "1234567890-="
# A model's tag below this confidence is shown greyed and outlined, so 0.27 does not look like 0.92.
LOW_CONFIDENCE = 0.5
# A card names a task in few letters (the full name is the title), so that a tag line at 1440 pixels holds the task,
# the label and its source. Labels are never shortened: a long one ("Tools, Vehicles, Electronics & Appliances")
# is set smaller and wraps (static/css/imagetagger.css; static/js/grid.js keeps LONG_LABEL's class when it retags).
TASK_SHORT_NAMES = {"image_type": "type"}
LONG_LABEL = 16  # characters


def is_low_confidence(tag: EffectiveTag | None) -> bool:
    return bool(tag and tag.source == Source.MODEL and tag.confidence is not None and tag.confidence < LOW_CONFIDENCE)


@register.filter
def label_key(index: int) -> str:
    return LABEL_KEYS[index] if index < len(LABEL_KEYS) else ""


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key)


@register.filter
def label_in_effect(counts: list[tuple[str, int]], vocabulary: tuple[str, ...]) -> str:
    """The most common of a cluster's effective labels (its (label, images) counts), spelled as the task's
    vocabulary spells it (a model may say "red"); "" when no member has a label of the vocabulary (none, failed).
    What review by cluster offers first, so that a key or a click confirms what the cluster already is."""
    known = {label.lower(): label for label in vocabulary}
    totals: dict[str, int] = {}
    for label, images in counts:  # most frequent first: a tie goes to the label listed first
        if canonical := known.get(label.lower()):
            totals[canonical] = totals.get(canonical, 0) + images
    return max(totals, key=lambda label: totals[label], default="")


@register.filter
def add_ns(name: str, pk: int) -> str:
    return reverse(f"reviews:{name}", args=[pk])


@register.filter
def crop_style(box: list[int], asset: ImageAsset) -> str:
    return crop_box_style(box, asset.width, asset.height)


@register.simple_tag
def picture_url(placement: Placement, kind: str, realm: str) -> str:
    """The URL of an image's "thumbnail" or "original": the stored file's for staff; for the portal the image's own
    (reviews.portal_views), since stored names hold the picture's SHA-256, an internal the portal does not show."""
    asset = placement.asset
    if asset is None:
        return ""
    if realm == "staff":
        stored = asset.thumbnail if kind == "thumbnail" else asset.original
        return stored.url if stored else ""
    return reverse(f"reviews:{realm}-{kind}", args=[placement.pk])


@register.simple_tag
def tag_reason(tag: EffectiveTag, realm: str = "staff") -> str:
    """Why a tag has no label. The portal gets no pipeline internals: a model's error names models and files."""
    if realm != "staff" and tag.source == Source.FAILED and tag.model_version_id is not None:
        return "the model could not tag this picture"
    if tag.source == Source.FAILED and tag.reason.startswith(IMAGE_FAILED):  # the picture could not be brought in
        code = tag.reason.removeprefix(IMAGE_FAILED)
        explained = failure_of(code).sentence
        return f"{explained} ({code})" if realm == "staff" else explained
    return tag.reason


@register.simple_tag
def tag_source(tag: EffectiveTag, realm: str = "staff") -> str:
    """Where a tag came from, in a few words: model with confidence, scrape, fix by whom, or why none."""
    if tag.source == Source.MODEL:
        return format_html("model {}", f"{tag.confidence:.2f}" if tag.confidence is not None else "")
    if tag.source == Source.FIX:
        if tag.fix_source == "carried":
            return "fix carried from a re-encoded copy"
        return format_html("fix by {}", tag.fixed_by or tag.fix_source)
    if tag.source == Source.SCRAPE:
        return "scrape"
    if tag.source == Source.FAILED:
        return format_html('<span title="{}">failed</span>', tag_reason(tag, realm))
    return format_html('<span title="{}">unknown</span>', tag_reason(tag, realm))


@register.filter
def percent(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.0f}%"


@register.filter
def bar_width(share: float) -> int:
    return round(80 * share)


def _tag_cells(name: str, tag: EffectiveTag, task: str, realm: str) -> tuple[str, ...]:
    """The values of one tag's line of a card: its classes (source, the chosen task, a low confidence) and text."""
    flags = _if(name == task, " current") + _if(is_low_confidence(tag), " low")
    label = tag.label or "—"
    short = TASK_SHORT_NAMES.get(name, name)
    return (tag.source, flags, name, name, short, _if(len(label) > LONG_LABEL, " long"), label, tag_source(tag, realm))


def _no_picture(code: str, realm: str) -> SafeString:
    """A failed card: what happened and what to do (catalog.failures); staff also see the code."""
    if not code:
        return format_html('<div class="noimage">{}</div>', "not fetched yet")
    explained = failure_of(code)
    staff = format_html(' <code class="reason">{}</code>', code) if realm == "staff" else ""
    return format_html('<div class="noimage" title="{}">{}{}</div>', explained.action, explained.sentence, staff)


@register.filter
def failure(code: str) -> Failure:
    """A failure code as its sentence and action (catalog.failures): `{% with f=code|failure %}`."""
    return failure_of(code)


def _if(condition: bool, text: str) -> str:
    return text if condition else ""


@register.simple_tag
def grid_card(item: GridItem, task: str, realm: str) -> SafeString:
    """One card of the review grid, built here rather than in template syntax: a page of 100 cards renders in a
    few milliseconds instead of ~70 (the template engine's per-variable cost, measured by benchmark_grid)."""
    placement = item.placement
    asset = placement.asset
    current = item.tags.get(task)
    if asset is not None:
        box = next(
            (item.tags[t].crop_box for t in ("image_type", "color") if t in item.tags and item.tags[t].crop_box), None
        )
        crop = format_html('<div class="crop" style="{}"></div>', crop_style(box, asset)) if box else ""
        thumb = format_html('<img src="{}" alt="" loading="lazy">{}', picture_url(placement, "thumbnail", realm), crop)
    else:
        thumb = _no_picture(placement.failure_reason, realm)
    tags = format_html_join(
        "",
        '<li class="tag {}{}" data-task="{}"><span class="task" title="{}">{}</span><span class="label{}">{}</span>'
        '<span class="source">{}</span></li>',
        (_tag_cells(name, tag, task, realm) for name, tag in item.tags.items()),
    )
    listing = placement.listing
    state = (
        _if(placement.status == "failed", " failed-card")
        + _if(is_low_confidence(current), " low-confidence")
        + _if(current is not None and current.source == Source.FIX, " reviewed")
    )
    # "More like this" from the grid: the sitemap's images most like this card's (reviews.similar, GridFilters).
    like = (
        format_html(
            ' · <a class="like-this" href="{}?task=image_type&amp;similar_to={}" title="{}">more like this</a>',
            reverse(f"reviews:{realm}-grid", args=[listing.sitemap_id]),
            placement.pk,
            "the images of this sitemap most like this one, ready for one bulk retag",
        )
        if asset is not None
        else ""
    )
    return format_html(
        '<div class="card{}" tabindex="0" data-id="{}" data-label="{}" data-url="{}" data-full="{}">'
        '<div class="thumb">{}</div><ul class="tags">{}</ul><div class="meta muted">{} #{}{}</div></div>',
        state,
        placement.pk,
        (current.label or "") if current else "",
        reverse(f"reviews:{realm}-image", args=[placement.pk]),
        picture_url(placement, "original", realm),
        thumb,
        tags,
        Truncator(listing.external_id or listing.url).chars(32),
        placement.position,
        like,
    )
