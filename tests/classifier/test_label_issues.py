"""Confident learning on synthetic features: flipped labels are found, near-duplicates never span folds."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.training import label_issues
from classifier.training.label_issues import find_label_issues, out_of_sample_probabilities


def _noisy_blobs(n: int = 600, classes: int = 4, features: int = 16, *, flip_share: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, features))
    truth = rng.integers(0, classes, n)
    x = (centres[truth] + rng.normal(size=(n, features))).astype(np.float32)
    flipped = rng.choice(n, size=int(n * flip_share), replace=False)
    labels = truth.copy()
    labels[flipped] = (truth[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return x, labels, set(flipped.tolist())


@pytest.mark.parametrize("method", ["prune_by_noise_rate", "confident_learning"])
def test_flipped_labels_are_found(method):
    x, labels, flipped = _noisy_blobs()

    probabilities = out_of_sample_probabilities(x, labels, 4, folds=5, l2=1e-2)
    issues = find_label_issues(labels, probabilities, method=method)

    found = set(issues)
    assert len(found & flipped) / len(flipped) >= 0.8  # recall
    assert len(found & flipped) / len(found) >= 0.8  # precision
    self_confidence = probabilities[issues, labels[issues]]
    assert list(self_confidence) == sorted(self_confidence)


def test_out_of_sample_probabilities_are_deterministic_and_rows_sum_to_one():
    x, labels, _ = _noisy_blobs(n=200)

    first = out_of_sample_probabilities(x, labels, 4, folds=4, seed=7)
    again = out_of_sample_probabilities(x, labels, 4, folds=4, seed=7)

    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first.sum(axis=1), 1.0)


def test_a_group_never_spans_two_folds():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 90)
    groups = np.array([f"cluster-{i // 3}" for i in range(90)])  # 30 clusters of three near-duplicates
    _, group_ids = np.unique(groups, return_inverse=True)

    fold = label_issues._fold_of_each_group(group_ids, labels, 5, seed=0)[group_ids]

    for cluster in range(30):
        assert len(set(fold[group_ids == cluster])) == 1
    assert sorted(np.bincount(fold).tolist()) == [18, 18, 18, 18, 18]


def test_grouped_near_duplicates_do_not_vouch_for_each_other():
    """A wrong label copied onto near-duplicates looks right if a copy sits in the training folds."""
    x, labels, _ = _noisy_blobs(n=300, flip_share=0.0, seed=2)
    # Item 0 and four exact copies of it, all labelled wrongly the same way.
    wrong = (labels[0] + 1) % 4
    x = np.r_[x, np.repeat(x[:1], 4, axis=0)]
    labels = np.r_[labels, np.full(4, wrong)]
    labels[0] = wrong
    groups = np.r_[np.arange(300), np.zeros(4, dtype=int)]

    ungrouped = out_of_sample_probabilities(x, labels, 4, l2=1e-4)
    grouped = out_of_sample_probabilities(x, labels, 4, groups=groups, l2=1e-4)

    assert grouped[0, wrong] < ungrouped[0, wrong]
    assert 0 in find_label_issues(labels, grouped)


@pytest.mark.parametrize("method", ["prune_by_noise_rate", "confident_learning"])
def test_a_class_nobody_is_labelled_with_is_never_a_confident_label(method):
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])

    assert find_label_issues(labels, probabilities, method=method) == []


def test_prune_by_noise_rate_also_flags_fairly_confident_wrong_labels():
    # Labelled 0: items 0-3 and 8 (threshold t_0 = 0.48); labelled 1: items 4-7 (t_1 = 0.95).
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0])
    probabilities = np.array(
        [[0.99, 0.01], [0.98, 0.02], [0.1, 0.9], [0.03, 0.97],
         [0.01, 0.99], [0.02, 0.98], [0.05, 0.95], [0.12, 0.88], [0.3, 0.7]]
    )  # fmt: skip

    # Only item 3 reaches class 1's threshold: the one confident-joint off-diagonal.
    assert find_label_issues(labels, probabilities, method="confident_learning") == [3]
    # Of the five labelled 0, two (items 2 and 8) have no confident label at all, so the one off-diagonal
    # count scales to 5/3 -> 2 wrong labels expected among the 0s: the two with the largest margin p_1 - p_0.
    assert find_label_issues(labels, probabilities) == [3, 2]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least 2 groups"):
        out_of_sample_probabilities(np.zeros((3, 2)), np.array([0, 1, 0]), 2, groups=np.zeros(3))
    with pytest.raises(ValueError, match="probabilities"):
        find_label_issues(np.array([0, 1]), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="unknown method"):
        find_label_issues(np.array([0, 1]), np.eye(2), method="vote")
