"""Health: per-Run flags (recorded when a Run finishes), every advertiser's health, and the review queue.

- `run_health_record(run=...)` (settings.RUN_AFTER_FINISH) computes the Run's flags and label shares.
- `advertisers_health()` and `review_queue(...)` are the reads of the staff screens.
"""

from .flags import Flag, RunFigures
from .selectors import AdvertiserHealth, QueueItem, RunSummary, advertisers_health, review_queue
from .services import run_health_record, sitemap_label_shares, sitemap_placeholders_with_color_fix

__all__ = [
    "AdvertiserHealth",
    "Flag",
    "QueueItem",
    "RunFigures",
    "RunSummary",
    "advertisers_health",
    "review_queue",
    "run_health_record",
    "sitemap_label_shares",
    "sitemap_placeholders_with_color_fix",
]
