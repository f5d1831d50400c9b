import copy
import json

import pytest
from onnx import TensorProto

from classifier.contract import (
    ClassifierContract,
    ContractError,
    DetectorContract,
    HeadSpec,
    check_contract_against_model,
    contract_to_json,
    parse_contract,
)
from classifier.runtime import make_session
from tests.classifier.onnx_builders import (
    classifier_contract,
    constant_detector,
    detector_contract,
    mean_classifier,
    two_input_classifier,
    yolo_output,
)

SHOPPING = {
    "name": "chrome-shopping-intent",
    "kind": "classifier",
    "input": {
        "name": "normalized_input_image_tensor",
        "layout": "NHWC",
        "size": [224, 224],
        "dtype": "float32",
        "channels": "RGB",
        "scale": 0.00392156862745098,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "resize": "stretch",
    },
    "crop": "none",
    "heads": [
        {
            "output": "shopping_intent",
            "task": "intent",
            "activation": "softmax",
            "labels": [
                "No Shopping Intent",
                "Fashion & Style",
                "Home & Garden",
                "Tools, Vehicles, Electronics & Appliances",
            ],
        },
        {"output": "sensitive", "task": "sensitive", "activation": "softmax", "labels": ["not sensitive", "sensitive"]},
    ],
}

DETECTOR = {
    "name": "starter-vehicle-detector",
    "kind": "detector",
    "input": {
        "name": "images",
        "layout": "NCHW",
        "size": [192, 192],
        "dtype": "float32",
        "channels": "RGB",
        "scale": 0.00392156862745098,
        "mean": [0, 0, 0],
        "std": [1, 1, 1],
        "resize": "letterbox",
    },
    "output": {"name": "output0", "format": "yolov8"},
    "classes": ["car", "motorcycle", "bus", "truck"],
    "vehicle_classes": [0, 1, 2, 3],
    "confidence": 0.25,
    "iou": 0.45,
    "margin": 0.08,
}


DELETE = object()


def with_changes(base: dict, *path_and_value) -> dict:
    """A deep copy of base with data[path...] = value; value DELETE removes the key."""
    data = copy.deepcopy(base)
    *path, value = path_and_value
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def test_parses_the_classifier_example():
    contract = parse_contract(SHOPPING)

    assert isinstance(contract, ClassifierContract)
    assert contract.kind == "classifier"
    assert contract.input.height == 224
    assert contract.input.width == 224
    assert contract.input.mean == (0.5, 0.5, 0.5)
    assert contract.crop == "none"
    assert contract.tasks() == ("intent", "sensitive")
    assert contract.heads[1] == HeadSpec(
        output="sensitive", task="sensitive", activation="softmax", labels=("not sensitive", "sensitive")
    )


def test_parses_the_detector_example_from_json_bytes():
    contract = parse_contract(json.dumps(DETECTOR).encode())

    assert isinstance(contract, DetectorContract)
    assert contract.kind == "detector"
    assert contract.output == "output0"
    assert contract.format == "yolov8"
    assert contract.classes == ("car", "motorcycle", "bus", "truck")
    assert contract.vehicle_classes == (0, 1, 2, 3)
    assert contract.margin == 0.08
    assert contract.input.resize == "letterbox"


def test_defaults():
    data = with_changes(SHOPPING, "kind", DELETE)
    del data["crop"]
    del data["input"]["resize"]
    del data["input"]["channels"]
    del data["input"]["dtype"]
    contract = parse_contract(data)

    assert contract.kind == "classifier"
    assert isinstance(contract, ClassifierContract)
    assert contract.crop == "none"
    assert contract.input.resize == "stretch"
    assert contract.input.channels == "RGB"
    assert contract.input.dtype == "float32"


def test_uint8_input_takes_raw_pixels():
    data = with_changes(SHOPPING, "input", {"name": "x", "layout": "NHWC", "size": [224, 224], "dtype": "uint8"})
    contract = parse_contract(data)

    assert contract.input.scale == 1.0
    assert contract.input.mean == (0.0, 0.0, 0.0)
    assert contract.input.std == (1.0, 1.0, 1.0)
    assert "scale" not in contract_to_json(contract)["input"]


