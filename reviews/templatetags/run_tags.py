"""Helpers of the staff Runs screens: ages ("just now"), and the chart of the last Runs as inline SVG.

The chart is built in Python with format_html (every value escaped), like the loop's charts (loop_tags): a few dozen
points, clearer here than as nested template loops. No script: the screens' CSP allows none inline.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

from reviews.health.runs import RunsChart

register = template.Library()

JUST_NOW = timedelta(minutes=1)
FAILURES_COLOR = "#c62828"
LABEL_COLORS = ("#1f6feb", "#2e7d32", "#8a4fff", "#00838f", "#ef6c00", "#6d4c41", "#ad1457", "#546e7a", "#f9a825")


@register.filter
def age(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago: "just now" under a minute (never "0 minutes ago"), else "3 minutes ago", "2 days, 4 hours ago".
    Empty for no time."""
    if not value:
        return ""
    now = now or timezone.now()
    if now - value < JUST_NOW:
        return "just now"
    return f"{timesince(value, now)} ago"


@register.simple_tag
def label_color(index: int) -> str:
    return LABEL_COLORS[int(index) % len(LABEL_COLORS)]


def _f(value: float) -> str:
    return f"{value:.1f}"


@register.simple_tag
def runs_chart(chart: RunsChart, width: int = 760, height: int = 260) -> SafeString:
    """Lines over the last Runs (oldest left): the share of failed URLs (red, thick) and each label's share of the
    chart's task, 0 to 100%. Each point has a tooltip with its figures; the table beside says the same in numbers."""
    points = chart.points
    if not points:
        return mark_safe('<p class="muted">No finished Run yet.</p>')
    left, right, top, bottom = 44, 14, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(points) - 1)

    def x(index: int) -> float:
        return left + (index * step if len(points) > 1 else plot_w / 2)

    def y(share: float) -> float:
        return top + plot_h * (1 - max(0.0, min(1.0, share)))

    grid = format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="grid"/>'
        '<text x="{}" y="{}" class="axis" text-anchor="end">{}%</text>',
        (
            (left, _f(y(q)), width - right, _f(y(q)), left - 6, _f(y(q) + 4), round(q * 100))
            for q in (0, 0.25, 0.5, 0.75, 1)
        ),
    )
    every = max(1, len(points) // 10)
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" class="axis" text-anchor="middle">#{}</text>',
        (
            (_f(x(i)), height - 10, point.run_id)
            for i, point in enumerate(points)
            if i % every == 0 or i == len(points) - 1
        ),
    )
    series = [
        (
            "failed",
            FAILURES_COLOR,
            3,
            [(i, p.failure_share, f"Run #{p.run_id}: {p.failed} of {p.urls} failed") for i, p in enumerate(points)],
        )
    ]
    for n, label in enumerate(chart.labels):
        series.append(
            (
                label,
                LABEL_COLORS[n % len(LABEL_COLORS)],
                2,
                [
                    (
                        i,
                        p.shares.get(label, 0.0) if p.shares else None,
                        f"Run #{p.run_id}: {label} {100 * p.shares.get(label, 0):.0f}%",
                    )
                    for i, p in enumerate(points)
                ],
            )
        )
    lines = []
    for name, color, stroke, values in series:
        known = [(i, share, tip) for i, share, tip in values if share is not None]
        path = " ".join(f"{'M' if n == 0 else 'L'}{_f(x(i))},{_f(y(share))}" for n, (i, share, _) in enumerate(known))
        dots = format_html_join(
            "",
            '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}</title></circle>',
            ((_f(x(i)), _f(y(share)), color, tip) for i, share, tip in known),
        )
        lines.append(
            format_html(
                '<g class="series" data-series="{}"><path d="{}" fill="none" stroke="{}" stroke-width="{}"/>{}</g>',
                name,
                path,
                color,
                stroke,
                dots,
            )
        )
    return format_html(
        '<svg class="runs-chart" viewBox="0 0 {} {}" width="100%" role="img" aria-label="{}">{}{}{}</svg>',
        width,
        height,
        f"failed URLs and {chart.task} label shares over the last {len(points)} Runs",
        grid,
        ticks,
        mark_safe("".join(lines)),  # noqa: S308 - each part was built by format_html
    )
