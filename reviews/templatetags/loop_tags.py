"""Chart helpers of the loop screens: percentages, CSS bars, heatmap cells and an inline SVG line chart.

Built in Python with format_html (every value escaped) rather than in template syntax: the charts are small
arithmetic over a few dozen points, clearer here than as nested template loops.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# Line colors of the per-advertiser series (the overall line is drawn in ink, thicker).
PALETTE = ("#1f6feb", "#c62828", "#2e7d32", "#8a4fff", "#00838f", "#ef6c00", "#6d4c41", "#ad1457", "#546e7a")
MAX_SERIES = len(PALETTE)


@register.filter
def pct(value: float | None, digits: int = 1) -> str:
    """0.931 -> "93.1%"; None -> "—"."""
    if value is None or value == "":
        return "—"
    return f"{100 * float(value):.{int(digits)}f}%"


@register.filter
def get(mapping: Any, key: Any) -> Any:
    """mapping[key] (None when absent): dict lookups with a variable key."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.simple_tag
def hbar(value: float | None, top: float = 1.0, kind: str = "") -> SafeString:
    """A horizontal bar whose width is value / top of its cell (a CSS bar, numbers printed beside it)."""
    share = 0.0 if not value or not top else max(0.0, min(1.0, float(value) / float(top)))
    return format_html('<span class="lbar {}"><span style="width:{}%"></span></span>', kind, f"{100 * share:.1f}")


@register.simple_tag
def heat(share: float) -> str:
    """The style of a heatmap cell: the accent color, as opaque as the share (0-1) of its row."""
    alpha = max(0.0, min(1.0, float(share)))
    ink = "#fff" if alpha > 0.55 else "inherit"
    return f"background: rgba(31, 111, 235, {alpha:.2f}); color: {ink}"


def _f(value: float) -> str:
    return f"{value:.1f}"


def _nice_top(value: float) -> float:
    for top in (0.04, 0.08, 0.2, 0.4, 0.6, 0.8, 1.0):  # quarters are whole percents
        if value <= top:
            return top
    return 1.0


@register.simple_tag
def series_color(index: int) -> str:
    return PALETTE[int(index) % len(PALETTE)]


@register.simple_tag
def overturned_chart(data: dict[str, Any], width: int = 860, height: int = 300) -> SafeString:
    """The accuracy-over-time chart: x = ISO weeks, y = share of model tags overturned; the overall line (ink,
    thick), one line per advertiser (the MAX_SERIES with the most reviewed tags), promotions and rollbacks as
    labelled vertical markers."""
    weeks: list[str] = data.get("weeks", [])
    if not weeks:
        return mark_safe('<p class="muted">No weeks to show.</p>')
    left, right, top, bottom = 48, 16, 34, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    series = [
        (entry["name"], PALETTE[i % len(PALETTE)], 1.6, entry["series"])
        for i, entry in enumerate(data.get("advertisers", [])[:MAX_SERIES])
    ]
    series.append(("overall", "#1d232b", 3.0, data.get("overall", [])))  # drawn last: on top
    shares = [p["share"] for _, _, _, points in series for p in points if p.get("share") is not None]
    y_top = _nice_top(max(shares, default=0.0))
    step = plot_w / max(len(weeks) - 1, 1)

    def x(i: int) -> float:
        return left + i * step

    def y(share: float) -> float:
        return top + plot_h * (1 - share / y_top)

    parts: list[SafeString] = []
    for k in range(5):  # horizontal grid lines and y labels
        share = y_top * k / 4
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" class="grid"/>'
                '<text x="{}" y="{}" class="ylabel">{}</text>',
                left, width - right, _f(y(share)), _f(y(share)), left - 6, _f(y(share) + 4), pct(share, 0),
            )
        )  # fmt: skip
    every = max(1, len(weeks) // 8)
    last = len(weeks) - 1
    for i, week in enumerate(weeks):
        # Every few weeks, and the latest one unless it would run into the previous label.
        if i == last or (i % every == 0 and last - i >= every / 2):
            parts.append(
                format_html('<text x="{}" y="{}" class="xlabel">{}</text>', _f(x(i)), height - bottom + 16, week[5:])
            )
    index = {week: i for i, week in enumerate(weeks)}
    for n, marker in enumerate(data.get("promotions", [])):
        at = index.get(marker["week"])
        if at is None:
            continue
        kind = marker.get("kind", "promote")
        parts.append(
            format_html(
                '<g class="marker {}"><line x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text x="{}" y="{}" text-anchor="{}">{} {}</text><title>{} {} on {}</title></g>',
                kind, _f(x(at)), _f(x(at)), top - 4, top + plot_h, _f(x(at) + (3 if at < len(weeks) / 2 else -3)),
                top - 8 - 10 * (n % 2), "start" if at < len(weeks) / 2 else "end",
                "↺" if kind == "rollback" else "▲", marker.get("to_version", ""),
                kind, marker.get("to_version", ""), marker.get("date", "")[:10],
            )
        )  # fmt: skip
    for name, color, stroke, points in series:
        # A week nobody reviewed has no share: the line joins the weeks that have one, each marked with a dot.
        known = [(x(i), y(p["share"])) for i, p in enumerate(points) if p.get("share") is not None]
        if len(known) > 1:
            parts.append(
                format_html(
                    '<polyline points="{}" fill="none" stroke="{}" stroke-width="{}" data-series="{}"/>',
                    " ".join(f"{px:.1f},{py:.1f}" for px, py in known), color, stroke, name,
                )
            )  # fmt: skip
        parts.extend(
            format_html('<circle cx="{}" cy="{}" r="{}" fill="{}"/>', _f(px), _f(py), 2 + stroke / 2, color)
            for px, py in known
        )
    body = format_html_join("", "{}", ((part,) for part in parts))
    return format_html(
        '<svg class="line-chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">'
        '<rect x="{}" y="{}" width="{}" height="{}" class="plot"/>{}</svg>',
        width, height, width, height, "share of model tags overturned per week",
        left, top, plot_w, plot_h, body,
    )  # fmt: skip


@register.filter
def export_split(export: Any, split: str) -> int:
    """Items of one split of an export, from its stored counts (no query)."""
    return sum((export.counts or {}).get(split, {}).values())


@register.filter
def export_items(export: Any) -> int:
    return export_split(export, "train") + export_split(export, "test")


@register.filter
def index(sequence: Any, position: int) -> Any:
    """sequence[position] (None when out of range)."""
    try:
        return sequence[int(position)]
    except (IndexError, TypeError, ValueError):
        return None