@pytest.mark.parametrize("data", [SHOPPING, DETECTOR])
def test_json_round_trip(data):
    contract = parse_contract(data)

    assert parse_contract(json.dumps(contract_to_json(contract))) == contract


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "contract is not valid JSON"),
        ([1, 2], "contract must be a JSON object, got a list"),
        (with_changes(SHOPPING, "name", DELETE), "name must be a non-empty string, got null"),
        (with_changes(SHOPPING, "kind", "segmenter"), "kind must be one of classifier, detector, got 'segmenter'"),
        (with_changes(SHOPPING, "heads", DELETE), "contract: missing field 'heads'"),
        (with_changes(SHOPPING, "input", "name", DELETE), "input: missing field 'name'"),
        (with_changes(SHOPPING, "input", "scale", DELETE), "input: missing field 'scale'"),
        (with_changes(SHOPPING, "input", "layout", "CHW"), "input.layout must be one of NCHW, NHWC, got 'CHW'"),
        (with_changes(SHOPPING, "input", "size", [224]), "input.size must be [height, width], got [224]"),
        (with_changes(SHOPPING, "input", "size", [224, 0]), "input.size width must be a positive integer, got 0"),
        (with_changes(SHOPPING, "input", "size", [224.0, 224]), "input.size height must be a positive integer"),
        (with_changes(SHOPPING, "input", "dtype", "float16"), "input.dtype must be one of float32, uint8"),
        (with_changes(SHOPPING, "input", "channels", "RGBA"), "input.channels must be one of RGB, BGR"),
        (with_changes(SHOPPING, "input", "resize", "crop"), "input.resize must be one of stretch, letterbox"),
        (with_changes(SHOPPING, "input", "mean", [0.5, 0.5]), "input.mean must be a list of 3 numbers"),
        (with_changes(SHOPPING, "input", "std", [0.5, 0, 0.5]), "input.std values must be > 0"),
        (with_changes(SHOPPING, "input", "scale", "1/255"), "input.scale must be a finite number, got '1/255'"),
        (with_changes(SHOPPING, "input", "dtype", "uint8"), "input: a uint8 input takes raw pixels, remove scale"),
        (with_changes(SHOPPING, "input", "colour", "RGB"), "input: unknown field 'colour'"),
        (with_changes(SHOPPING, "crop", "face"), "crop must be one of none, vehicle, got 'face'"),
        (with_changes(SHOPPING, "heads", []), "heads must be a non-empty list"),
        (with_changes(SHOPPING, "heads", 0, "activation", "relu"), "head 'intent': activation must be one of"),
        (with_changes(SHOPPING, "heads", 0, "activation", DELETE), "heads[0]: missing field 'activation'"),
        (with_changes(SHOPPING, "heads", 1, "labels", ["only"]), "head 'sensitive': labels must be a list of at"),
        (with_changes(SHOPPING, "heads", 1, "labels", ["a", "a"]), "head 'sensitive': duplicate label 'a'"),
        (with_changes(SHOPPING, "heads", 1, "task", "intent"), "heads: task 'intent' used twice"),
        (with_changes(SHOPPING, "heads", 1, "output", "shopping_intent"), "heads: output 'shopping_intent' used twice"),
        (with_changes(DETECTOR, "output", "format", "yolov5"), "output.format must be one of yolov8"),
        (with_changes(DETECTOR, "vehicle_classes", []), "vehicle_classes must be a non-empty list"),
        (with_changes(DETECTOR, "vehicle_classes", [0, 4]), "vehicle_classes: class id 4 is out of range for 4"),
        (with_changes(DETECTOR, "vehicle_classes", [1, 1]), "vehicle_classes: class id 1 listed twice"),
        (with_changes(DETECTOR, "confidence", 1.5), "confidence must be between 0 and 1"),
        (with_changes(DETECTOR, "margin", -0.1), "margin must be in [0, 1]"),
        (with_changes(DETECTOR, "crop", "vehicle"), "contract: unknown field 'crop'"),
    ],
)
def test_parse_refuses(data, message):
    with pytest.raises(ContractError) as raised:
        parse_contract(data)

    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


# --- against real graphs ---------------------------------------------------------------------------------


def test_accepts_a_correct_two_head_nhwc_model():
    contract = parse_contract(classifier_contract(layout="NHWC", size=(8, 6)))

    check_contract_against_model(contract, mean_classifier(layout="NHWC", size=(8, 6)))


