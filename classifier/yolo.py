"""Decode a YOLOv8 ONNX output and pick the vehicle crop.

The output is `[1, 4 + C, N]`: for each of N candidates, cx, cy, w, h in detector-input pixels, then C class
scores already passed through a sigmoid (as Ultralytics exports them). Decoding follows Ultralytics'
`non_max_suppression`: each candidate takes its best class, is kept above the confidence threshold and if
that class is wanted, then greedy NMS runs per class (OpenCV's).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from classifier.preprocess import letterbox_geometry

MAX_CANDIDATES = 30000  # Ultralytics' max_nms: bounds the NMS work on a pathological output
MAX_DETECTIONS = 300


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    class_id: int

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, class_ids: np.ndarray | None = None) -> np.ndarray:
    """Greedy NMS per class (OpenCV's cv2.dnn.NMSBoxesBatched): indices of the kept boxes (x0, y0, x1, y1 rows),
    best score first. A box is dropped when its IoU with a better kept box of its class is above `iou`."""
    if not len(scores):
        return np.empty(0, dtype=np.intp)
    x0, y0, x1, y1 = np.asarray(boxes, dtype=np.float64).T
    rectangles = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    classes = np.zeros(len(scores), dtype=np.int32) if class_ids is None else np.asarray(class_ids, dtype=np.int32)
    floor = float(np.min(scores)) - 1.0  # the scores were filtered already: keep them all
    kept = cv2.dnn.NMSBoxesBatched(
        rectangles.tolist(), np.asarray(scores, dtype=np.float64).tolist(), classes.tolist(), floor, float(iou)
    )
    return np.asarray(kept, dtype=np.intp).reshape(-1)


def decode_yolov8(
    output: np.ndarray,
    *,
    confidence: float,
    iou: float,
    classes: Iterable[int] | None = None,
    max_detections: int = MAX_DETECTIONS,
) -> list[Box]:
    """Boxes in model-input pixels, filtered by score and class, per-class NMS, sorted by score (best first)."""
    predictions = np.asarray(output, dtype=np.float32)
    if predictions.ndim == 3:
        if predictions.shape[0] != 1:
            raise ValueError(f"yolov8 output must have a batch of 1, got shape {list(predictions.shape)}")
        predictions = predictions[0]
    if predictions.ndim != 2 or predictions.shape[0] < 5:
        raise ValueError(f"yolov8 output must be [1, 4+classes, boxes], got shape {list(np.shape(output))}")
    predictions = predictions.T  # (N, 4 + C)
    class_scores = predictions[:, 4:]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(class_ids)), class_ids]
    wanted = scores > confidence
    if classes is not None:
        wanted &= np.isin(class_ids, np.fromiter(classes, dtype=np.intp))
    predictions, class_ids, scores = predictions[wanted], class_ids[wanted], scores[wanted]
    if len(scores) > MAX_CANDIDATES:
        top = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
        predictions, class_ids, scores = predictions[top], class_ids[top], scores[top]
    if not len(scores):
        return []
    cx, cy, w, h = predictions[:, 0], predictions[:, 1], predictions[:, 2], predictions[:, 3]
    corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kept = nms(corners, scores, iou, class_ids)[:max_detections]
    return [
        Box(
            x0=float(corners[i, 0]),
            y0=float(corners[i, 1]),
            x1=float(corners[i, 2]),
            y1=float(corners[i, 3]),
            score=float(scores[i]),
            class_id=int(class_ids[i]),
        )
        for i in kept
    ]


def to_image_coords(
    boxes: Iterable[Box],
    *,
    input_size: tuple[int, int],
    image_size: tuple[int, int],
    resize: Literal["stretch", "letterbox"],
) -> list[Box]:
    """Map boxes from model-input pixels (input_size is (h, w)) to image pixels (image_size is (w, h)), clamped."""
    input_h, input_w = input_size
    image_w, image_h = image_size
    if resize == "letterbox":
        # The per-axis ratio of the rounded scaled size, exactly what to_tensor pasted on the canvas.
        _, pad_x, pad_y, scaled_w, scaled_h = letterbox_geometry((image_w, image_h), (input_w, input_h))
        scale_x, scale_y = image_w / scaled_w, image_h / scaled_h
        shift_x, shift_y = float(pad_x), float(pad_y)
    elif resize == "stretch":
        scale_x, scale_y = image_w / input_w, image_h / input_h
        shift_x = shift_y = 0.0
    else:
        raise ValueError(f"unknown resize mode {resize!r}")

    def clamp(value: float, top: int) -> float:
        return min(max(value, 0.0), float(top))

    return [
        Box(
            x0=clamp((box.x0 - shift_x) * scale_x, image_w),
            y0=clamp((box.y0 - shift_y) * scale_y, image_h),
            x1=clamp((box.x1 - shift_x) * scale_x, image_w),
            y1=clamp((box.y1 - shift_y) * scale_y, image_h),
            score=box.score,
            class_id=box.class_id,
        )
        for box in boxes
    ]


def biggest(boxes: Iterable[Box]) -> Box | None:
    """The box the crop is made of: the biggest (ties: the higher score), or None with no usable box."""
    candidates = [box for box in boxes if box.area > 0]
    return max(candidates, key=lambda box: (box.area, box.score)) if candidates else None


def vehicle_crop(
    boxes: Iterable[Box], *, image_size: tuple[int, int], margin: float
) -> tuple[int, int, int, int] | None:
    """The biggest box (ties: the higher score), grown by `margin` x its width/height on each side, clamped.

    Returns integer (x0, y0, x1, y1) in image pixels (floor/ceil outwards), or None with no usable box.
    """
    return grown(biggest(boxes), image_size=image_size, margin=margin)


def grown(best: Box | None, *, image_size: tuple[int, int], margin: float) -> tuple[int, int, int, int] | None:
    """The box grown by `margin` x its width/height on each side and clamped to the image, in whole pixels (floor/ceil
    outwards); None for no box or an empty one."""
    if best is None:
        return None
    image_w, image_h = image_size
    grow_x, grow_y = margin * best.width, margin * best.height
    x0 = max(0, math.floor(best.x0 - grow_x))
    y0 = max(0, math.floor(best.y0 - grow_y))
    x1 = min(image_w, math.ceil(best.x1 + grow_x))
    y1 = min(image_h, math.ceil(best.y1 + grow_y))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)
