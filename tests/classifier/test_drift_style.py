"""The drifted advertiser style (white photo booth, real cars): labels, determinism, and that the starter
model really drifts on it while it still does well on ordinary samples."""

import numpy as np
import pytest

from classifier.synth import COLORS, drifted_sample, vehicle_sample
from classifier.synth.measure_drift import Item, accuracy, load_pipeline, score
from classifier.synth.styles import DRIFT_IMAGE_TYPE
from classifier.training.samples import jpeg_bytes


def _noise(image) -> float:
    """Median over rows of the mean absolute difference between horizontal neighbours: sensor noise."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    diffs = np.abs(np.diff(grey, axis=1))
    return float(np.median(diffs.mean(axis=1)))


def test_drifted_sample_is_a_pure_function_of_the_seed() -> None:
    a, b = drifted_sample(7), drifted_sample(7)
    assert a.image.tobytes() == b.image.tobytes()
    assert (a.color, a.box) == (b.color, b.box)
    assert drifted_sample(8).image.tobytes() != a.image.tobytes()


@pytest.mark.parametrize("seed", range(12))
def test_drifted_sample_labels_and_box(seed: int) -> None:
    size = (320, 240) if seed % 2 else (640, 480)
    s = drifted_sample(seed, size=size)
    assert s.image.mode == "RGB"
    assert s.image.size == size
    assert s.image_type == DRIFT_IMAGE_TYPE == "Dealer"
    assert s.color in COLORS
    assert s.intent == "Tools, Vehicles, Electronics & Appliances"
    assert s.sensitive == "not sensitive"
    assert s.box is not None
    assert s.boxes == (s.box,)
    x0, y0, x1, y1 = s.box
    assert 0 <= x0 < x1 <= size[0]
    assert 0 <= y0 < y1 <= size[1]
    assert (x1 - x0) * (y1 - y0) > 0.1 * size[0] * size[1]


def test_drifted_photos_are_noisier_than_stock_renders() -> None:
    drifted = [_noise(drifted_sample(seed).image) for seed in range(20)]
    stock = [_noise(vehicle_sample(seed, image_type="Stock").image) for seed in range(20)]
    assert np.median(drifted) >= 1.0 > 0.3 >= np.median(stock)
    assert min(drifted) > 0.5


def test_starter_model_drifts_on_the_style_but_not_on_ordinary_samples() -> None:
    pipeline, _, _ = load_pipeline()
    drifted = [drifted_sample(seed) for seed in range(60)]
    ordinary = [
        vehicle_sample(seed, image_type="Dealer" if seed % 2 == 0 else "Stock") for seed in range(5_000_000, 5_000_060)
    ]
    items = [Item(jpeg_bytes(s.image), s.image_type, s.color) for s in drifted]
    plain = [Item(jpeg_bytes(s.image), s.image_type, s.color) for s in ordinary]
    drifted_accuracy = accuracy([i.image_type for i in items], score(pipeline, items).image_type)
    ordinary_accuracy = accuracy([i.image_type for i in plain], score(pipeline, plain).image_type)
    assert drifted_accuracy <= 0.85
    assert drifted_accuracy >= 0.4  # a mix: part of the style still reads Dealer
    assert ordinary_accuracy >= 0.9