def test_accepts_an_nchw_model_from_a_path_and_a_session(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(mean_classifier(layout="NCHW", size=(4, 5)))
    contract = parse_contract(classifier_contract(layout="NCHW", size=(4, 5)))

    check_contract_against_model(contract, path)
    check_contract_against_model(contract, str(path))
    check_contract_against_model(contract, make_session(path))


def test_accepts_a_fixed_batch_of_one():
    contract = parse_contract(classifier_contract())

    check_contract_against_model(contract, mean_classifier(batch=1))


def test_accepts_a_uint8_model():
    contract = parse_contract(classifier_contract(dtype="uint8"))

    check_contract_against_model(contract, mean_classifier(input_type=TensorProto.UINT8))


def refusal(contract: dict, model: bytes) -> str:
    with pytest.raises(ContractError) as raised:
        check_contract_against_model(parse_contract(contract), model)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_refuses_a_wrong_input_name():
    message = refusal(classifier_contract(input_name="image"), mean_classifier(input_name="pixels"))

    assert message == "input 'image' not found in the model (its inputs: pixels)"


def test_refuses_a_second_required_input():
    message = refusal(classifier_contract(), two_input_classifier())

    assert message == "model has other required inputs besides 'pixels': extra"


def test_refuses_a_wrong_rank():
    message = refusal(classifier_contract(), mean_classifier(input_shape=["N", 8, 8]))

    assert message == "input 'pixels' has rank 3 ([?, 8, 8]), expected 4 (NHWC)"


def test_refuses_a_wrong_static_size():
    message = refusal(classifier_contract(size=(8, 8)), mean_classifier(size=(8, 6)))

    assert message == (
        "input 'pixels' has shape [?, 8, 6, 3] but the contract (NHWC, 8x8, 3 channels) expects [?, 8, 8, 3]"
    )


def test_refuses_a_wrong_layout():
    message = refusal(classifier_contract(layout="NHWC"), mean_classifier(layout="NCHW"))

    assert message == (
        "input 'pixels' has shape [?, 3, 8, 8] but the contract (NHWC, 8x8, 3 channels) expects [?, 8, 8, 3]"
    )


def test_refuses_dynamic_height_and_width():
    message = refusal(classifier_contract(), mean_classifier(input_shape=["N", "H", "W", 3]))

    assert message == "input 'pixels' has dynamic dimensions [?, ?, ?, 3]: export it with static sizes [?, 8, 8, 3]"


def test_refuses_a_fixed_batch_above_one():
    message = refusal(classifier_contract(), mean_classifier(batch=4))

    assert message.startswith("input 'pixels' has a fixed batch of 4")


def test_refuses_a_wrong_dtype():
    message = refusal(classifier_contract(dtype="float32"), mean_classifier(input_type=TensorProto.UINT8))

    assert message == "input 'pixels' is tensor(uint8) but the contract says float32"


def test_refuses_a_missing_output():
    contract = with_changes(classifier_contract(), "heads", 0, "output", "colour")

    message = refusal(contract, mean_classifier())

    assert message == "head 'color': output 'colour' not found in the model (its outputs: mean, color, sensitive)"


def test_refuses_a_label_count_that_is_not_the_output_width():
    contract = classifier_contract(color_labels=("red", "green", "blue", "white"))

    message = refusal(contract, mean_classifier(color_width=3))

    assert message == "head 'color': output 'color' has 3 values but 4 labels"


def test_detector_accepts_matching_classes():
    output = yolo_output([(16, 16, 8, 8, 2, 0.9)], classes=4)

    check_contract_against_model(
        parse_contract(detector_contract(classes=["car", "motorcycle", "bus", "truck"], vehicle_classes=[0, 2])),
        constant_detector(output),
    )
    check_contract_against_model(parse_contract(detector_contract(vehicle_classes=[3])), constant_detector(output))


def test_detector_refuses_a_class_count_mismatch():
    output = yolo_output([(16, 16, 8, 8, 0, 0.9)], classes=4)

    message = refusal(detector_contract(classes=["car", "bus"], vehicle_classes=[0]), constant_detector(output))

    assert message == "detector: output 'output0' has 8 rows (4 + 4 classes) but the contract names 2 classes"


def test_detector_refuses_vehicle_classes_beyond_the_output():
    output = yolo_output([(16, 16, 8, 8, 0, 0.9)], classes=4)

    message = refusal(detector_contract(vehicle_classes=[2, 7]), constant_detector(output))

    assert message == "detector: output 'output0' has 8 rows (4 + 4 classes) but vehicle_classes needs class id 7"


def test_detector_refuses_a_missing_output_and_a_wrong_rank():
    output = yolo_output([(16, 16, 8, 8, 0, 0.9)], classes=2)

    assert refusal(detector_contract(), constant_detector(output, output_name="boxes_out")) == (
        "detector: output 'output0' not found in the model (its outputs: boxes_out)"
    )
    assert refusal(detector_contract(), constant_detector(output[0])) == (
        "detector: output 'output0' has shape [6, 1], expected yolov8 [1, 4+classes, boxes]"
    )


def test_refuses_bytes_that_are_not_a_model():
    with pytest.raises(ContractError, match=r"^onnxruntime cannot load the model"):
        check_contract_against_model(parse_contract(classifier_contract()), b"not an onnx file")


def test_dry_run_catches_a_width_the_graph_does_not_declare():
    contract = classifier_contract(color_labels=("red", "green", "blue", "white"))

    message = refusal(contract, mean_classifier(color_width=3, dynamic_outputs=True))

    assert message == "head 'color': output 'color' has 3 values but 4 labels"
