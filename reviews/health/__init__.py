"""Health: per-Run flags (recorded when a Run finishes), every advertiser's health, and the review queue.

- `run_health_record(run=...)` (settings.RUN_AFTER_FINISH) computes the Run's flags and label shares.
- `advertisers_health()`, `review_queue(...)` (with its count and the day's decisions) and the Runs of a sitemap
  (`reviews.health.runs`) are the reads of the staff screens.
"""

from .flags import Flag, RunFigures
from .queue import QUEUE_KINDS, QueueItem, queue_decided_today, review_queue, review_queue_count
from .selectors import AdvertiserHealth, RunSummary, advertisers_health
from .services import run_health_record, sitemap_label_shares, sitemap_placeholders_with_color_fix

__all__ = [
    "QUEUE_KINDS",
    "AdvertiserHealth",
    "Flag",
    "QueueItem",
    "RunFigures",
    "RunSummary",
    "advertisers_health",
    "queue_decided_today",
    "review_queue",
    "review_queue_count",
    "run_health_record",
    "sitemap_label_shares",
    "sitemap_placeholders_with_color_fix",
]
