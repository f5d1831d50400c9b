"""Reads of the staff Runs screens: a sitemap's Runs with their failures by reason (and sample URLs), their health
flags linked to the grid filtered to exactly the images they are about, and the chart of the last Runs.

Every read runs a constant number of queries, whatever the number of Runs shown, failures or reasons.

The grid links use the grid's filters (reviews.grid): `run=<id>&outcome=<outcome>` the live images whose last Run is
that Run with that outcome, `reason=<failure reason>` among those, `task=<task>&label=<label>` an effective label,
`source=failed` the images whose tag failed. A Run's own counters (Run.failed, Run.failure_reasons) say what it
counted when it ran; the figures beside each link say how many images the grid shows now (later Runs take over the
images they handle again, and gone images leave the grid).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import RowNumber
from django.urls import reverse
from django.utils.http import urlencode

from catalog.models import TASK_LABELS, Outcome, Placement, Run, Sitemap, Task
from reviews.expressions import live_placements

from .services import FINISHED_STATUSES

RUNS_SHOWN = 20  # a sitemap's page lists its last Runs
CHART_RUNS = 30  # the chart shows the last finished Runs
SAMPLES_PER_REASON = 3


def grid_url(sitemap_id: int, **params: object) -> str:
    """The staff grid of the sitemap with these filters."""
    query = urlencode({name: str(value) for name, value in params.items() if value not in (None, "")})
    return reverse("reviews:staff-grid", args=[sitemap_id]) + (f"?{query}" if query else "")


@dataclass(frozen=True)
class GridLink:
    text: str
    url: str
    images: int | None = None  # how many images the grid shows behind it, when known


@dataclass(frozen=True)
class FlagView:
    """A health flag as the screens show it: its sentence and the grid links to the images it is about."""

    code: str
    message: str
    links: list[GridLink] = field(default_factory=list)


@dataclass(frozen=True)
class FailureReason:
    reason: str
    urls: int  # as the Run counted them
    images: int  # live images whose last Run is this one and failed for this reason (what the link shows)
    samples: list[str]
    url: str


@dataclass
class RunView:
    """A Run with what its screens show beside its counters."""

    run: Run
    failed_images: int = 0  # live images whose last Run is this one, failed (what the "failed" link shows)
    failed_url: str = ""
    reasons: list[FailureReason] = field(default_factory=list)
    flags: list[FlagView] = field(default_factory=list)

    @property
    def is_active(self) -> bool:
        return self.run.status in Run.ACTIVE_STATUSES

    @property
    def failure_share(self) -> float | None:
        return self.run.failed / self.run.urls if self.run.urls else None


def flag_links(
    flag: dict[str, Any], *, run_id: int, sitemap_id: int, advertiser_id: int | None = None
) -> list[GridLink]:
    """The grid links of a health flag: the images it is about (none when no grid filter selects exactly them). The
    advertiser's disagreements with staff link to the review queue, where staff settle them, and a drift to the
    queue's unfamiliar images of the advertiser, most unfamiliar first."""
    code = flag.get("code")
    if code == "disagreements" and advertiser_id is not None:
        query = urlencode({"advertiser": str(advertiser_id), "reason": "conflict"})
        return [GridLink("settle them in the review queue", f"{reverse('reviews:staff-queue')}?{query}")]
    if code == "drift" and advertiser_id is not None:
        query = urlencode({"advertiser": str(advertiser_id), "reason": "unfamiliar"})
        return [GridLink("review the most unfamiliar first", f"{reverse('reviews:staff-queue')}?{query}")]
    if code == "failures_jump":
        return [GridLink("failed images", grid_url(sitemap_id, run=run_id, outcome=Outcome.FAILED))]
    if code == "ml_failed":
        if "classification_failed" in flag:
            return [
                GridLink(f"{task} failed", grid_url(sitemap_id, task=task, source="failed"))
                for task in _flag_tasks(flag)
            ]
        return [GridLink("new images", grid_url(sitemap_id, run=run_id, outcome=Outcome.DOWNLOADED))]
    if code == "cdn_changed":
        return [
            GridLink("downloaded", grid_url(sitemap_id, run=run_id, outcome=Outcome.DOWNLOADED)),
            GridLink("bytes already known", grid_url(sitemap_id, run=run_id, outcome=Outcome.CACHE_HIT)),
        ]
    if code == "label_share_jump" and flag.get("task") in TASK_LABELS and flag.get("label"):
        task, label = flag["task"], flag["label"]
        return [GridLink(f"{task} {label}", grid_url(sitemap_id, task=task, label=label))]
    return []


