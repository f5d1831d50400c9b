"""How unlike a reference set of images new images are, by k-nearest-neighbour distance on penultimate features.

Out-of-distribution detection as Cleanlab's Datalab does it on feature embeddings: an image's score is the mean
cosine distance (on L2-normalised features) to its k nearest reference images; the reference's own scores, each
image left out of its own neighbours, give the threshold (a quantile of them), and an image above it is unfamiliar.
Plain numpy, brute force: a few hundred queries against a thousand references cost milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPSILON = 1e-12


def normalised(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as float64."""
    rows = np.asarray(features, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"features must be a 2-d array [images, dimensions], not of shape {rows.shape}")
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), _EPSILON)


def knn_distances(queries: np.ndarray, reference: np.ndarray, *, k: int, leave_one_out: bool = False) -> np.ndarray:
    """Mean cosine distance of each query row to its `k` nearest reference rows; with `leave_one_out`, the queries
    are the reference itself and each row is left out of its own neighbours."""
    q, r = normalised(queries), normalised(reference)
    available = len(r) - (1 if leave_one_out else 0)
    if k < 1 or available < k:
        raise ValueError(f"{k} neighbours asked of a reference of {available} images")
    if leave_one_out and len(q) != len(r):
        raise ValueError("leave_one_out compares the reference with itself")
    distances = 1.0 - q @ r.T
    if leave_one_out:
        np.fill_diagonal(distances, np.inf)
    nearest = np.partition(distances, k - 1, axis=1)[:, :k]
    return np.clip(nearest, 0.0, 2.0).mean(axis=1)


@dataclass(frozen=True)
class Reference:
    """A reference set ready to score new images: its rows, the threshold and how often the reference itself is
    above it (the usual share of unfamiliar images, about 1 - quantile)."""

    rows: np.ndarray
    k: int
    threshold: float
    usual_share: float

    @classmethod
    def fit(cls, features: np.ndarray, *, k: int, quantile: float) -> Reference:
        """The reference of these feature rows: the threshold is `quantile` of their leave-one-out scores."""
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be between 0 and 1, not {quantile}")
        rows = normalised(features)
        own = knn_distances(rows, rows, k=k, leave_one_out=True)
        threshold = float(np.quantile(own, quantile))
        return cls(rows=rows, k=k, threshold=threshold, usual_share=float(np.mean(own > threshold)))

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Each row's mean distance to its k nearest reference rows."""
        if len(features) == 0:
            return np.zeros(0)
        return knn_distances(features, self.rows, k=self.k)

    def ratios(self, features: np.ndarray) -> np.ndarray:
        """Each row's score over the threshold: above 1, the image is unfamiliar."""
        return self.scores(features) / max(self.threshold, _EPSILON)
