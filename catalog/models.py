"""The catalog: who owns which inventory, what it lists, and every distinct image content.

A Sitemap is one inventory source of an Advertiser. A Run reads it into Listings (a vehicle or product)
and Placements (an image URL as it appears in a listing). Placements point at an ImageAsset, one row per
distinct image content (SHA-256 of the bytes), which is what the classifier's results and the manual
fixes hang on.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import CharField, F, Func, Q
from django.urls import reverse

from catalog.imaging import COLOR_SIGNATURE_BYTES, PHASH_PIECE_DIGITS, PHASH_PIECES


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Task(models.TextChoices):
    """What the models tag. One active model head per task."""

    IMAGE_TYPE = "image_type", "Image type"
    COLOR = "color", "Color"
    INTENT = "intent", "Shopping intent"
    SENSITIVE = "sensitive", "Sensitivity"


# The labels of each task (DESIGN.md). Models may be trained with others; fixes use these.
TASK_LABELS: dict[str, tuple[str, ...]] = {
    Task.IMAGE_TYPE: ("Dealer", "Stock", "Placeholder"),
    Task.COLOR: (
        "Black", "Blue", "Brown", "Burgundy", "Green", "Grey", "Orange", "Pink", "Purple", "Red", "White", "Yellow"
    ),
    Task.INTENT: (
        "No Shopping Intent", "Fashion & Style", "Home & Garden", "Tools, Vehicles, Electronics & Appliances"
    ),
    Task.SENSITIVE: ("not sensitive", "sensitive"),
}  # fmt: skip


def all_tasks() -> list[str]:
    return [task.value for task in Task]


class Advertiser(TimeStampedModel):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)
    respect_robots_txt = models.BooleanField(
        default=False,
        help_text="Do not download an image whose path the image host's robots.txt disallows for our user agent "
        "(recorded failed, robots_disallowed). Off by default: the advertiser asked us to read their images.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(TimeStampedModel):
    """Gives a user access to one advertiser's data in the portal."""

    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        EDITOR = "editor", "Editor"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    advertiser = models.ForeignKey(Advertiser, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.EDITOR)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "advertiser"], name="membership_unique_user_advertiser"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.advertiser} ({self.role})"


class Sitemap(TimeStampedModel):
    """One inventory source of an advertiser."""

    class Kind(models.TextChoices):
        SITEMAP = "sitemap", "Image sitemap or sitemap index"
        FEED = "feed", "Scrape feed (JSON)"
        PAGE = "page", "Product page"

    class Schedule(models.TextChoices):
        NIGHTLY = "nightly", "Nightly"
        MANUAL = "manual", "Only when triggered (scrape finished, API, by hand)"

    advertiser = models.ForeignKey(Advertiser, on_delete=models.CASCADE, related_name="sitemaps")
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SITEMAP)
    # A feed-kind sitemap may have no URL: the scraper posts the feed document with the Run.
    url = models.URLField(max_length=2048, blank=True)
    schedule = models.CharField(max_length=20, choices=Schedule.choices, default=Schedule.NIGHTLY)
    is_enabled = models.BooleanField(default=True)
    tasks_enabled = models.JSONField(default=all_tasks, help_text='Tasks to tag, e.g. ["image_type", "color"].')
    # Live image URLs (placements neither gone nor in a gone listing), counted by each Run's sync, the only
    # writer of placements: the review grid opens without counting 100,000 rows. Null: never synced.
    live_images = models.PositiveIntegerField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["advertiser__name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["advertiser", "url"], condition=~Q(url=""), name="sitemap_unique_advertiser_url"
            ),
            models.CheckConstraint(condition=Q(kind="feed") | ~Q(url=""), name="sitemap_url_required_unless_feed"),
        ]

    def __str__(self) -> str:
        return self.name or self.url or f"{self.advertiser} feed #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("admin:catalog_sitemap_change", args=[self.pk])


