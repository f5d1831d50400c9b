"""k-nearest-neighbour novelty on features (classifier.novelty) and the drift flag built from it (reviews.health)."""

import numpy as np
import pytest

from classifier.novelty import Reference, knn_distances, normalised
from classifier.services.drift import evenly_spread
from reviews.health.flags import drift


def _cluster(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float = 0.05) -> np.ndarray:
    return centre + spread * rng.standard_normal((n, len(centre)))


def test_knn_distance_is_the_mean_cosine_distance_to_the_k_nearest() -> None:
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # [1, 1] is 45 degrees from the first two (cosine distance 1 - 0.7071) and 135 from the third.
    assert knn_distances(np.array([[1.0, 1.0]]), reference, k=2) == pytest.approx([1 - np.sqrt(0.5)])
    # Left out of its own neighbours: [1, 0]'s nearest others are [0, 1] (distance 1) and [-1, 0] (distance 2).
    assert knn_distances(reference, reference, k=1, leave_one_out=True) == pytest.approx([1.0, 1.0, 1.0])
    assert knn_distances(reference, reference, k=2, leave_one_out=True) == pytest.approx([1.5, 1.0, 1.5])


def test_scale_does_not_matter_and_a_zero_row_stays_zero() -> None:
    rows = normalised(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert rows.tolist() == [[0.6, 0.8], [0.0, 0.0]]


@pytest.mark.parametrize(
    ("queries", "reference", "k", "leave_one_out", "message"),
    [
        (np.zeros((1, 2)), np.ones((3, 2)), 4, False, "4 neighbours asked of a reference of 3 images"),
        (np.zeros((1, 2)), np.ones((3, 2)), 3, True, "3 neighbours asked of a reference of 2 images"),
        (np.zeros((2, 2)), np.ones((3, 2)), 1, True, "leave_one_out compares the reference with itself"),
        (np.zeros(2), np.ones((3, 2)), 1, False, "features must be a 2-d array"),
    ],
)
def test_bad_input_is_refused_in_one_line(queries, reference, k, leave_one_out, message) -> None:
    with pytest.raises(ValueError, match=message):
        knn_distances(queries, reference, k=k, leave_one_out=leave_one_out)


def test_images_of_the_reference_style_are_familiar_and_another_style_is_not() -> None:
    rng = np.random.default_rng(0)
    known = rng.standard_normal(64)
    other = rng.standard_normal(64)
    reference = Reference.fit(_cluster(rng, known, 400), k=10, quantile=0.8)
    assert reference.usual_share == pytest.approx(0.2, abs=0.01)
    usual = reference.ratios(_cluster(rng, known, 200))
    drifted = reference.ratios(_cluster(rng, other, 200))
    assert 0.05 < np.mean(usual > 1) < 0.35
    assert np.mean(drifted > 1) == 1.0
    assert reference.ratios(np.zeros((0, 64))).shape == (0,)
    with pytest.raises(ValueError, match="quantile must be between 0 and 1"):
        Reference.fit(_cluster(rng, known, 20), k=3, quantile=1.0)


def test_a_sample_is_spread_evenly() -> None:
    assert evenly_spread(list(range(10)), 20) == list(range(10))
    assert evenly_spread(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert evenly_spread(list(range(1000)), 300)[-1] >= 996


FIGURES = {"reference": 500, "model_version": 3, "min_share": 0.3, "min_images": 20}


def test_the_drift_flag_needs_a_share_and_a_count_of_unfamiliar_images() -> None:
    flag = drift(new_images=240, measured=240, unfamiliar=149, usual_share=0.2, **FIGURES)
    assert flag is not None
    assert flag["code"] == "drift"
    assert flag["message"].startswith("62% of the Run's 240 new images are unlike what the model knows (usual: 20%)")
    assert (flag["share"], flag["unfamiliar"], flag["reference"]) == (round(149 / 240, 4), 149, 500)
    assert drift(new_images=240, measured=240, unfamiliar=71, usual_share=0.2, **FIGURES) is None  # 29.6%
    assert drift(new_images=50, measured=50, unfamiliar=19, usual_share=0.2, **FIGURES) is None  # 38%, but 19
    assert drift(new_images=0, measured=0, unfamiliar=0, usual_share=0.2, **FIGURES) is None
    sampled = drift(new_images=1200, measured=300, unfamiliar=150, usual_share=0.2, **FIGURES)
    assert sampled is not None
    assert sampled["message"].startswith("50% of 300 measured of the Run's 1200 new images are unlike")
