"""Manual fixes: the history of every correction, append-only. The latest fix in its scope wins.

A fix is scoped to (advertiser, asset, task): keyed by image content, so it stays when the CDN renames the
file, and per advertiser, so two advertisers sharing a CDN never overwrite each other.

A withdrawal (an undo or a revert back to a time when no fix was in effect) is a row too: while it is the latest of
its scope, no fix is in effect there, and the model's (or the scrape's) tag is the tag again. What a row puts in effect
is defined once, here, in Python (ManualFix.label_in_effect) and SQL (label_in_effect, on_side).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.db.models import Case, CharField, F, Q, Value, When
from django.db.models.functions import Coalesce, Lower
from django.urls import reverse

from catalog.models import Advertiser, ImageAsset, Listing, Placement, Sitemap, Task, TimeStampedModel
from core.errors import ApplicationError


class AppendOnly(ApplicationError):
    """Manual fixes are history: they are never updated or deleted."""

    code = "append_only"
    http_status = 409


class ManualFixQuerySet(models.QuerySet["ManualFix"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnly("manual fixes are append-only: record a new fix instead")

    def delete(self) -> NoReturn:
        raise AppendOnly("manual fixes are append-only: revert with a new fix instead")


class FixSource(models.TextChoices):
    """Where a fix (or a change set of fixes) was made."""

    STAFF = "staff", "Staff screen"
    ADVERTISER = "advertiser", "Advertiser portal"
    API = "api", "API"
    CARRIED = "carried", "Carried forward from a re-encoded copy"


class ChangeSet(models.Model):
    """One reviewer action that wrote fixes: a save of the grid, a bulk retag, a queue decision, or the undo of an
    earlier change set. Undoing writes new rows (history stays append-only) in a change set of its own: a fix back to
    the fix that was in effect before, or a withdrawal where none was."""

    class Kind(models.TextChoices):
        SAVE = "save", "Save"
        BULK = "bulk", "Bulk retag"
        DECISION = "decision", "Review decision"
        UNDO = "undo", "Undo"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    source = models.CharField(
        max_length=20, choices=FixSource.choices, default=FixSource.STAFF,
        help_text="Where it was made: the portal may undo only what was made in the portal.",
    )  # fmt: skip
    advertiser = models.ForeignKey(Advertiser, on_delete=models.PROTECT, related_name="change_sets")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    fixes = models.PositiveIntegerField(default=0, help_text="How many fixes it wrote.")
    summary = models.CharField(max_length=300, blank=True)
    undoes = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="undone_by",
        help_text="The change set this one undid.",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.fixes} fixes ({self.created_at:%Y-%m-%d %H:%M})"


class ManualFix(models.Model):
    Source = FixSource

    # Who speaks for which side in a conflict: the staff screen and the API (staff tokens: an advertiser's token
    # records source "advertiser") speak for staff; the portal for the advertiser. A carried fix is a copy of
    # the advertiser's own earlier label, not a new opinion: it counts for neither side.
    STAFF_SIDE = (Source.STAFF, Source.API)
    ADVERTISER_SIDE = (Source.ADVERTISER,)
    HUMAN = STAFF_SIDE + ADVERTISER_SIDE

    advertiser = models.ForeignKey(Advertiser, on_delete=models.PROTECT, related_name="manual_fixes")
    asset = models.ForeignKey(ImageAsset, on_delete=models.PROTECT, related_name="manual_fixes")
    task = models.CharField(max_length=20, choices=Task.choices)
    old_label = models.CharField(max_length=100, blank=True, help_text="The effective label before the fix.")
    new_label = models.CharField(max_length=100, blank=True, help_text="Empty for a withdrawal.")
    withdraws = models.BooleanField(
        default=False,
        help_text="A withdrawal: from this row on no fix is in effect in the scope (the model's or the scrape's tag"
        " is), until the next fix. It `reverts` the fix it withdraws; its old label is what that fix said.",
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    note = models.TextField(blank=True)
    settles = models.BooleanField(
        default=False,
        help_text="A staff decision from the review queue: it settles a conflict (advertiser vs staff, or advertisers"
        " among themselves) until someone fixes the scope again.",
    )
    # A carried fix points at the fix it was carried from; a revert or a withdrawal at the fix it undoes.
    origin = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="carried")
    reverts = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="reverted_by")
    change_set = models.ForeignKey(ChangeSet, on_delete=models.PROTECT, null=True, blank=True, related_name="fix_rows")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = ManualFixQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "manual fixes"
        indexes = [
            models.Index(fields=["advertiser", "asset", "task", "-created_at", "-id"], name="fix_scope_latest_idx"),
            models.Index(fields=["asset", "task"], name="fix_asset_task_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(withdraws=False) & ~Q(new_label="")
                | Q(withdraws=True, new_label="", reverts__isnull=False, settles=False),
                name="fix_has_new_label_or_withdraws",
            ),
            models.CheckConstraint(
                condition=~models.Q(source="carried") | models.Q(origin__isnull=False), name="fix_carried_has_origin"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task}: {self.old_label or '-'} -> {self.new_label or 'withdrawn'} ({self.source})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnly("manual fixes are append-only: record a new fix instead")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnly("manual fixes are append-only: revert with a new fix instead")

    @property
    def is_confirmation(self) -> bool:
        """A fix to the label already in effect: a human looked and agreed (a withdrawal agrees with nothing). The
        SQL side is CONFIRMATION below."""
        return not self.withdraws and self.old_label == self.new_label

    @property
    def label_in_effect(self) -> str | None:
        """What this row, as the latest of its scope, puts in effect: its new label, or None for a withdrawal (no fix
        is in effect). The SQL side is label_in_effect() below."""
        return None if self.withdraws else self.new_label


# SQL of ManualFix.is_confirmation over fix rows.
CONFIRMATION = Q(withdraws=False, old_label=F("new_label"))


def label_in_effect(prefix: str = "") -> Case:
    """SQL of ManualFix.label_in_effect over a fix row (`prefix`: the path to it): NULL for a withdrawal."""
    return Case(
        When(Q(**{f"{prefix}withdraws": True}), then=Value(None)),
        default=F(f"{prefix}new_label"),
        output_field=CharField(),
    )


def on_side(sources: Iterable[str]) -> Q:
    """Fix rows that speak for one side of a conflict (ManualFix.STAFF_SIDE, ADVERTISER_SIDE or HUMAN): its fixes of
    those sources, and the withdrawals of those fixes (whoever withdrew them: a staff undo of a portal save takes
    back the advertiser's word, not staff's)."""
    sources = list(sources)
    return Q(withdraws=False, source__in=sources) | Q(withdraws=True, reverts__source__in=sources)


class DatasetExport(TimeStampedModel):
    """A versioned training set for one task, built from the effective human labels (fixes and confirmations).

    Built in the background (progress), then reviewed (likely label mistakes kept or dropped), then frozen: the
    manifest (JSON Lines), the ImageFolder zip and its SHA-256 are written to storage, and nothing changes after.
    """

    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        REVIEW = "review", "Ready: review the likely label mistakes, then freeze"
        FROZEN = "frozen", "Frozen"
        FAILED = "failed", "Failed"

    task = models.CharField(max_length=20, choices=Task.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    params = models.JSONField(default=dict, help_text="since, advertisers, sources, min_side: how it was filtered.")
    extends = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="extensions")
    model_version = models.ForeignKey(
        "classifier.ModelVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The active model when it was built: its crops and out-of-sample predictions.",
    )  # fmt: skip
    counts = models.JSONField(default=dict, blank=True, help_text='{"train": {label: n}, "test": {label: n}}')
    excluded = models.JSONField(default=dict, blank=True, help_text="{reason: n}")
    changed = models.JSONField(default=list, blank=True, help_text="Labels changed since the export it extends.")
    label_issues = models.PositiveIntegerField(default=0)
    manifest = models.FileField(upload_to="exports/", max_length=200, blank=True)
    file = models.FileField(upload_to="exports/", max_length=200, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    frozen_at = models.DateTimeField(null=True, blank=True)
    used_for_training_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="frozen") | (~Q(sha256="") & Q(frozen_at__isnull=False)),
                name="export_frozen_has_file",
            ),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.task}, {self.status})"

    def get_absolute_url(self) -> str:
        return reverse("reviews:staff-export", args=[self.pk])

    @property
    def is_frozen(self) -> bool:
        return self.status == self.Status.FROZEN


class ExportItem(models.Model):
    """One (advertiser, asset) of an export: its label, where it came from, and its split."""

    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        TEST = "test", "Test"

    class Decision(models.TextChoices):
        NONE = "", "Not a likely mistake"
        PENDING = "pending", "Likely mistake: to look at"
        KEEP = "keep", "Kept after a second look"
        DROP = "drop", "Dropped after a second look"

    export = models.ForeignKey(DatasetExport, on_delete=models.CASCADE, related_name="items")
    advertiser = models.ForeignKey(Advertiser, on_delete=models.PROTECT, related_name="+")
    asset = models.ForeignKey(ImageAsset, on_delete=models.PROTECT, related_name="+")
    listing = models.ForeignKey("catalog.Listing", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    fix = models.ForeignKey(ManualFix, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    label = models.CharField(max_length=100)
    source = models.CharField(max_length=20, choices=ManualFix.Source.choices)
    split = models.CharField(max_length=5, choices=Split.choices)
    group = models.CharField(max_length=100, help_text="Listing and near-duplicate cluster: never split.")
    crop_box = models.JSONField(null=True, blank=True)
    model_label = models.CharField(max_length=100, blank=True, help_text="Out-of-sample prediction.")
    self_confidence = models.FloatField(null=True, blank=True, help_text="Out-of-sample probability of the label.")
    decision = models.CharField(max_length=10, choices=Decision.choices, default=Decision.NONE, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["export", "advertiser", "asset"], name="export_item_unique_scope"),
        ]
        indexes = [models.Index(fields=["export", "split", "label"], name="export_item_split_idx")]

    def __str__(self) -> str:
        return f"{self.split}/{self.label}: asset {self.asset_id}"


class ExportExclusion(models.Model):
    """What an export left out and why (counted on the export; listed for a look)."""

    class Reason(models.TextChoices):
        CONFLICT_STAFF = "conflict_advertiser_staff", "An advertiser and staff disagree (not settled)"
        CONFLICT_ADVERTISERS = "conflict_advertisers", "Two advertisers disagree on the same picture (not settled)"
        FAILED = "failed_image", "The image failed or is missing"
        TOO_SMALL = "too_small", "The image is smaller than the minimum side"
        PLACEHOLDER = "placeholder_no_color", "A placeholder has no color (color exports)"
        DROPPED = "dropped", "A likely label mistake, dropped after a second look"

    export = models.ForeignKey(DatasetExport, on_delete=models.CASCADE, related_name="exclusions")
    advertiser = models.ForeignKey(Advertiser, on_delete=models.PROTECT, related_name="+")
    asset = models.ForeignKey(ImageAsset, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    fix = models.ForeignKey(ManualFix, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    label = models.CharField(max_length=100, blank=True)
    reason = models.CharField(max_length=40, choices=Reason.choices)

    def __str__(self) -> str:
        return f"{self.reason}: asset {self.asset_id}"


# Confidence and margin sort ascending with the images that have none first, as this value (scores are within 0..1):
# a sort key is never NULL, so a cursor is one row comparison.
NO_SCORE = -1.0


class EffectiveTag(models.Model):
    """The effective tag of one (placement, task), stored where the database can index it: the grid filters, sorts
    and counts on these rows instead of computing every image's tag per request.

    Written only by reviews.effective_store, from reviews.effective.annotate_effective (the one rule): nothing
    else decides or writes a tag here. Every placement has a row per task, gone or not, tagged or not (no label,
    source unknown or failed), so "not reviewed" and "unknown" are index lookups too. Besides the answer it keeps
    copies of what the grid sorts and filters by (sitemap, listing, position, liveness, picture) and of the inputs
    the cross-image reviews read (the active result's label, confidence, margin and crop; the scrape's color).
    """

    class ListingCheck(models.IntegerChoices):
        CONTRADICTS = 0, "Contradicts its listing's scrape color"
        DISAGREES = 1, "In a listing whose photos disagree on the color"

    placement = models.ForeignKey(
        Placement, on_delete=models.CASCADE, related_name="effective_tags", db_index=False
    )  # the unique (placement, task) serves it
    task = models.CharField(max_length=20, choices=Task.choices)
    sitemap = models.ForeignKey(Sitemap, on_delete=models.CASCADE, related_name="+", db_index=False)
    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="+")  # the listing checks' index
    position = models.PositiveIntegerField()
    # A copy for the grid, without a constraint: checking it when an asset is deleted would scan this table (a row
    # per placement and task) once per asset, and the placement's own row holds the asset in place.
    asset = models.ForeignKey(
        ImageAsset,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    picture = models.BigIntegerField(null=True, blank=True, help_text="The asset's near-duplicate cluster, or itself.")
    live = models.BooleanField(help_text="Neither the placement nor its listing is gone.")
    # NULL, not "": the rule's answers and inputs are None where there is nothing (a placeholder's color, no model
    # result, no scrape color), and the store keeps them exactly as annotate_effective gives them.
    label = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    source = models.CharField(max_length=10)
    model_label = models.CharField(  # noqa: DJ001
        max_length=100, null=True, blank=True, help_text="The active model's label, when it gave one."
    )
    model_confidence = models.FloatField(null=True, blank=True)
    model_margin = models.FloatField(null=True, blank=True)
    # Which model answered (the active model, or the advertiser's scoped head): a copy, without a constraint, so
    # that retiring a model never scans this table.
    model_version = models.ForeignKey(
        "classifier.ModelVersion",
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    crop_source = models.CharField(  # noqa: DJ001
        max_length=20, null=True, blank=True, help_text="What the active model looked at."
    )
    scrape_color = models.CharField(  # noqa: DJ001
        max_length=20, null=True, blank=True, help_text="The scrape's color (color rows)."
    )
    listing_check = models.PositiveSmallIntegerField(
        choices=ListingCheck.choices, null=True, blank=True, help_text="Live photos only (reviews.crosscheck)."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["placement", "task"], name="effective_tag_unique_placement_task"),
        ]
        # The grid reads a sitemap's live images for one task: an index per filter in the grid's order (listing,
        # position, placement), one per other sort, one by placement (the other tasks' tags of a placement) and one
        # by picture (reused pictures, review by cluster). Trailing columns let a count read the index alone:
        # the source (how many are reviewed), the asset (any fix on it), the label (its Lower() is the filter).
        indexes = [
            models.Index(
                fields=["sitemap", "task", "listing", "position", "placement", "source", "asset"],
                condition=Q(live=True),
                name="effective_tag_order_idx",
            ),
            models.Index(
                *(F(name) for name in ("sitemap", "task")),
                Lower("label"),
                *(F(name) for name in ("listing", "position", "placement", "label", "source")),
                condition=Q(live=True),
                name="effective_tag_label_idx",
            ),
            models.Index(
                fields=["sitemap", "task", "source", "listing", "position", "placement"],
                condition=Q(live=True),
                name="effective_tag_source_idx",
            ),
            models.Index(
                F("sitemap"),
                F("task"),
                Coalesce("model_confidence", Value(NO_SCORE)),
                *(F(name) for name in ("placement", "source", "model_confidence")),
                condition=Q(live=True),
                name="effective_tag_confidence_idx",
            ),
            models.Index(
                F("sitemap"),
                F("task"),
                Coalesce("model_margin", Value(NO_SCORE)),
                *(F(name) for name in ("placement", "source", "model_margin")),
                condition=Q(live=True),
                name="effective_tag_margin_idx",
            ),
            models.Index(
                fields=["sitemap", "task", "placement", "label"],
                condition=Q(live=True),
                name="effective_tag_placement_idx",
            ),
            models.Index(
                fields=["sitemap", "task", "listing_check", "listing", "position", "placement", "source"],
                condition=Q(live=True, listing_check__isnull=False),
                name="effective_tag_check_idx",
            ),
            models.Index(
                fields=["sitemap", "task", "picture"], condition=Q(live=True), name="effective_tag_picture_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task} of placement {self.placement_id}: {self.label or '-'} ({self.source})"
