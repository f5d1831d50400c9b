"""Manual fixes: the history of every correction, append-only. The latest fix in its scope wins.

A fix is scoped to (advertiser, asset, task): keyed by image content, so it stays when the CDN renames the
file, and per advertiser, so two advertisers sharing a CDN never overwrite each other.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from catalog.models import Advertiser, ImageAsset, Task, TimeStampedModel


class AppendOnly(Exception):
    """Manual fixes are history: they are never updated or deleted."""


class ManualFixQuerySet(models.QuerySet["ManualFix"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnly("manual fixes are append-only: record a new fix instead")

    def delete(self) -> NoReturn:
        raise AppendOnly("manual fixes are append-only: revert with a new fix instead")


class ChangeSet(models.Model):
    """One reviewer action that wrote fixes: a save of the grid, a bulk retag, a queue decision, or the undo of an
    earlier change set. Undoing writes new fixes back (history stays append-only) in a change set of its own."""

    class Kind(models.TextChoices):
        SAVE = "save", "Save"
        BULK = "bulk", "Bulk retag"
        DECISION = "decision", "Review decision"
        UNDO = "undo", "Undo"

    kind = models.CharField(max_length=10, choices=Kind.choices)
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
    class Source(models.TextChoices):
        STAFF = "staff", "Staff screen"
        ADVERTISER = "advertiser", "Advertiser portal"
        API = "api", "API"
        CARRIED = "carried", "Carried forward from a re-encoded copy"

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
    new_label = models.CharField(max_length=100)
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
    # A carried fix points at the fix it was carried from; a revert at the fix it undoes.
    origin = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="carried")
    reverts = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="reverted_by")
    change_set = models.ForeignKey(ChangeSet, on_delete=models.PROTECT, null=True, blank=True, related_name="fix_rows")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = ManualFixQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["advertiser", "asset", "task", "-created_at", "-id"], name="fix_scope_latest_idx"),
            models.Index(fields=["asset", "task"], name="fix_asset_task_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=~models.Q(new_label=""), name="fix_has_new_label"),
            models.CheckConstraint(
                condition=~models.Q(source="carried") | models.Q(origin__isnull=False), name="fix_carried_has_origin"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task}: {self.old_label or '-'} -> {self.new_label} ({self.source})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnly("manual fixes are append-only: record a new fix instead")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnly("manual fixes are append-only: revert with a new fix instead")

    @property
    def is_confirmation(self) -> bool:
        """A fix to the label already in effect: a human looked and agreed."""
        return self.old_label == self.new_label


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
