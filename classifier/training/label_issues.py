"""Find labels that are probably wrong, by confident learning on cached features (Northcutt et al., 2021).

Each item gets a predicted probability from a head fitted without it (K-fold, grouped so near-duplicates
never sit on both sides of a split); an item is a label issue when the out-of-sample model confidently
puts it in another class. These are Cleanlab's rules ("prune by noise rate", its default, and the plain
confident-joint off-diagonal), written here in a few lines instead of depending on `cleanlab`, which would
pull pandas and scikit-learn into every worker for fifty lines of numpy.

No Django here.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from classifier.training.refit import fit_head, predict

Method = Literal["prune_by_noise_rate", "confident_learning"]


def _fold_of_each_group(group_ids: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold per group: shuffled, then dealt round-robin within each majority label, so folds are stratified."""
    n_groups = int(group_ids.max()) + 1
    majority = np.array([np.bincount(labels[group_ids == g]).argmax() for g in range(n_groups)])
    shuffled = np.random.default_rng(seed).permutation(n_groups)
    # Stable sort by label keeps the shuffled order inside each label; dealing that sequence round-robin gives
    # each fold a near-equal share of every label.
    order = shuffled[np.argsort(majority[shuffled], kind="stable")]
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    fold_of_group[order] = np.arange(n_groups) % folds
    return fold_of_group


def out_of_sample_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    groups: np.ndarray | None = None,
    **fit_kwargs: Any,
) -> np.ndarray:
    """Probabilities [N, K], each row from a head fitted on the other folds (`fit_head`, with `fit_kwargs`).

    `groups` (any hashable per item, e.g. a near-duplicate cluster id) keeps a group in one fold, so an item
    is never judged by a model that saw its near-copy. Deterministic for a given `seed`.
    """
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} feature rows for {len(y)} labels")
    if groups is None:
        group_ids = np.arange(len(y))
    else:
        if len(groups) != len(y):
            raise ValueError(f"{len(groups)} groups for {len(y)} labels")
        _, group_ids = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_ids.max()) + 1 if len(y) else 0
    folds = min(folds, n_groups)
    if folds < 2:
        raise ValueError(f"need at least 2 groups to cross-validate, got {n_groups}")
    fold = _fold_of_each_group(group_ids, y, folds, seed)[group_ids]
    probabilities = np.zeros((len(y), n_classes), dtype=np.float64)
    for k in range(folds):
        held_out = fold == k
        weight, bias = fit_head(x[~held_out], y[~held_out], n_classes, **fit_kwargs)
        probabilities[held_out] = predict(x[held_out], weight, bias)
    return probabilities


def _thresholds(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per class j, the mean probability of j over the items labelled j; +inf for a class nobody has."""
    n_classes = p.shape[1]
    counts = np.bincount(y, minlength=n_classes)
    sums = np.bincount(y, weights=p[np.arange(len(y)), y], minlength=n_classes)
    thresholds = np.full(n_classes, np.inf)
    thresholds[counts > 0] = sums[counts > 0] / counts[counts > 0]
    return thresholds


def find_label_issues(
    labels: np.ndarray, probabilities: np.ndarray, *, method: Method = "prune_by_noise_rate"
) -> list[int]:
    """Indices of items whose label is probably wrong, least self-confident first.

    Per class j the threshold t_j is the mean predicted probability of j over the items labelled j (how sure
    the model is, on average, about items that really are j). An item labelled i has a confident label j when
    p_j >= t_j, the most probable such j. A class nobody is labelled with has no threshold.

    "confident_learning": the items whose confident label is another class while p_i < t_i. Precise, but it
    misses wrong labels the model is only fairly sure about (below the class's mean confidence).
    "prune_by_noise_rate" (Cleanlab's default): counts those items per (given, confident) pair, scales the
    counts up for the items with no confident label at all (the calibrated confident joint), then flags that
    many items of each pair, largest margin p_j - p_i first; never an item the model itself predicts as
    labelled. `probabilities` must be out of sample (see `out_of_sample_probabilities`): in-sample ones have
    memorised the noise.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"need probabilities [N, K] for N labels, got {p.shape} for {len(y)}")
    n, n_classes = p.shape
    rows = np.arange(n)
    thresholds = _thresholds(y, p)
    above = p >= thresholds  # [N, K]: the classes each item confidently belongs to
    has_confident = above.any(axis=1)
    confident = np.where(above, p, -np.inf).argmax(axis=1)
    self_confidence = p[rows, y]
    if method == "confident_learning":
        issues = has_confident & (confident != y) & (self_confidence < thresholds[y])
    elif method == "prune_by_noise_rate":
        joint = np.zeros((n_classes, n_classes))
        np.add.at(joint, (y[has_confident], confident[has_confident]), 1)
        given = np.bincount(y, minlength=n_classes)
        counted = joint.sum(axis=1)
        scale = np.divide(given, counted, out=np.zeros(n_classes), where=counted > 0)
        to_flag = np.rint(joint * scale[:, None]).astype(np.int64)
        np.fill_diagonal(to_flag, 0)
        issues = np.zeros(n, dtype=bool)
        for i, j in zip(*np.nonzero(to_flag), strict=True):
            members = np.flatnonzero(y == i)
            margins = p[members, j] - p[members, i]
            issues[members[np.argsort(-margins, kind="stable")[: to_flag[i, j]]]] = True
        issues &= p.argmax(axis=1) != y
    else:
        raise ValueError(f"unknown method {method!r}")
    indices = np.flatnonzero(issues)
    return [int(i) for i in indices[np.argsort(self_confidence[indices], kind="stable")]]