class Listing(TimeStampedModel):
    """A vehicle or product of a sitemap. Gone listings are kept with their history."""

    sitemap = models.ForeignKey(Sitemap, on_delete=models.CASCADE, related_name="listings")
    # Natural key within the sitemap: the scrape's external id when it has one, else the page URL.
    key = models.CharField(max_length=2048)
    external_id = models.CharField(max_length=200, blank=True)
    url = models.URLField(max_length=2048)
    title = models.CharField(max_length=500, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    lastmod = models.DateTimeField(null=True, blank=True)
    is_gone = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sitemap", "key"], name="listing_unique_sitemap_key"),
        ]

    def __str__(self) -> str:
        return self.title or self.external_id or self.url


class PhashPiece(Func):
    """Piece n of an asset's pHash (catalog.imaging.PHASH_PIECES), as SQL: SUBSTR(phash, start, length) with the
    numbers written into the statement, so that a query's expression is the index's, on SQLite as on PostgreSQL
    (a bound parameter would not match the index)."""

    template = "SUBSTR(%(expressions)s, %(start)d, %(length)d)"

    def __init__(self, n: int) -> None:
        super().__init__(
            F("phash"), start=1 + n * PHASH_PIECE_DIGITS, length=PHASH_PIECE_DIGITS, output_field=CharField()
        )


class ImageAsset(TimeStampedModel):
    """One row per distinct image content. The SHA-256 of the bytes is the key of every cached result."""

    sha256 = models.CharField(max_length=64, unique=True)
    # 64-bit perceptual hash (pHash) as 16 hex digits: links a re-encoded copy to its original.
    phash = models.CharField(max_length=16, db_index=True)
    # Written with the asset (catalog.imaging.color_signature); the database default lets bulk loads leave it out.
    color_signature = models.CharField(
        max_length=2 * COLOR_SIGNATURE_BYTES,
        blank=True,
        default="",
        db_default="",
        editable=False,
        help_text=(
            "Mean Lab color of each cell of an 8 x 8 grid over the picture, as hex: with the pHash, tells a copy of "
            "the picture from the same picture in another color. Empty when unknown: then the image is a "
            "near-duplicate of nothing (no cluster, no carried fix)."
        ),
    )
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=10)
    byte_size = models.PositiveIntegerField()
    original = models.FileField(upload_to="originals/", max_length=200)
    thumbnail = models.FileField(upload_to="thumbnails/", max_length=200)
    # Written by catalog.services.clusters only (after each Run's fetch, and by `manage.py rebuild_clusters`).
    cluster_id = models.BigIntegerField(
        null=True,
        blank=True,
        db_index=True,
        editable=False,
        help_text=(
            "Near-duplicate cluster: the id of its root, the first asset this one is a near-duplicate of "
            "(perceptual hash within settings.CARRY_FORWARD_MAX_DISTANCE bits and color signature within "
            "CARRY_FORWARD_MAX_COLOR_DISTANCE; its own id when alone). Empty until the asset has been clustered."
        ),
    )

    class Meta:
        # Multi-index hashing of the pHash (catalog.imaging.PHASH_PIECES): clustering a Run's new images reads only
        # the assets that share a piece nearly, not every asset (catalog.services.clusters).
        indexes = [models.Index(PhashPiece(n), name=f"catalog_asset_phash_piece_{n}") for n in range(PHASH_PIECES)]
        constraints = [
            models.CheckConstraint(condition=Q(sha256__regex=r"^[0-9a-f]{64}$"), name="asset_sha256_hex"),
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="asset_positive_size"),
        ]

    def __str__(self) -> str:
        return f"{self.sha256[:12]} {self.width}x{self.height} {self.format}"


class Outcome(models.TextChoices):
    """What a Run did with one image URL."""

    NOT_MODIFIED = "not_modified", "Not modified (304)"
    CACHE_HIT = "cache_hit", "Bytes already known"
    DOWNLOADED = "downloaded", "New image"
    FAILED = "failed", "Failed"