def _flag_tasks(flag: dict[str, Any]) -> list[str]:
    tasks = [task for task in flag.get("tasks", []) if task in Task.values]
    return tasks or [Task.IMAGE_TYPE]


def flag_views(
    flags: list[dict[str, Any]] | None, *, run_id: int, sitemap_id: int, advertiser_id: int | None = None
) -> list[FlagView]:
    return [
        FlagView(
            code=str(flag.get("code", "")),
            message=str(flag.get("message", flag.get("code", ""))),
            links=flag_links(flag, run_id=run_id, sitemap_id=sitemap_id, advertiser_id=advertiser_id),
        )
        for flag in flags or []
        if isinstance(flag, dict)
    ]


def _failures_of(runs: list[Run]) -> dict[int, dict[str, tuple[int, list[str]]]]:
    """Per Run and failure reason: the live images whose last Run it is and that failed, with a few sample URLs.
    Two queries, whatever the number of Runs and reasons."""
    if not runs:
        return {}
    failed = live_placements().filter(last_run__in=[run.pk for run in runs], outcome=Outcome.FAILED)
    counts = {
        (row["last_run_id"], row["failure_reason"]): row["images"]
        for row in failed.values("last_run_id", "failure_reason").annotate(images=Count("id")).order_by()
    }
    samples: dict[tuple[int, str], list[str]] = defaultdict(list)
    ranked = failed.annotate(
        rank=Window(RowNumber(), partition_by=[F("last_run_id"), F("failure_reason")], order_by=F("id").asc())
    ).filter(rank__lte=SAMPLES_PER_REASON)
    for run_id, reason, url in ranked.values_list("last_run_id", "failure_reason", "url"):
        samples[(run_id, reason)].append(url)
    out: dict[int, dict[str, tuple[int, list[str]]]] = defaultdict(dict)
    for (run_id, reason), images in counts.items():
        out[run_id][reason] = (images, samples[(run_id, reason)])
    return out


