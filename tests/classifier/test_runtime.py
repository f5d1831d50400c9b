import copy
import io

import numpy as np
import pytest
from PIL import Image

from classifier.contract import ClassifierContract, DetectorContract, HeadSpec, parse_contract
from classifier.heads import HeadResult, activate, head_results
from classifier.preprocess import batch, to_tensor
from classifier.runtime import ClassifierModel, DetectorModel, ImageTags, Pipeline, make_session
from tests.classifier.onnx_builders import (
    SENSITIVE_WEIGHTS,
    classifier_contract,
    constant_detector,
    detector_contract,
    mean_classifier,
    yolo_output,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def softmax(values) -> np.ndarray:
    values = np.exp(np.asarray(values, dtype=np.float64) - np.max(values))
    return values / values.sum()


# --- heads -------------------------------------------------------------------------------------------------


def test_softmax_is_stable():
    np.testing.assert_allclose(activate(np.array([[1.0, 2.0, 3.0]]), "softmax"), [softmax([1, 2, 3])])
    np.testing.assert_allclose(activate(np.array([1000.0, 1001.0]), "softmax"), softmax([0, 1]))


def test_sigmoid_never_overflows():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        values = activate(np.array([0.0, 2.0, -2.0, 1000.0, -1000.0]), "sigmoid")

    np.testing.assert_allclose(values, [0.5, 1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2)), 1.0, 0.0], atol=1e-12)


def test_none_passes_probabilities_through_and_unknown_is_refused():
    np.testing.assert_array_equal(activate(np.array([0.2, 0.8]), "none"), [0.2, 0.8])
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        activate(np.array([1.0]), "relu")


def test_head_results_one_per_row_with_label_scores_and_margin():
    head = HeadSpec(output="color", task="color", activation="none", labels=("red", "green", "blue"))

    results = head_results(head, np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]], dtype=np.float32))

    assert [(result.label, result.task) for result in results] == [("green", "color"), ("red", "color")]
    assert results[0].confidence == pytest.approx(0.7)
    assert results[0].margin == pytest.approx(0.5)
    assert results[1].margin == pytest.approx(0.1)
    assert results[0].scores == pytest.approx({"red": 0.1, "green": 0.7, "blue": 0.2})
    assert all(isinstance(value, float) for value in results[0].scores.values())


def test_head_results_with_softmax_and_sigmoid():
    softmax_head = HeadSpec(output="o", task="t", activation="softmax", labels=("a", "b"))
    sigmoid_head = HeadSpec(output="o", task="t", activation="sigmoid", labels=("a", "b", "c"))

    (soft,) = head_results(softmax_head, np.array([[0.0, np.log(3.0)]]))
    (multi,) = head_results(sigmoid_head, np.array([[0.0, 3.0, -3.0]]))

    assert (soft.label, soft.confidence, soft.margin) == ("b", pytest.approx(0.75), pytest.approx(0.5))
    assert multi.label == "b"
    assert multi.margin == pytest.approx(1 / (1 + np.exp(-3)) - 0.5)


def test_head_results_refuses_a_width_mismatch_and_non_finite_values():
    head = HeadSpec(output="color", task="color", activation="softmax", labels=("red", "green", "blue"))

    with pytest.raises(ValueError, match="head 'color': output 'color' has 2 values but 3 labels"):
        head_results(head, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        head_results(head, np.array([[np.nan, 0.0, 1.0]]))


# --- sessions and models -------------------------------------------------------------------------------------


def test_session_options():
    options = make_session(mean_classifier()).get_session_options()

    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    assert options.enable_cpu_mem_arena is False


class CountingSession:
    """Wraps a real session's run to count inferences (or to fail on purpose)."""

    def __init__(self, session, *, fail: Exception | None = None):
        self.session = session
        self.calls: list[int] = []  # the batch size of each run
        self.fail = fail

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, output_names, feed, *args, **kwargs):
        self.calls.append(len(next(iter(feed.values()))))
        if self.fail is not None:
            raise self.fail
        return self.session.run(output_names, feed, *args, **kwargs)


def renamed(contract: dict, suffix: str, **changes) -> dict:
    """The contract with each head's task renamed task + suffix, and top-level changes."""
    data = copy.deepcopy(contract)
    for head in data["heads"]:
        head["task"] += suffix
    data.update(changes)
    return data


def classifier(contract: dict, model: bytes, *, fail: Exception | None = None) -> ClassifierModel:
    parsed = parse_contract(contract)
    assert isinstance(parsed, ClassifierContract)
    return ClassifierModel(CountingSession(make_session(model), fail=fail), parsed)  # type: ignore[arg-type]


