"""The input adapter (classifier.training.adapter): the adapted model answers exactly as its source until a refit
moves the added weights, keeps its contract (inputs and outputs), and a refit on it can use the input's colors."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from classifier.runtime import make_session
from classifier.training.adapter import adapter_features_name, with_input_adapter
from classifier.training.refit import FeatureExtractor, RefitError, find_head, write_refit_model
from tests.classifier.onnx_builders import embedding_classifier

VEHICLE = Path(__file__).resolve().parents[2] / "classifier" / "starter_models" / "vehicle.onnx"


def test_the_adapted_model_answers_as_its_source_and_reads_the_input_cells():
    source = embedding_classifier(size=16, hidden=8)
    adapted = with_input_adapter(source, "image_type", layout="NHWC", size=(16, 16), grid=4)

    pixels = np.random.default_rng(1).uniform(0, 1, size=(5, 16, 16, 3)).astype(np.float32)
    before = make_session(source).run(None, {"pixels": pixels})
    after = make_session(adapted.SerializeToString()).run(None, {"pixels": pixels})
    np.testing.assert_allclose(after[0], before[0], rtol=1e-6)
    assert [o.name for o in adapted.graph.output] == [o.name for o in onnx.load_from_string(source).graph.output]

    head = find_head(adapted, "image_type")
    assert head.features == adapter_features_name("image_type")
    assert head.weight.shape == (3, 8 + 48)  # the embedding and 3 channels x 4 x 4 cell means
    assert not head.weight[:, 8:].any()  # zero: the source's answer
    features = FeatureExtractor(adapted.SerializeToString(), "image_type").features(pixels)
    expected = pixels.transpose(0, 3, 1, 2).reshape(5, 3, 4, 4, 4, 4).mean(axis=(3, 5)).reshape(5, 48)
    np.testing.assert_allclose(features[:, 8:], expected, rtol=1e-5)

    # A refit that weighs one cell's red heavily answers otherwise, through the file's own output.
    weight = head.weight.copy()
    weight[2, 8] = 100.0  # the red mean of the top-left cell, for the third label
    scores = make_session(write_refit_model(adapted, "image_type", weight, head.bias)).run(None, {"pixels": pixels})
    assert (scores[0].argmax(axis=1) == 2).all()
    again = with_input_adapter(adapted, "image_type", layout="NHWC", size=(16, 16))
    assert again.SerializeToString() == adapted.SerializeToString()  # adapting twice changes nothing


def test_the_vehicle_starter_models_color_head_on_the_adapter_answers_as_before():
    adapted = with_input_adapter(str(VEHICLE), "color", layout="NCHW", size=(224, 224))
    tensors = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    before = make_session(VEHICLE.read_bytes()).run(["image_type", "color"], {"image": tensors})
    after = make_session(adapted.SerializeToString()).run(["image_type", "color"], {"image": tensors})
    for old, new in zip(before, after, strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-6)
    assert find_head(adapted, "color").n_features == find_head(onnx.load(str(VEHICLE)), "color").n_features + 48
    assert find_head(adapted, "image_type").features == find_head(onnx.load(str(VEHICLE)), "image_type").features


def test_an_input_that_does_not_tile_is_refused():
    with pytest.raises(RefitError, match="does not tile"):
        with_input_adapter(embedding_classifier(size=6), "image_type", layout="NHWC", size=(6, 6), grid=4)
