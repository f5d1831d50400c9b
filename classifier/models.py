"""The model registry and the result cache.

A ModelVersion is an ONNX file and its contract (classifier/contract.py). A classifier has one or more
heads, each tagging one task; at most one head is active per task, and at most one detector is active.
Classification is the cache of results: an asset is classified once per model version and task.
Detection caches the vehicle box of an asset per detector version, so a new classifier reuses it.
"""

from __future__ import annotations

from django.conf import settings
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
    # A candidate trained here: the model it was refitted from, the dataset export (reviews.DatasetExport id:
    # classifier never imports reviews), the job and the settings it was trained with.
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")
    export_id = models.PositiveIntegerField(null=True, blank=True, help_text="The dataset export it was trained on.")
    training_job = models.ForeignKey(
        "TrainingJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="candidates"
    )
    params = models.JSONField(default=dict, blank=True, help_text="The training settings of a candidate.")
    # A head trained for one advertiser (the global head as its prior): it never becomes the active model of its task;
    # promoted, it serves that advertiser's placements only (ScopedHead).
    advertiser = models.ForeignKey(
        "catalog.Advertiser", on_delete=models.CASCADE, null=True, blank=True, related_name="scoped_models"
    )

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


class DetectionQuerySet(models.QuerySet["Detection"]):
    def of_active_detector(self) -> DetectionQuerySet:
        """The boxes of the active detector: the ones that say which vehicle, and which kind, an image shows."""
        return self.filter(
            model_version__kind=ModelVersion.Kind.DETECTOR, model_version__status=ModelVersion.Status.ACTIVE
        )


class Detection(TimeStampedModel):
    """The biggest vehicle of an asset per detector version (None when there is none): cached like any result."""

    asset = models.ForeignKey(ImageAsset, on_delete=models.CASCADE, related_name="detections")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="detections")
    box = models.JSONField(null=True, blank=True, help_text="[x0, y0, x1, y1] in original image pixels, or null.")
    kind = models.CharField(
        max_length=20,
        blank=True,
        help_text="The kind of vehicle in the box, by the detector's contract (classifier.contract.VEHICLE_KINDS); "
        "empty when its classes do not say.",
    )

    objects = DetectionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["asset", "model_version"], name="detection_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.asset_id}: {self.box}"


class OcclusionMap(TimeStampedModel):
    """Where the model looks for one label of one asset: a grey patch slid over the crop the model saw, and
    the drop of the label's probability at each position (grid), drawn as a heatmap for overlay. Computed on
    demand by a Celery task, cached per (asset, model version, task, label)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    asset = models.ForeignKey(ImageAsset, on_delete=models.CASCADE, related_name="occlusion_maps")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="occlusion_maps")
    task = models.CharField(max_length=20, choices=Task.choices)
    label = models.CharField(max_length=100, help_text="The label whose score the map explains.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="Share of the patch positions scored, 0 to 1.")
    error = models.TextField(blank=True)
    grid = models.JSONField(null=True, blank=True, help_text="Score drops per patch position, with the geometry.")
    heatmap = models.FileField(upload_to="occlusion/", max_length=200, blank=True)
    crop_box = models.JSONField(null=True, blank=True, help_text="[x0, y0, x1, y1] in original pixels, or null.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["asset", "model_version", "task", "label"], name="occlusion_map_unique_key"
            ),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="occlusion_map_progress"),
        ]

    def __str__(self) -> str:
        return f"occlusion {self.task}={self.label} of asset {self.asset_id}: {self.status}"


class Job(TimeStampedModel):
    """A long background job with progress: queued, running, then succeeded or failed (with the error)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    stage = models.CharField(max_length=200, blank=True, help_text="What the job is doing now.")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class TrainingJob(Job):
    """Candidates trained from one dataset export on the `training` queue. The candidates are registered in one
    transaction at the end, so a worker killed mid-training leaves a job to fail or resume, never half a model."""

    task = models.CharField(max_length=20, choices=Task.choices)
    parent = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="training_jobs")
    advertiser = models.ForeignKey(
        "catalog.Advertiser",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Train a head for this advertiser only, on its reviewed labels, with the parent's head as its prior.",
    )
    export_id = models.PositiveIntegerField(help_text="reviews.DatasetExport id.")
    manifest = models.JSONField(default=dict, help_text="What training reads: items, labels, splits, retained rows.")
    candidates_wanted = models.PositiveSmallIntegerField(default=4)
    result = models.JSONField(default=dict, blank=True, help_text="Baseline and candidates on the test split.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["export_id"],
                condition=Q(status__in=["queued", "running"]),
                name="training_one_active_per_export",
            ),
        ]

    def __str__(self) -> str:
        return f"training {self.task} from export {self.export_id}: {self.status}"