def detector(contract: dict, model: bytes, *, fail: Exception | None = None) -> DetectorModel:
    parsed = parse_contract(contract)
    assert isinstance(parsed, DetectorContract)
    return DetectorModel(CountingSession(make_session(model), fail=fail), parsed)  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_classifier_gives_every_head_from_one_inference(layout):
    model = classifier(classifier_contract(layout=layout, with_mean_head=True), mean_classifier(layout=layout))
    images = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (10, 10), (0, 51, 255))]
    tensors = batch([to_tensor(image, model.contract.input) for image in images])

    results = model.run(tensors)

    assert model.session.calls == [2]
    assert set(results) == {"color", "sensitive", "mean"}
    assert results["mean"][1].scores == pytest.approx({"r": 0.0, "g": 0.2, "b": 1.0})
    assert [result.label for result in results["color"]] == ["red", "blue"]
    expected_color = dict(zip(("red", "green", "blue"), softmax([1, 0, 0]), strict=True))
    assert results["color"][0].scores == pytest.approx(expected_color)
    expected_sensitive = softmax(np.array([0.0, 0.2, 1.0]) @ SENSITIVE_WEIGHTS)
    assert results["sensitive"][1].scores == pytest.approx(
        {"not sensitive": expected_sensitive[0], "sensitive": expected_sensitive[1]}, abs=1e-6
    )


def test_classifier_with_a_fixed_batch_of_one_runs_per_image():
    model = classifier(classifier_contract(with_mean_head=True), mean_classifier(batch=1))
    images = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), GREEN), Image.new("RGB", (8, 8), BLUE)]

    results = model.run(batch([to_tensor(image, model.contract.input) for image in images]))

    assert model.session.calls == [1, 1, 1]
    assert [result.label for result in results["color"]] == ["red", "green", "blue"]


def test_classifier_refuses_a_tensor_of_the_wrong_dtype():
    model = classifier(classifier_contract(), mean_classifier())

    with pytest.raises(ValueError, match="input tensor is float64, the contract says float32"):
        model.run(np.zeros((1, 8, 8, 3)))


def test_detector_boxes_in_image_pixels():
    # A 64x32 image letterboxed into 32x32: ratio 0.5, 8 grey rows above. A box at x 16-32, y 8-16 in the
    # detector input is x 32-64, y 0-16 in the image.
    output = yolo_output([(24, 12, 16, 8, 1, 0.9), (5, 20, 4, 4, 0, 0.8)], classes=2)
    model = detector(detector_contract(margin=0.25), constant_detector(output))
    image = Image.new("RGB", (64, 32))

    boxes = model.boxes(image)

    assert [(box.x0, box.y0, box.x1, box.y1, box.class_id) for box in boxes] == [
        (32, 0, 64, 16, 1),
        (6, 20, 14, 28, 0),
    ]
    assert model.crop_box(image) == (24, 0, 64, 20)  # 32x16 grown by 8 and 4 each side, clamped


# --- the pipeline ------------------------------------------------------------------------------------------------

# The image: red, with its top-right quarter green. The detector's box is exactly that quarter.
IMAGE_SIZE = (64, 32)
VEHICLE = (32, 0, 64, 16)
VEHICLE_OUTPUT = yolo_output([(24, 12, 16, 8, 1, 0.9)], classes=2)
NO_VEHICLE_OUTPUT = yolo_output([(24, 12, 16, 8, 1, 0.1)], classes=2)


def scene() -> Image.Image:
    image = Image.new("RGB", IMAGE_SIZE, RED)
    image.paste(GREEN, VEHICLE)
    return image


def whole_and_crop_models(detector_output=VEHICLE_OUTPUT, *, crop_fail=None):
    whole = classifier(classifier_contract(name="whole", with_mean_head=True), mean_classifier())
    cropped = classifier(
        renamed(classifier_contract(name="cropped", with_mean_head=True), "_crop", crop="vehicle"),
        mean_classifier(),
        fail=crop_fail,
    )
    found = detector(detector_contract(), constant_detector(detector_output))
    return whole, cropped, found


def test_pipeline_runs_each_model_once_per_batch_and_feeds_the_crop():
    whole, cropped, found = whole_and_crop_models()
    pipeline = Pipeline([whole, cropped], found)

    tags = pipeline.run([scene(), scene(), scene()])

    assert whole.session.calls == [3]
    assert cropped.session.calls == [3]
    assert found.session.calls == [1, 1, 1]
    for result in tags:
        assert result.errors == {}
        assert result.crop == VEHICLE
        assert result.crop_source == "detector"
        assert set(result.tags) == {"color", "sensitive", "mean", "color_crop", "sensitive_crop", "mean_crop"}
        assert result.tags["mean_crop"].scores == pytest.approx({"r": 0.0, "g": 1.0, "b": 0.0}, abs=1e-6)
        assert result.tags["mean"].scores == pytest.approx({"r": 0.75, "g": 0.25, "b": 0.0}, abs=0.03)
        assert result.tags["color_crop"].label == "green"
        assert result.tags["color"].label == "red"