class Placement(TimeStampedModel):
    """An image URL as it appears in a listing, with the HTTP validators last seen for it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        OK = "ok", "OK"
        FAILED = "failed", "Failed"

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="placements")
    url = models.URLField(max_length=2048)
    position = models.PositiveIntegerField()
    asset = models.ForeignKey(ImageAsset, on_delete=models.PROTECT, null=True, blank=True, related_name="placements")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.CharField(max_length=40, blank=True)
    failure_detail = models.TextField(blank=True)
    etag = models.CharField(max_length=500, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    content_length = models.BigIntegerField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    is_gone = models.BooleanField(default=False)
    # What the last Run did with this URL: a resumed Run skips the placements it already handled.
    last_run = models.ForeignKey("Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True)

    class Meta:
        ordering = ["listing_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["listing", "url"], name="placement_unique_listing_url"),
            models.CheckConstraint(condition=~Q(status="ok") | Q(asset__isnull=False), name="placement_ok_has_asset"),
        ]
        indexes = [
            models.Index(fields=["url"], name="placement_url_idx"),
            models.Index(fields=["last_run", "outcome"], name="placement_run_outcome_idx"),
            # The review grid's order: a page of a 100,000-image sitemap reads 100 entries of this index.
            models.Index(
                fields=["listing", "position", "id"], condition=Q(is_gone=False), name="placement_grid_order_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.url


class Run(TimeStampedModel):
    """One pass over a sitemap. At most one queued or running Run per sitemap (kept by the database)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Partial (some images failed)"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        NIGHTLY = "nightly", "Nightly"
        SCRAPE = "scrape", "Scrape finished"
        MANUAL = "manual", "Manual"
        API = "api", "API"

    class Step(models.TextChoices):
        QUEUED = "queued", "Queued"
        READ = "read", "Reading the source"
        FETCH = "fetch", "Fetching images"
        CLASSIFY = "classify", "Classifying"
        DONE = "done", "Done"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    sitemap = models.ForeignKey(Sitemap, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    step = models.CharField(max_length=20, choices=Step.choices, default=Step.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The scrape feed posted with the Run, for feed-kind sitemaps.
    feed_document = models.JSONField(null=True, blank=True)
    listings = models.PositiveIntegerField(default=0)
    urls = models.PositiveIntegerField(default=0)
    not_modified = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    downloaded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    classified = models.PositiveIntegerField(default=0)
    # {"timeout": 3, "http_404": 12, ...}: failures grouped by reason.
    failure_reasons = models.JSONField(default=dict, blank=True)
    # Problems reading the source (broken XML after N entries, a missing child sitemap, ...).
    source_errors = models.JSONField(
        default=list, blank=True, help_text="What could not be read: unseen listings of an incomplete read stay live."
    )
    source_warnings = models.JSONField(
        default=list,
        blank=True,
        help_text="Repairs and repeats in a source read in full (a raw '&' kept, an entry twice): shown, not failures.",
    )
    error = models.TextField(blank=True, help_text="Why the Run as a whole failed.")
    health_flags = models.JSONField(default=list, blank=True)
    # Share of each effective label per task over the live images at the end of the Run (reviews.health):
    # {"image_type": {"Dealer": 0.7, ...}, ...}, so later Runs can tell a jump.
    label_shares = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker started this Run.")
    # The lease: which worker process runs it, and when it last showed signs of life.
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["sitemap"],
                condition=Q(status__in=["queued", "running"]),
                name="run_one_active_per_sitemap",
            ),
        ]
        indexes = [models.Index(fields=["sitemap", "-created_at"], name="run_sitemap_recent_idx")]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.sitemap} ({self.status})"

    @property
    def done(self) -> int:
        return self.not_modified + self.cache_hits + self.downloaded + self.failed

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def counters(self) -> dict[str, object]:
        return {
            "run": self.pk,
            "sitemap": self.sitemap_id,
            "status": self.status,
            "step": self.step,
            "trigger": self.trigger,
            "listings": self.listings,
            "urls": self.urls,
            "not_modified": self.not_modified,
            "cache_hits": self.cache_hits,
            "downloaded": self.downloaded,
            "failed": self.failed,
            "classified": self.classified,
            "failure_reasons": self.failure_reasons,
            "source_errors": self.source_errors,
            "source_warnings": self.source_warnings,
            "error": self.error,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_seconds": self.duration_seconds,
        }
