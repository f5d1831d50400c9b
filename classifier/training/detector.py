"""A tiny anchor-free vehicle detector whose ONNX output is in the YOLOv8 format, with its loss.

Finding the biggest vehicle in a listing photo needs neither 640 pixels nor 80 classes (DESIGN.md: a
YOLOv8n at 640 costs 110-160 ms and dominates the per-image cost). This network takes a 192x192 letterbox,
reduces it to a stride-16 grid (12x12 = 144 candidates) with a few plain conv layers and dilated 3x3 convs
for a receptive field as big as the image, and predicts per cell the distances to the four box edges
(sigmoid x input size) and one sigmoid score per vehicle kind (``CLASSES``: car, van, truck, bus, motorcycle,
named as a COCO detector names them, so the contract maps them onto ``VEHICLE_KINDS`` by name).

The forward pass returns the decoded YOLOv8 tensor ``[N, 4 + classes, 144]`` (cx, cy, w, h in input pixels, then
the scores), exactly what ``classifier.yolo.decode_yolov8`` reads; ``raw`` returns what the loss needs.
Targets: centre sampling (a cell is positive for a box when its centre is inside the box and within
``CENTER_RADIUS`` cells, or a quarter of the box size, of the box centre); a cell claimed by several boxes
goes to the biggest one, the box the crop step wants. Loss: BCE on the scores (a positive cell's target is its box's
class), GIoU + L1 on positive boxes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from classifier.contract import KIND_OF_CLASS

INPUT_SIZE = 192
CLASSES = ("car", "van", "truck", "bus", "motorcycle")
CLASS_OF_KIND = {KIND_OF_CLASS[name]: index for index, name in enumerate(CLASSES)}  # "van_suv" -> 1
STRIDE = 16
GRID = INPUT_SIZE // STRIDE
CENTER_RADIUS = 1.5  # cells


def _conv(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.SiLU(),
    )


class TinyDetector(nn.Module):
    centres: torch.Tensor

    def __init__(self, classes: int = 1, width: int = 64) -> None:
        super().__init__()
        self.classes = classes
        self.body = nn.Sequential(
            _conv(3, 16, 2),  # 96
            _conv(16, 24, 2),  # 48
            _conv(24, 24),
            _conv(24, 32, 2),  # 24
            _conv(32, 32),
            _conv(32, 48, 2),  # 12 (stride 16)
            _conv(48, width),
            _conv(width, width, dilation=2),
            _conv(width, width, dilation=4),
        )
        self.head = nn.Conv2d(width, 4 + classes, 1)
        with torch.no_grad():  # start with low scores: most cells are background
            self.head.bias[4:] = -4.0  # type: ignore[index]
        ys, xs = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
        centres = torch.stack([xs.flatten(), ys.flatten()], 0).float().add(0.5).mul(STRIDE)
        self.register_buffer("centres", centres)  # (2, GRID*GRID): x, y of each cell centre

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(edge distances (N, 4, A) in input pixels: left, top, right, bottom; score logits (N, C, A))."""
        out = self.head(self.body(x)).flatten(2)
        distances = torch.sigmoid(out[:, :4]) * INPUT_SIZE
        return distances, out[:, 4:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distances, logits = self.raw(x)
        cx = self.centres[0] + (distances[:, 2] - distances[:, 0]) / 2
        cy = self.centres[1] + (distances[:, 3] - distances[:, 1]) / 2
        w = distances[:, 0] + distances[:, 2]
        h = distances[:, 1] + distances[:, 3]
        return torch.cat([torch.stack([cx, cy, w, h], 1), torch.sigmoid(logits)], 1)


def assign_targets(
    boxes: list[torch.Tensor], centres: torch.Tensor, classes: list[torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image, the (x0, y0, x1, y1) box each cell must predict, a positive mask and the box's class.

    ``boxes``: per image a (K, 4) tensor in input pixels; ``classes``: per image the (K,) class of each box (default
    0). Returns targets (N, A, 4), positives (N, A) and target classes (N, A).
    """
    cells = centres.shape[1]
    targets = torch.zeros(len(boxes), cells, 4)
    positives = torch.zeros(len(boxes), cells, dtype=torch.bool)
    target_classes = torch.zeros(len(boxes), cells, dtype=torch.long)
    cx, cy = centres[0], centres[1]
    for i, image_boxes in enumerate(boxes):
        best_area = torch.zeros(cells)
        image_classes = classes[i].tolist() if classes is not None else [0] * len(image_boxes)
        for box, box_class in zip(image_boxes, image_classes, strict=True):
            x0, y0, x1, y1 = box.tolist()
            area = (x1 - x0) * (y1 - y0)
            if area <= 0:
                continue
            bx, by = (x0 + x1) / 2, (y0 + y1) / 2
            rx = max(CENTER_RADIUS * STRIDE, (x1 - x0) / 4)
            ry = max(CENTER_RADIUS * STRIDE, (y1 - y0) / 4)
            inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
            central = ((cx - bx).abs() <= rx) & ((cy - by).abs() <= ry)
            mask = inside & central
            if not mask.any():  # a box smaller than a cell: take the nearest cell
                mask = torch.zeros(cells, dtype=torch.bool)
                mask[((cx - bx) ** 2 + (cy - by) ** 2).argmin()] = True
            mask &= area > best_area
            targets[i, mask] = box.float()
            positives[i, mask] = True
            target_classes[i, mask] = int(box_class)
            best_area[mask] = area
    return targets, positives, target_classes


def _giou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    ix0, iy0 = torch.max(pred[:, 0], target[:, 0]), torch.max(pred[:, 1], target[:, 1])
    ix1, iy1 = torch.min(pred[:, 2], target[:, 2]), torch.min(pred[:, 3], target[:, 3])
    inter = (ix1 - ix0).clamp(min=0) * (iy1 - iy0).clamp(min=0)
    area_p = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = area_p + area_t - inter + 1e-6
    iou = inter / union
    ex0, ey0 = torch.min(pred[:, 0], target[:, 0]), torch.min(pred[:, 1], target[:, 1])
    ex1, ey1 = torch.max(pred[:, 2], target[:, 2]), torch.max(pred[:, 3], target[:, 3])
    enclosing = (ex1 - ex0) * (ey1 - ey0) + 1e-6
    return iou - (enclosing - union) / enclosing


def class_weights(box_classes: list[np.ndarray], classes: int) -> torch.Tensor:
    """Per class, the inverse square root of its share of the boxes, scaled so that a box weighs 1 on average: a rare
    kind's cells count for more in the loss, so that the detector does not learn to call every vehicle a car."""
    counts = np.bincount(np.concatenate([*box_classes, np.zeros(0, np.int64)]), minlength=classes).astype(float)
    weights = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    weights *= counts.sum() / max(1e-9, float((weights * counts).sum()))
    return torch.tensor(weights, dtype=torch.float32)


def detection_loss(
    model: TinyDetector,
    images: torch.Tensor,
    boxes: list[torch.Tensor],
    classes: list[torch.Tensor] | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """BCE on the scores (a positive cell weighs its class's `weights`, default 1), cross-entropy between the classes
    on positive cells (which kind it is, beside whether it is one), and GIoU + L1 on positive boxes."""
    distances, logits = model.raw(images)
    centres = model.centres
    targets, positives, target_classes = assign_targets(boxes, centres, classes)
    n_pos = max(1, int(positives.sum()))
    one_hot = nn.functional.one_hot(target_classes, model.classes).permute(0, 2, 1).float()  # (N, C, A)
    score_target = one_hot * positives.float().unsqueeze(1)
    cell_weight = torch.ones_like(positives, dtype=torch.float32)
    if weights is not None:
        cell_weight = torch.where(positives, weights[target_classes], cell_weight)
    score_loss = (
        nn.functional.binary_cross_entropy_with_logits(logits, score_target, reduction="none")
        * cell_weight.unsqueeze(1)
    ).sum() / n_pos
    if not positives.any():
        return score_loss
    if model.classes > 1:
        positive_logits = logits.permute(0, 2, 1)[positives]  # (P, C)
        score_loss = score_loss + nn.functional.cross_entropy(
            positive_logits, target_classes[positives], weight=weights
        )
    d = distances.permute(0, 2, 1)[positives]  # (P, 4): l, t, r, b
    cx, cy = centres[0].expand_as(positives)[positives], centres[1].expand_as(positives)[positives]
    pred = torch.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1)
    target = targets[positives]
    box_loss = (1 - _giou(pred, target)).mean()
    l1 = (pred - target).abs().mean() / INPUT_SIZE
    return score_loss + 2.0 * box_loss + 5.0 * l1