def _run_views(runs: list[Run]) -> list[RunView]:
    failures = _failures_of(runs)
    views = []
    for run in runs:
        found = failures.get(run.pk, {})
        step_failures = {reason: n for reason, n in (run.failure_reasons or {}).items() if reason not in found}
        reasons = [
            FailureReason(
                reason=reason or "unknown",
                urls=int((run.failure_reasons or {}).get(reason, 0)),
                images=images,
                samples=samples,
                url=grid_url(run.sitemap_id, run=run.pk, outcome=Outcome.FAILED, reason=reason),
            )
            for reason, (images, samples) in sorted(found.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ]
        # Reasons the Run counted that no image shows now (a later step's failures, e.g. classification_failed, or
        # images a later Run took over): listed with their count and no sample.
        reasons += [
            FailureReason(reason=reason, urls=int(n), images=0, samples=[], url="")
            for reason, n in step_failures.items()
            if n
        ]
        views.append(
            RunView(
                run=run,
                failed_images=sum(images for images, _ in found.values()),
                failed_url=grid_url(run.sitemap_id, run=run.pk, outcome=Outcome.FAILED),
                reasons=reasons,
                flags=flag_views(
                    run.health_flags, run_id=run.pk, sitemap_id=run.sitemap_id, advertiser_id=run.sitemap.advertiser_id
                ),
            )
        )
    return views


def sitemap_runs(*, sitemap: Sitemap, limit: int = RUNS_SHOWN) -> list[RunView]:
    """The sitemap's last Runs, newest first, each with its failures by reason and its flags (three queries)."""
    runs = list(
        Run.objects.filter(sitemap=sitemap).select_related("requested_by").order_by("-created_at", "-id")[:limit]
    )
    for run in runs:
        run.sitemap = sitemap  # one sitemap: no join per Run
    return _run_views(runs)


def run_view(*, run: Run) -> RunView:
    """One Run with its failures by reason and its flags."""
    return _run_views([run])[0]


@dataclass(frozen=True)
class ChartPoint:
    run_id: int
    finished_at: Any
    status: str
    urls: int
    failed: int
    failure_share: float | None
    shares: dict[str, float]  # label -> share of the chosen task


@dataclass(frozen=True)
class RunsChart:
    """The last finished Runs of a sitemap, oldest first: the share of failed URLs and the share of each label."""

    task: str
    labels: list[str]
    points: list[ChartPoint]


def runs_chart(*, sitemap: Sitemap, task: str = Task.IMAGE_TYPE, limit: int = CHART_RUNS) -> RunsChart:
    """One query: the last `limit` finished Runs with their counters and label shares (recorded at their end)."""
    runs = list(
        Run.objects.filter(sitemap=sitemap, status__in=FINISHED_STATUSES, finished_at__isnull=False)
        .order_by("-finished_at", "-id")
        .only("id", "status", "urls", "failed", "finished_at", "label_shares")[:limit]
    )
    runs.reverse()
    points = [
        ChartPoint(
            run_id=run.pk,
            finished_at=run.finished_at,
            status=run.status,
            urls=run.urls,
            failed=run.failed,
            failure_share=run.failed / run.urls if run.urls else None,
            shares={str(k): float(v) for k, v in ((run.label_shares or {}).get(task) or {}).items()},
        )
        for run in runs
    ]
    seen = {label for point in points for label in point.shares}
    known = [label for label in TASK_LABELS.get(task, ()) if label in seen]
    return RunsChart(task=task, labels=known + sorted(seen - set(known)), points=points)


@dataclass(frozen=True)
class SitemapLastRun:
    """A sitemap with its latest Run and the live images that Run failed on (what its "failed" link shows)."""

    sitemap: Sitemap
    run: Run | None
    failed_images: int
    failed_url: str
    runs_url: str


def sitemaps_last_runs(*, sitemaps: QuerySet[Sitemap] | None = None) -> list[SitemapLastRun]:
    """Every sitemap (or these) with its latest Run and that Run's failed live images; three queries."""
    latest = Run.objects.filter(sitemap_id=OuterRef("pk")).order_by("-created_at", "-id").values("id")[:1]
    rows = list(
        (sitemaps if sitemaps is not None else Sitemap.objects.all())
        .select_related("advertiser")
        .annotate(last_run_id=Subquery(latest))
        .order_by("advertiser__name", "id")
    )
    run_ids = [row.last_run_id for row in rows if row.last_run_id]
    runs = Run.objects.in_bulk(run_ids)
    failed = dict(
        live_placements()
        .filter(Q(last_run_id__in=run_ids), outcome=Outcome.FAILED)
        .values_list("last_run_id")
        .annotate(images=Count("id"))
        .order_by()
    )
    out = []
    for sitemap in rows:
        run = runs.get(sitemap.last_run_id)
        out.append(
            SitemapLastRun(
                sitemap=sitemap,
                run=run,
                failed_images=failed.get(run.pk, 0) if run else 0,
                failed_url=grid_url(sitemap.pk, run=run.pk, outcome=Outcome.FAILED) if run else "",
                runs_url=reverse("reviews:staff-sitemap-runs", args=[sitemap.pk]),
            )
        )
    return out


def live_failed_placements(run: Run) -> QuerySet[Placement]:
    """The live images whose last Run is this one and failed: exactly what the Run's "failed" link shows."""
    return live_placements().filter(listing__sitemap_id=run.sitemap_id, last_run=run, outcome=Outcome.FAILED)
