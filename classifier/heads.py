"""Turn a classifier head's raw output into labels, probabilities and margins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from classifier.contract import HeadSpec


def activate(values: np.ndarray, activation: str) -> np.ndarray:
    """Probabilities on the last axis (float64): softmax (stable), sigmoid, or "none" (already probabilities)."""
    values = np.asarray(values, dtype=np.float64)
    if activation == "softmax":
        shifted = values - values.max(axis=-1, keepdims=True)
        exponentials = np.exp(shifted)
        return exponentials / exponentials.sum(axis=-1, keepdims=True)
    if activation == "sigmoid":
        # exp(-log(1 + exp(-x))) never overflows, for any sign of x.
        return np.exp(-np.logaddexp(0.0, -values))
    if activation == "none":
        return values
    raise ValueError(f"unknown activation {activation!r}")


@dataclass(frozen=True)
class HeadResult:
    task: str
    label: str
    confidence: float  # probability of `label`
    scores: dict[str, float]  # probability of every label
    margin: float  # top-1 minus top-2 probability: small means the model hesitated


def head_results(head: HeadSpec, values: np.ndarray) -> list[HeadResult]:
    """One result per batch row of a head's output ([batch, labels], or [batch, 1, ..., labels])."""
    values = np.asarray(values)
    if values.ndim == 0:
        raise ValueError(f"head {head.task!r}: output {head.output!r} is a scalar")
    rows = values.reshape(values.shape[0], -1) if values.ndim > 1 else values[None]
    if rows.shape[1] != len(head.labels):
        raise ValueError(
            f"head {head.task!r}: output {head.output!r} has {rows.shape[1]} values but {len(head.labels)} labels"
        )
    probabilities = activate(rows, head.activation)
    if not np.isfinite(probabilities).all():
        raise ValueError(f"head {head.task!r}: output {head.output!r} holds non-finite values")
    order = np.argsort(-probabilities, axis=1, kind="stable")
    results = []
    for row, ranking in zip(probabilities, order, strict=True):
        top, second = int(ranking[0]), int(ranking[1])
        results.append(
            HeadResult(
                task=head.task,
                label=head.labels[top],
                confidence=float(row[top]),
                scores={label: float(value) for label, value in zip(head.labels, row, strict=True)},
                margin=float(row[top] - row[second]),
            )
        )
    return results
