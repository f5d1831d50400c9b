"""The health flags of a Run, in plain Python: its figures against the average of the previous Runs of its sitemap.

A flag is a JSON object: {"code": ..., "message": a short sentence with the figures, ...the figures}. The
comparisons only flag a Run that has at least one previous Run to compare with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

Flag = dict[str, Any]

PREVIOUS_RUNS = 5  # compared with the average of up to this many previous finished Runs
FAILURES_JUMP_FACTOR = 2.0  # failed/urls above this many times the previous average...
FAILURES_JUMP_MIN_POINTS = 0.05  # ...and at least 5 points above it
CDN_MOSTLY = 0.5  # "most URLs": more than half
CDN_DOWNLOAD_JUMP = 0.30  # the share of downloads grew by more than 30 points
LABEL_SHARE_JUMP = 0.20  # a label's share moved by at least 20 points
_EPSILON = 1e-9


@dataclass(frozen=True)
class RunFigures:
    """What a Run did with its URLs, and the share of each effective label per task at its end."""

    urls: int = 0
    not_modified: int = 0
    cache_hits: int = 0
    downloaded: int = 0
    failed: int = 0
    label_shares: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # A cold Run could revalidate no URL: it got no "not modified", and no earlier Run of its sitemap had got
    # one (the sitemap's first Run; Runs while its CDN sent no validators yet). It says nothing about how
    # often the sitemap's URLs come back "not modified".
    cold: bool = False

    def share(self, count: int) -> float:
        return count / self.urls if self.urls else 0.0


def flag(code: str, message: str, **figures: Any) -> Flag:
    return {"code": code, "message": message, **figures}


def _pct(share: float) -> str:
    return f"{round(share * 100)}%"


def _images(n: int) -> str:
    return "1 image" if n == 1 else f"{n} images"


def _runs(n: int) -> str:
    return "the previous Run" if n == 1 else f"the previous {n} Runs"


def ml_failed(
    *, classification_failed: int, downloaded: int, classified: int, active_tasks: Sequence[str]
) -> Flag | None:
    """The ML step failed: results failed, or new images came in and none was classified though models are active."""
    if classification_failed:
        return flag(
            "ml_failed",
            f"the model failed on {_images(classification_failed)}: they are shown as failed, not tagged",
            classification_failed=classification_failed,
            tasks=list(active_tasks),  # which tags may show "failed" (the screens link to them)
        )
    if downloaded and not classified and active_tasks:
        return flag(
            "ml_failed",
            f"{_images(downloaded)} downloaded but none classified, "
            f"although models are active for {', '.join(active_tasks)}",
            downloaded=downloaded,
            classified=0,
        )
    return None


def failures_jump(current: RunFigures, previous: Sequence[RunFigures]) -> Flag | None:
    """Failed URLs above twice the previous average and at least 5 points above it."""
    previous = [run for run in previous if run.urls]
    if not current.urls or not previous:
        return None
    rate = current.share(current.failed)
    average = fmean(run.share(run.failed) for run in previous)
    if rate > FAILURES_JUMP_FACTOR * average + _EPSILON and rate - average >= FAILURES_JUMP_MIN_POINTS - _EPSILON:
        return flag(
            "failures_jump",
            f"{_pct(rate)} of the images failed ({current.failed} of {current.urls}), "
            f"against {_pct(average)} on average over {_runs(len(previous))}",
            failed=current.failed,
            urls=current.urls,
            rate=round(rate, 4),
            previous_rate=round(average, 4),
            previous_runs=len(previous),
        )
    return None


def cdn_changed(current: RunFigures, previous: Sequence[RunFigures]) -> Flag | None:
    """Most URLs fetched again (cache hits or downloads) where previous Runs mostly got "not modified", or a jump
    of more than 30 points in the share of downloads: the CDN renamed its files or changed their headers.

    The "not modified" baseline leaves cold Runs out (RunFigures.cold): a sitemap's first Run could revalidate
    nothing, and averaging its 0% in would hide the first rename after one unchanged re-run (50%, not more than
    half). With only cold Runs before, there is no such baseline and only the downloads jump is checked (a CDN
    that never revalidates fetches everything every time: that is no change). The downloads baseline keeps
    every previous Run.
    """
    previous = [run for run in previous if run.urls]
    if not current.urls or not previous:
        return None
    warm = [run for run in previous if not run.cold]
    fetched = current.share(current.cache_hits + current.downloaded)
    not_modified_before = fmean(run.share(run.not_modified) for run in warm) if warm else 0.0
    downloaded = current.share(current.downloaded)
    downloaded_before = fmean(run.share(run.downloaded) for run in previous)
    figures = {
        "fetched": round(fetched, 4),
        "previous_not_modified": round(not_modified_before, 4),
        "downloaded": round(downloaded, 4),
        "previous_downloaded": round(downloaded_before, 4),
        "previous_runs": len(previous),
    }
    if fetched > CDN_MOSTLY and not_modified_before > CDN_MOSTLY:
        return flag(
            "cdn_changed",
            f"{_pct(fetched)} of the URLs were fetched again (cache hits or downloads) where {_runs(len(warm))} "
            f"got {_pct(not_modified_before)} 'not modified': the CDN may have renamed its files or changed headers",
            **figures,
        )
    if downloaded - downloaded_before > CDN_DOWNLOAD_JUMP + _EPSILON:
        return flag(
            "cdn_changed",
            f"downloads jumped from {_pct(downloaded_before)} to {_pct(downloaded)} of the URLs: "
            "the CDN may have renamed or re-encoded its images",
            **figures,
        )
    return None


def label_share_jumps(current: RunFigures, previous: Sequence[RunFigures]) -> list[Flag]:
    """One flag per (task, label) whose share moved by at least 20 points against the previous average."""
    flags = []
    for task, shares in current.label_shares.items():
        before = [run.label_shares[task] for run in previous if run.label_shares.get(task)]
        if not shares or not before:
            continue
        labels = sorted(set(shares).union(*before))
        for label in labels:
            share = shares.get(label, 0.0)
            average = fmean(previous_shares.get(label, 0.0) for previous_shares in before)
            if abs(share - average) >= LABEL_SHARE_JUMP - _EPSILON:
                verb = "jumped" if share > average else "fell"
                flags.append(
                    flag(
                        "label_share_jump",
                        f"{task}: share of {label} {verb} from {_pct(average)} to {_pct(share)}",
                        task=task,
                        label=label,
                        share=round(share, 4),
                        previous_share=round(average, 4),
                        previous_runs=len(before),
                    )
                )
    return flags


def placeholder_with_color_fix(images: int) -> Flag | None:
    """Someone fixed the color of images whose effective type is Placeholder (a placeholder has no color)."""
    if not images:
        return None
    return flag(
        "placeholder_color_fix",
        f"{_images(images)} tagged Placeholder {'has' if images == 1 else 'have'} a color fix: "
        "a placeholder has no color, so either the image type or the fix is wrong",
        images=images,
    )


def disagreements(tags: int) -> Flag | None:
    if not tags:
        return None
    return flag(
        "disagreements",
        f"the advertiser and staff disagree on {tags} tags of this advertiser's images: "
        "settle them before they go into a training set",
        tags=tags,
    )


def drift(
    *,
    new_images: int,
    measured: int,
    unfamiliar: int,
    usual_share: float,
    reference: int,
    model_version: int,
    min_share: float,
    min_images: int,
) -> Flag | None:
    """Many of the Run's new images are unlike what the model knows (classifier.services.drift): a share of at least
    `min_share` of the measured ones, and at least `min_images`, are above the reference's threshold."""
    if not measured:
        return None
    share = unfamiliar / measured
    if share < min_share - _EPSILON or unfamiliar < min_images:
        return None
    of = f"the Run's {new_images} new images"
    if measured != new_images:
        of = f"{measured} measured of {of}"
    return flag(
        "drift",
        f"{_pct(share)} of {of} are unlike what the model knows (usual: {_pct(usual_share)}): "
        "its tags on them may be wrong; review the most unfamiliar first",
        new_images=new_images,
        measured=measured,
        unfamiliar=unfamiliar,
        share=round(share, 4),
        usual_share=round(usual_share, 4),
        reference=reference,
        model_version=model_version,
    )