def test_pipeline_without_a_vehicle_uses_the_whole_image():
    whole, cropped, found = whole_and_crop_models(NO_VEHICLE_OUTPUT)

    (result,) = Pipeline([whole, cropped], found).run([scene()])

    assert (result.crop, result.crop_source) == (None, "no_vehicle")
    assert result.tags["mean_crop"].scores == pytest.approx(result.tags["mean"].scores)


def test_pipeline_without_a_detector_uses_the_whole_image():
    whole, cropped, _ = whole_and_crop_models()

    (result,) = Pipeline([whole, cropped], None).run([scene()])

    assert (result.crop, result.crop_source) == (None, "no_detector")
    assert result.tags["mean_crop"].label == "r"


def test_pipeline_tasks_choose_the_models():
    whole, cropped, found = whole_and_crop_models()

    (result,) = Pipeline([whole, cropped], found).run([scene()], tasks={"color"})

    assert set(result.tags) == {"color"}
    assert whole.session.calls == [1]
    assert cropped.session.calls == []
    assert found.session.calls == []  # nobody wanted the crop
    assert result.crop_source == "none"


def test_pipeline_uses_known_crops_instead_of_the_detector():
    whole, cropped, found = whole_and_crop_models()

    first, second = Pipeline([whole, cropped], found).run(
        [scene(), scene()], tasks={"mean_crop"}, crops=[((0, 0, 32, 32), "detector"), None]
    )

    assert found.session.calls == [1]  # only for the second image
    assert (first.crop, first.crop_source) == ((0, 0, 32, 32), "detector")
    assert first.tags["mean_crop"].label == "r"
    assert (second.crop, second.crop_source) == (VEHICLE, "detector")
    assert second.tags["mean_crop"].label == "g"


def test_a_failing_model_records_errors_for_its_tasks_only():
    whole, cropped, found = whole_and_crop_models(crop_fail=RuntimeError("out of memory\nin the arena"))

    tags = Pipeline([whole, cropped], found).run([scene(), scene()])

    for result in tags:
        assert set(result.tags) == {"color", "sensitive", "mean"}
        assert result.errors == dict.fromkeys(
            ("color_crop", "sensitive_crop", "mean_crop"), "model cropped: RuntimeError: out of memory in the arena"
        )


def test_a_model_whose_output_breaks_its_contract_is_recorded():
    broken = classifier(renamed(classifier_contract(name="broken"), "_b"), mean_classifier(color_width=4))
    whole = classifier(classifier_contract(name="whole"), mean_classifier())

    (result,) = Pipeline([whole, broken], None).run([scene()])

    assert set(result.tags) == {"color", "sensitive"}
    assert result.errors["color_b"] == (
        "model broken: ValueError: head 'color_b': output 'color' has 4 values but 3 labels"
    )
    assert result.errors["color_b"] == result.errors["sensitive_b"]


def test_a_failing_detector_records_errors_for_the_crop_tasks():
    whole, cropped, _ = whole_and_crop_models()
    broken = detector(detector_contract(), constant_detector(VEHICLE_OUTPUT), fail=RuntimeError("boom"))

    (result,) = Pipeline([whole, cropped], broken).run([scene()])

    assert set(result.tags) == {"color", "sensitive", "mean"}
    assert result.errors == dict.fromkeys(
        ("color_crop", "sensitive_crop", "mean_crop"), "detector tiny-detector: RuntimeError: boom"
    )
    assert cropped.session.calls == []


def test_pipeline_decode_covers_the_largest_input():
    whole, _, found = whole_and_crop_models()  # inputs 8x8 and 32x32
    buffer = io.BytesIO()
    Image.new("RGB", (1600, 1200), RED).save(buffer, "JPEG")

    decoded = Pipeline([whole], found).decode(buffer.getvalue())

    assert Pipeline([whole], found).min_size == (32, 32)
    assert decoded.image.size == (200, 150)
    (result,) = Pipeline([whole], found).run([decoded])
    assert result.tags["color"].label == "red"


def test_pipeline_refuses_two_models_for_one_task():
    whole = classifier(classifier_contract(name="one"), mean_classifier())
    other = classifier(classifier_contract(name="two"), mean_classifier())

    with pytest.raises(ValueError, match="task 'color' is served by both 'one' and 'two'"):
        Pipeline([whole, other], None)


def test_image_tags_defaults():
    tags = ImageTags()

    assert (tags.tags, tags.crop, tags.crop_source, tags.errors) == ({}, None, "none", {})
    assert HeadResult("t", "a", 0.9, {"a": 0.9, "b": 0.1}, 0.8).margin == 0.8
