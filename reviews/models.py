"""Manual fixes: the history of every correction, append-only. The latest fix in its scope wins.

A fix is scoped to (advertiser, asset, task): keyed by image content, so it stays when the CDN renames the
file, and per advertiser, so two advertisers sharing a CDN never overwrite each other.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models

from catalog.models import Advertiser, ImageAsset, Task


class AppendOnly(Exception):
    """Manual fixes are history: they are never updated or deleted."""


class ManualFixQuerySet(models.QuerySet["ManualFix"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnly("manual fixes are append-only: record a new fix instead")

    def delete(self) -> NoReturn:
        raise AppendOnly("manual fixes are append-only: revert with a new fix instead")


class ManualFix(models.Model):
    class Source(models.TextChoices):
        STAFF = "staff", "Staff screen"
        ADVERTISER = "advertiser", "Advertiser portal"
        API = "api", "API"
        CARRIED = "carried", "Carried forward from a re-encoded copy"

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
    # A carried fix points at the fix it was carried from; a revert at the fix it undoes.
    origin = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="carried")
    reverts = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="reverted_by")
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
