"""The model registry and the result cache.

A ModelVersion is an ONNX file and its contract (classifier/contract.py). A classifier has one or more
heads, each tagging one task; at most one head is active per task, and at most one detector is active.
Classification is the cache of results: an asset is classified once per model version and task.
Detection caches the vehicle box of an asset per detector version, so a new classifier reuses it.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from catalog.models import ImageAsset, Task, TimeStampedModel


class ModelVersion(TimeStampedModel):
    class Kind(models.TextChoices):
        CLASSIFIER = "classifier", "Classifier"
        DETECTOR = "detector", "Vehicle detector"

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    file = models.FileField(upload_to="models/", max_length=200)
    sha256 = models.CharField(max_length=64, unique=True)
    contract = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CANDIDATE)
    metrics = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind"], condition=Q(kind="detector", status="active"), name="model_one_active_detector"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:8]}, {self.status})"


class ModelHead(models.Model):
    """One output of a classifier that tags one task."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="heads")
    task = models.CharField(max_length=20, choices=Task.choices)
    output = models.CharField(max_length=200)
    labels = models.JSONField()
    is_active = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_version", "task"], name="head_one_per_task_per_model"),
            models.UniqueConstraint(fields=["task"], condition=Q(is_active=True), name="head_one_active_per_task"),
        ]

    def __str__(self) -> str:
        return f"{self.task} <- {self.model_version.name}:{self.output}"


class Classification(TimeStampedModel):
    """The model's answer for (asset, model version, task), or why there is none."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        FAILED = "failed", "Failed"

    class CropSource(models.TextChoices):
        DETECTOR = "detector", "Biggest vehicle found by the detector"
        NO_VEHICLE = "no_vehicle", "No vehicle found: whole image"
        NO_DETECTOR = "no_detector", "No detector active: whole image"
        NONE = "none", "Whole image (model runs uncropped)"

    asset = models.ForeignKey(ImageAsset, on_delete=models.CASCADE, related_name="classifications")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="classifications")
    task = models.CharField(max_length=20, choices=Task.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OK)
    label = models.CharField(max_length=100, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    margin = models.FloatField(null=True, blank=True, help_text="Top-1 minus top-2 probability.")
    scores = models.JSONField(default=dict, blank=True)
    crop_box = models.JSONField(null=True, blank=True, help_text="[x0, y0, x1, y1] in original image pixels.")
    crop_source = models.CharField(max_length=20, choices=CropSource.choices, default=CropSource.NONE)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["asset", "model_version", "task"], name="classification_unique_key"),
            models.CheckConstraint(
                condition=Q(status="failed") | (~Q(label="") & Q(confidence__isnull=False)),
                name="classification_ok_has_label",
            ),
        ]
        indexes = [models.Index(fields=["task", "label"], name="classification_task_label_idx")]

    def __str__(self) -> str:
        if self.status == self.Status.FAILED:
            return f"{self.task}: failed ({self.error[:40]})"
        return f"{self.task}: {self.label} ({self.confidence:.2f})"


class Detection(TimeStampedModel):
    """The biggest vehicle of an asset per detector version (None when there is none): cached like any result."""

    asset = models.ForeignKey(ImageAsset, on_delete=models.CASCADE, related_name="detections")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="detections")
    box = models.JSONField(null=True, blank=True, help_text="[x0, y0, x1, y1] in original image pixels, or null.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["asset", "model_version"], name="detection_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.asset_id}: {self.box}"
