"""Classification and detection metrics in plain Python (no torch, no numpy needed).

Used by the starter-model training command and reusable from Django to compare candidate models with the
active one on the same test split. Labels are strings; a true label of ``None`` means "no ground truth for
this task" (e.g. a placeholder has no colour) and the pair is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


def confusion_matrix(y_true: Sequence[str | None], y_pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Rows are true labels, columns predicted labels, both in the order of ``labels``."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items, y_pred {len(y_pred)}")
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for true, pred in zip(y_true, y_pred, strict=True):
        if true is None:
            continue
        if true not in index or pred not in index:
            raise ValueError(f"unknown label in pair ({true!r}, {pred!r}); labels are {list(labels)}")
        matrix[index[true]][index[pred]] += 1
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def per_class_scores(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> dict[str, ClassScores]:
    """Precision, recall and F1 of each class from a confusion matrix (0.0 where undefined)."""
    scores = {}
    for i, label in enumerate(labels):
        true_positive = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision = _ratio(true_positive, predicted)
        recall = _ratio(true_positive, support)
        f1 = _ratio(2 * precision * recall, precision + recall)
        scores[label] = ClassScores(precision=precision, recall=recall, f1=f1, support=support)
    return scores


def classification_report(y_true: Sequence[str | None], y_pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """JSON-ready report: n, accuracy, macro F1, per-class precision/recall/F1/support, confusion matrix."""
    matrix = confusion_matrix(y_true, y_pred, labels)
    n = sum(sum(row) for row in matrix)
    correct = sum(matrix[i][i] for i in range(len(labels)))
    scores = per_class_scores(matrix, labels)
    present = [s for s in scores.values() if s.support]
    return {
        "n": n,
        "accuracy": _ratio(correct, n),
        "macro_f1": _ratio(sum(s.f1 for s in present), len(present)),
        "labels": list(labels),
        "per_class": {
            label: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}
            for label, s in scores.items()
        },
        "confusion_matrix": matrix,
    }


@dataclass(frozen=True)
class LocalAccuracy:
    """Correct among the tags a human looked at (fixes and confirmations), with a 95% Wilson interval, so that
    3 reviews never read as 100%. The one definition of local accuracy: health, export and model comparison."""

    reviewed: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.reviewed if self.reviewed else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.correct, self.reviewed) if self.reviewed else None

    def as_dict(self) -> dict[str, Any]:
        low, high = self.interval or (None, None)
        return {
            "reviewed": self.reviewed,
            "correct": self.correct,
            "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
            "low": None if low is None else round(low, 4),
            "high": None if high is None else round(high, 4),
        }


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default): sound at small n and at 0% or 100%."""
    if n <= 0:
        raise ValueError("no trials")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    return _ratio(inter, area_a + area_b - inter)


def detection_report(
    true_boxes: Sequence[Sequence[float] | None], predicted_boxes: Sequence[Sequence[float] | None]
) -> dict[str, Any]:
    """Biggest-box agreement: share with IoU >= 0.5 and mean IoU over images that have a true box.

    Also counts images without a true box where the detector still found one (false alarms), since
    cropping a placeholder graphic is how it stops looking like one.
    """
    ious = []
    false_alarms = 0
    empty = 0
    for true, pred in zip(true_boxes, predicted_boxes, strict=True):
        if true is None:
            empty += 1
            false_alarms += pred is not None
            continue
        ious.append(box_iou(true, pred) if pred is not None else 0.0)
    return {
        "n": len(ious),
        "iou_at_least_0.5": _ratio(sum(iou >= 0.5 for iou in ious), len(ious)),
        "mean_iou": _ratio(sum(ious), len(ious)),
        "missed": sum(iou == 0.0 for iou in ious),
        "n_without_vehicle": empty,
        "false_alarm_rate": _ratio(false_alarms, empty),
    }


def format_report(title: str, report: dict[str, Any]) -> str:
    """A fixed-width table: accuracy, per-class P/R/F1/support, then the confusion matrix."""
    labels = report["labels"]
    width = max(12, *(len(label) for label in labels))
    lines = [f"{title}: accuracy {report['accuracy']:.3f}  macro F1 {report['macro_f1']:.3f}  (n={report['n']})"]
    lines.append(f"  {'class':<{width}}  precision  recall     f1  support")
    for label in labels:
        s = report["per_class"][label]
        lines.append(
            f"  {label:<{width}}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['f1']:5.3f}  {s['support']:7d}"
        )
    short = [label[:6] for label in labels]
    lines.append(f"  confusion (rows true, columns predicted): {' '.join(f'{s:>6}' for s in short)}")
    for label, row in zip(labels, report["confusion_matrix"], strict=True):
        lines.append(f"  {label:>{width + 29}}  {' '.join(f'{v:>6d}' for v in row)}")
    return "\n".join(lines)


def format_detection_report(title: str, report: dict[str, Any]) -> str:
    return (
        f"{title}: biggest box IoU>=0.5 {report['iou_at_least_0.5']:.3f}  mean IoU {report['mean_iou']:.3f}  "
        f"missed {report['missed']} (n={report['n']}); "
        f"box found on {report['false_alarm_rate']:.3f} of {report['n_without_vehicle']} images without a vehicle"
    )