class ShadowPass(Job):
    """A candidate classifies every live asset of its tasks in the background (its own Classification rows), so
    that its flips can be shown before promotion, and promotion is instant."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="shadow_passes")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "shadow passes"
        constraints = [
            models.UniqueConstraint(
                fields=["model_version"], condition=Q(status__in=["queued", "running"]), name="shadow_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"shadow pass of {self.model_version_id}: {self.done}/{self.total} {self.status}"


class FeatureVector(models.Model):
    """The penultimate features of an asset under a model version (the input of its heads' last layer), cached
    once per asset so refitting a head on thousands of images costs seconds."""

    asset = models.ForeignKey(ImageAsset, on_delete=models.CASCADE, related_name="feature_vectors")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="feature_vectors")
    tensor = models.CharField(max_length=200, help_text="The graph tensor the features were read from.")
    data = models.BinaryField(help_text="float32 little-endian vector.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["asset", "model_version", "tensor"], name="feature_vector_unique_key"),
        ]

    def __str__(self) -> str:
        return f"features of {self.asset_id} under {self.model_version_id}"


class Novelty(TimeStampedModel):
    """How unlike the model's reference an asset was when a Run brought it in (classifier.services.drift): the mean
    cosine distance of its features to its nearest reference images, and that over the reference's threshold. The
    review queue asks about the most unfamiliar first (ratio above 1)."""

    asset = models.ForeignKey(ImageAsset, on_delete=models.CASCADE, related_name="novelties")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(help_text="Mean cosine distance to the k nearest reference images.")
    ratio = models.FloatField(help_text="Score over the reference's threshold: above 1, unfamiliar.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["asset", "model_version"], name="novelty_unique_key"),
        ]

    def __str__(self) -> str:
        return f"novelty of {self.asset_id} under {self.model_version_id}: {self.ratio:.2f}"


class Promotion(models.Model):
    """Who made which version the active one for a task, and when (a rollback is a promotion back)."""

    class Kind(models.TextChoices):
        PROMOTE = "promote", "Promotion"
        ROLLBACK = "rollback", "Rollback"

    task = models.CharField(max_length=20, choices=Task.choices)
    advertiser = models.ForeignKey(
        "catalog.Advertiser",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="A scoped head's promotion or rollback: the advertiser it serves. Empty: the global model.",
    )
    from_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    to_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="promotions")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PROMOTE)
    batch = models.UUIDField(
        null=True,
        blank=True,
        editable=False,
        db_index=True,
        help_text=(
            "One promotion (or rollback) of several tasks at once: its records share this id, and a rollback undoes "
            "exactly those. Empty on records made before it existed (then the versions tell)."
        ),
    )
    forced = models.BooleanField(default=False, help_text="Promoted before its shadow pass finished.")
    overrode_regressions = models.JSONField(
        null=True,
        blank=True,
        help_text="Promoted over likely regressions, accepted explicitly: who, and each advertiser with its figures.",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The watch after it ships (reviews.services.watch): the latest comparison with the model it replaced, on the
    # human labels given since, and its health flags (`promotion_regressed`).
    watch = models.JSONField(default=dict, blank=True)
    regressed_at = models.DateTimeField(null=True, blank=True, help_text="When the watch found it clearly worse.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.task}: {self.from_version_id} -> {self.to_version_id}"


class ScopedHead(models.Model):
    """The head that answers a task for one advertiser's placements instead of the active model's (DESIGN.md: where
    one global head cannot serve a drifted advertiser without costing others).

    A row exists while the scoped head serves; promotion writes it and rollback deletes it, both recorded as a
    Promotion with the advertiser. Its results are Classification rows of its own version, like any model's, so a
    picture two advertisers share keeps each advertiser's own answer; where it has no result yet for an asset, the
    active model's answers (classifier.services.scoped)."""

    advertiser = models.ForeignKey("catalog.Advertiser", on_delete=models.CASCADE, related_name="scoped_heads")
    task = models.CharField(max_length=20, choices=Task.choices)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="scoped_heads")
    activated_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["advertiser_id", "task"]
        constraints = [
            models.UniqueConstraint(fields=["advertiser", "task"], name="scoped_head_one_per_advertiser_task"),
        ]

    def __str__(self) -> str:
        return f"{self.task} of advertiser {self.advertiser_id} <- {self.model_version_id}"
