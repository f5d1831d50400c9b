"""Cached penultimate features on the real vehicle starter model and real stored JPEGs: the features are the
ones production computes (they reproduce its stored confidences through the head), and they are computed once."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from catalog.imaging import inspect_image
from catalog.models import ImageAsset
from catalog.services.assets import asset_get_or_create
from classifier.models import Classification, Detection, FeatureVector, ModelVersion
from classifier.services import features as features_module
from classifier.services.features import FeatureError, asset_crop_box, asset_features
from classifier.services.inference import active_models, classify_assets
from classifier.services.registry import model_register
from classifier.synth import vehicle_sample
from classifier.training.refit import find_head, predict

pytestmark = pytest.mark.django_db

STARTERS = Path(__file__).resolve().parents[2] / "classifier" / "starter_models"


def register_starter(name: str, *, activate: bool = True) -> ModelVersion:
    """A starter model from classifier/starter_models, registered with its contract like register_starter_models."""
    contract = json.loads((STARTERS / f"{name}.json").read_text())
    return model_register(data=(STARTERS / f"{name}.onnx").read_bytes(), contract=contract, activate=activate)


def jpeg(image: Image.Image, quality: int = 88) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def store(image: Image.Image) -> ImageAsset:
    """The image saved as a JPEG original in storage, as a Run would store a downloaded photo."""
    data = jpeg(image)
    asset, _ = asset_get_or_create(facts=inspect_image(data), data=data)
    return asset


def classify(assets: list[ImageAsset]) -> None:
    """The production path: the active models tag the assets, 32 at a time, results and boxes cached."""
    active = active_models()
    for start in range(0, len(assets), 32):
        classify_assets(assets[start : start + 32], active)


@pytest.fixture
def vehicle():
    register_starter("detector")
    return register_starter("vehicle")


def test_features_through_the_parent_head_reproduce_its_stored_confidences(vehicle):
    assets = [store(vehicle_sample(seed, size=(480, 360)).image) for seed in range(40)]
    classify(assets)
    assert Detection.objects.count() == 40  # the detector ran, its boxes are what the crops come from
    ids = [a.pk for a in assets]

    features = asset_features(version=vehicle, task="image_type", asset_ids=ids)

    head = find_head(onnx.load(STARTERS / "vehicle.onnx"), "image_type")
    probabilities = predict(features, head.weight, head.bias)
    stored = {
        c.asset_id: c
        for c in Classification.objects.filter(model_version=vehicle, task="image_type", status="ok", asset_id__in=ids)
    }
    labels = ["Dealer", "Stock", "Placeholder"]
    for row, asset_id in enumerate(ids):
        result = stored[asset_id]
        assert labels[int(probabilities[row].argmax())] == result.label
        np.testing.assert_allclose(probabilities[row], [result.scores[label] for label in labels], atol=1e-4)
    assert features.shape == (40, 512)
    assert features.dtype == np.float32


def test_a_second_call_computes_nothing_and_heads_on_one_embedding_share_rows(vehicle, monkeypatch):
    assets = [store(vehicle_sample(seed, size=(320, 240)).image) for seed in range(100, 140)]
    ids = [a.pk for a in assets]
    calls: list[tuple[int, int]] = []

    first = asset_features(
        version=vehicle, task="image_type", asset_ids=ids[:20], progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(0, 20), (20, 20)]
    calls.clear()
    both = asset_features(version=vehicle, task="image_type", asset_ids=ids, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(20, 40), (40, 40)]  # the 20 cached ones count as done; the other 20 are one batch
    np.testing.assert_array_equal(both[:20], first)
    assert FeatureVector.objects.filter(model_version=vehicle).count() == 40

    computed: list[int] = []
    original = features_module._compute
    monkeypatch.setattr(
        features_module, "_compute", lambda **kw: computed.append(len(kw["asset_ids"])) or original(**kw)
    )
    again = asset_features(version=vehicle, task="image_type", asset_ids=[*reversed(ids), ids[0]])
    color = asset_features(version=vehicle, task="color", asset_ids=ids)  # color reads the same embedding

    assert computed == []
    np.testing.assert_array_equal(again[:-1], both[::-1])
    np.testing.assert_array_equal(again[-1], both[0])
    np.testing.assert_array_equal(color, both)
    assert FeatureVector.objects.count() == 40


def test_the_crop_is_the_classification_then_the_detector_box_then_the_whole_image(vehicle):
    classified, detected, unseen = (store(vehicle_sample(seed, size=(320, 240)).image) for seed in (1, 2, 3))
    classify([classified])
    detector = ModelVersion.objects.get(kind="detector")
    Classification.objects.filter(asset=classified, task="image_type").update(crop_box=[10, 20, 200, 220])
    Detection.objects.create(asset=detected, model_version=detector, box=[5, 6, 100, 120])

    assert asset_crop_box(version=vehicle, task="image_type", asset=classified) == [10, 20, 200, 220]
    assert asset_crop_box(version=vehicle, task="image_type", asset=detected) == [5, 6, 100, 120]
    assert asset_crop_box(version=vehicle, task="image_type", asset=unseen) is None

    intent = register_starter("intent")  # crops nothing: always the whole image
    Detection.objects.create(asset=unseen, model_version=detector, box=[1, 1, 50, 50])
    assert asset_crop_box(version=intent, task="intent", asset=unseen) is None


def test_a_task_the_model_does_not_tag_and_a_missing_original_are_errors(vehicle):
    asset = store(vehicle_sample(7, size=(320, 240)).image)
    with pytest.raises(FeatureError, match="model vehicle does not tag intent"):
        asset_features(version=vehicle, task="intent", asset_ids=[asset.pk])

    asset.original.storage.delete(asset.original.name)
    with pytest.raises(FeatureError, match=f"asset {asset.pk}: cannot read"):
        asset_features(version=vehicle, task="image_type", asset_ids=[asset.pk])
    assert not FeatureVector.objects.exists()
