"""Occlusion maps on demand: "why did the model call this Placeholder?" for any model registered by contract.

`occlusion_request` validates and queues (or returns the cached map); `occlusion_compute` runs in a Celery
worker on the inference queue, with the same session, crop and preprocessing as production.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from catalog.models import ImageAsset, Placement, Task
from classifier.contract import ClassifierContract, HeadSpec, parse_contract
from classifier.models import Classification, ModelHead, OcclusionMap
from classifier.occlusion import heatmap_png, occlusion_map, spread_to_pixels
from classifier.preprocess import Decoded, batch, decode, letterbox_geometry, resized_pixels, to_tensor
from classifier.runtime import ClassifierModel
from classifier.services.inference import _session_for
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

# A queued or running map not heard from for this long lost its worker message: a new request re-queues it.
STALE_AFTER = timedelta(minutes=10)
# The patch covers 1/8 of the model input's shorter side and moves by half a patch: 15x15 positions at 224,
# ~0.8 s for a MobileNetV3-small on one core.
PATCH_FRACTION = 8
# The heatmap is stretched over the picture by the browser: more pixels than this add bytes, not detail.
MAX_HEATMAP_SIDE = 1024


class OcclusionError(ApplicationError):
    """An occlusion map cannot be made for this image; the message says why, for the person who asked."""

    code = "occlusion_refused"


def _head_spec(contract: ClassifierContract, task: str) -> HeadSpec:
    return next(head for head in contract.heads if head.task == task)


def _active_head(task: str) -> ModelHead:
    if task not in Task.values:
        raise OcclusionError(f"unknown task {task!r}: tasks are {', '.join(Task.values)}")
    head = ModelHead.objects.filter(task=task, is_active=True).select_related("model_version").first()
    if head is None:
        raise OcclusionError(f"no active model tags {task}: there is nothing to explain")
    return head


def occlusion_request_for_placement(*, placement: Placement, task: str, label: str | None = None) -> OcclusionMap:
    """`occlusion_request` for the picture of a placement; a placement without one (its download failed, or it
    was not fetched yet) gets an OcclusionError that says so."""
    if placement.asset is None:
        if placement.status == Placement.Status.FAILED:
            reason = " ".join(part for part in (placement.failure_reason, placement.failure_detail) if part)
            raise OcclusionError(f"this image failed to download ({reason or 'no reason recorded'}): no picture")
        raise OcclusionError("this image has not been downloaded yet: there is no picture to explain")
    return occlusion_request(asset=placement.asset, task=task, label=label)


def occlusion_request(*, asset: ImageAsset | None, task: str, label: str | None = None) -> OcclusionMap:
    """The occlusion map of `label` (default: the model's own label for this asset) by the active model of
    `task`: the cached map when one is done, else a queued map whose computation is enqueued after commit.

    Raises OcclusionError when there is no picture, no active model for the task, the model failed on this
    image (or has not classified it, when the label or the crop depends on its answer), or `label` is not
    one of the head's labels. A failed or stale map is queued again.
    """
    if asset is None:
        raise OcclusionError("this image has no downloaded picture: there is nothing to explain")
    head = _active_head(task)
    version = head.model_version
    contract = parse_contract(version.contract)
    assert isinstance(contract, ClassifierContract)  # noqa: S101 - heads belong to classifiers only
    classification = Classification.objects.filter(asset=asset, model_version=version, task=task).first()
    if classification is not None and classification.status == Classification.Status.FAILED:
        raise OcclusionError(
            f"the {task} model {version.name} failed on this image ({classification.error or 'no reason recorded'}):"
            " there is no answer to explain"
        )
    if classification is None and (label is None or contract.crop == "vehicle"):
        raise OcclusionError(f"the active {task} model {version.name} has not classified this image yet")
    if label is None:
        assert classification is not None  # noqa: S101 - checked just above
        label = classification.label
    labels = _head_spec(contract, task).labels
    if label not in labels:
        raise OcclusionError(f"{label!r} is not a label of {version.name} for {task}: {', '.join(labels)}")
    crop_box = classification.crop_box if classification is not None and contract.crop == "vehicle" else None

    from classifier.tasks import occlusion_map_task

    with transaction.atomic():
        row, created = OcclusionMap.objects.select_for_update().get_or_create(
            asset=asset, model_version=version, task=task, label=label, defaults={"crop_box": crop_box}
        )
        if row.status == OcclusionMap.Status.DONE:
            return row
        pending = row.status in (OcclusionMap.Status.QUEUED, OcclusionMap.Status.RUNNING)
        if not created and pending and row.updated_at > timezone.now() - STALE_AFTER:
            return row  # already on its way
        if not created:
            row.status, row.progress, row.error, row.grid, row.crop_box = (
                OcclusionMap.Status.QUEUED, 0.0, "", None, crop_box,
            )  # fmt: skip
            row.save(update_fields=["status", "progress", "error", "grid", "crop_box", "updated_at"])
        occlusion_map_task.delay_on_commit(row.pk)  # type: ignore[attr-defined]  # not in celery-types yet
    return row


def _to_decoded(box: list[int], image: Decoded) -> tuple[int, int, int, int]:
    """A crop box in original pixels mapped to the decoded image (JPEG draft scaling), as production does."""
    width, height = image.image.size
    x0, y0, x1, y1 = (round(value * image.scale) for value in box)
    return (max(0, x0), max(0, y0), min(width, x1), min(height, y1))


def _heatmap_size(width: int, height: int) -> tuple[int, int]:
    shrink = min(1.0, MAX_HEATMAP_SIDE / max(width, height))
    return (max(1, round(width * shrink)), max(1, round(height * shrink)))


def _one_line(error: Exception, limit: int = 500) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def occlusion_compute(*, map_id: int) -> OcclusionMap | None:
    """Computes a queued occlusion map: the original from storage, the production crop and preprocessing, the
    model's session of this process; progress saved after every batch; heatmap PNG and grid stored. A done map
    is left alone (idempotent), a deleted one ignored; any failure is recorded on the map, never raised."""
    row = OcclusionMap.objects.select_related("asset", "model_version").filter(pk=map_id).first()
    if row is None or row.status == OcclusionMap.Status.DONE:
        return row
    OcclusionMap.objects.filter(pk=row.pk).update(status=OcclusionMap.Status.RUNNING, progress=0.0, error="",
                                                  updated_at=timezone.now())  # fmt: skip
    try:
        grid, png = _compute(row)
    except Exception as exc:
        logger.warning("occlusion map %s failed", row.pk, exc_info=True)
        OcclusionMap.objects.filter(pk=row.pk).update(
            status=OcclusionMap.Status.FAILED, error=_one_line(exc), updated_at=timezone.now()
        )
        row.refresh_from_db()
        return row
    if row.heatmap:
        row.heatmap.delete(save=False)
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", row.label)[:40]
    name = f"{row.asset.sha256[:2]}/{row.asset.sha256}-{row.model_version_id}-{row.task}-{slug}.png"
    row.heatmap.save(name, ContentFile(png), save=False)
    row.grid, row.status, row.progress, row.error = grid, OcclusionMap.Status.DONE, 1.0, ""
    row.save(update_fields=["heatmap", "grid", "status", "progress", "error", "updated_at"])
    return row


def _compute(row: OcclusionMap) -> tuple[dict[str, object], bytes]:
    version = row.model_version
    contract = parse_contract(version.contract)
    assert isinstance(contract, ClassifierContract)  # noqa: S101
    spec = contract.input
    head = _head_spec(contract, row.task)
    label_index = head.labels.index(row.label)
    model = ClassifierModel(_session_for(version), contract)
    with row.asset.original.open("rb") as handle:
        data = handle.read()
    decoded = decode(data, min_size=spec.size)
    box = _to_decoded(row.crop_box, decoded) if row.crop_box else None
    seen = resized_pixels(decoded.image, spec, box)  # (H, W, 3) uint8: what the model sees

    def score(images: np.ndarray) -> np.ndarray:
        results = model.run(batch([to_tensor(image, spec) for image in images]))[row.task]
        return np.array([[result.scores[label] for label in head.labels] for result in results])

    def progress(done: int, total: int) -> None:
        OcclusionMap.objects.filter(pk=row.pk).update(progress=round(done / total, 4), updated_at=timezone.now())

    patch = max(1, min(spec.width, spec.height) // PATCH_FRACTION)
    stride = max(1, patch // 2)
    baseline = float(score(seen[None])[0, label_index])
    grid = occlusion_map(score, seen, label_index=label_index, patch=patch, stride=stride, progress=progress)

    pixels = spread_to_pixels(grid, shape=(spec.height, spec.width), patch=patch, stride=stride)
    x0, y0, x1, y1 = box if box is not None else (0, 0, decoded.image.width, decoded.image.height)
    if spec.resize == "letterbox":  # only the picture, not the padding, lies under the overlay
        _, pad_x, pad_y, scaled_w, scaled_h = letterbox_geometry((x1 - x0, y1 - y0), spec.size)
        pixels = pixels[pad_y : pad_y + scaled_h, pad_x : pad_x + scaled_w]
    original_box = list(decoded.to_original((x0, y0, x1, y1)))
    crop_size = (original_box[2] - original_box[0], original_box[3] - original_box[1])
    png = heatmap_png(pixels, _heatmap_size(*crop_size))
    facts: dict[str, object] = {
        "drops": np.round(grid, 5).tolist(),
        "patch": patch,
        "stride": stride,
        "input_size": [spec.width, spec.height],
        "baseline": round(baseline, 5),
        "max_drop": round(float(grid.max()), 5),
        "image_size": list(decoded.original_size),
        "crop": original_box,  # the box shown under the heatmap, in original pixels (the whole image if no crop)
    }
    return facts, png
