"""Tiny real ONNX graphs (built with onnx.helper) with outputs the tests can compute by hand."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8

# Two heads computed from the per-channel mean of the (normalised) input tensor:
# "color" = mean @ COLOR_WEIGHTS (logits, 3 values), "sensitive" = softmax(mean @ SENSITIVE_WEIGHTS) (2 values).
COLOR_WEIGHTS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
SENSITIVE_WEIGHTS = np.array([[2.0, -1.0], [0.5, 0.5], [-1.0, 2.0]], dtype=np.float32)


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _input_shape(layout: str, height: int, width: int, batch: int | str = "N") -> list[int | str]:
    return [batch, 3, height, width] if layout == "NCHW" else [batch, height, width, 3]


def mean_classifier(
    *,
    layout: str = "NHWC",
    size: tuple[int, int] = (8, 8),
    input_name: str = "pixels",
    input_type: int = TensorProto.FLOAT,
    batch: int | str = "N",
    color_width: int = 3,
    sensitive_width: int = 2,
    input_shape: list[int | str] | None = None,
    dynamic_outputs: bool = False,
    color_gain: float = 1.0,
) -> bytes:
    """Outputs "mean" ([N, 3] channel means), "color" ([N, color_width] logits) and "sensitive" (probabilities).

    With color_width == 3 the color logits equal the channel means (identity weights) times `color_gain` (20 makes
    a plain color's tag confident, over 0.9). dynamic_outputs declares the head widths as symbolic, as some
    exporters do, so only running the graph reveals them.
    """
    height, width = size
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    shape = input_shape if input_shape is not None else _input_shape(layout, height, width, batch)
    color_weights = np.zeros((3, color_width), dtype=np.float32)
    color_weights[:, : min(3, color_width)] = color_gain * COLOR_WEIGHTS[:, : min(3, color_width)]
    sensitive_weights = np.zeros((3, sensitive_width), dtype=np.float32)
    sensitive_weights[:, : min(2, sensitive_width)] = SENSITIVE_WEIGHTS[:, : min(2, sensitive_width)]
    nodes = []
    source = input_name
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [input_name], ["as_float"], to=TensorProto.FLOAT))
        source = "as_float"
    nodes += [
        helper.make_node("ReduceMean", [source], ["mean"], axes=axes, keepdims=0),
        helper.make_node("MatMul", ["mean", "color_weights"], ["color"]),
        helper.make_node("MatMul", ["mean", "sensitive_weights"], ["sensitive_logits"]),
        helper.make_node("Softmax", ["sensitive_logits"], ["sensitive"], axis=-1),
    ]
    batch_dim = shape[0] if shape else "N"
    color_dim: int | str = "C" if dynamic_outputs else color_width
    sensitive_dim: int | str = "S" if dynamic_outputs else sensitive_width
    graph = helper.make_graph(
        nodes,
        "mean_classifier",
        [helper.make_tensor_value_info(input_name, input_type, shape)],
        [
            helper.make_tensor_value_info("mean", TensorProto.FLOAT, [batch_dim, 3]),
            helper.make_tensor_value_info("color", TensorProto.FLOAT, [batch_dim, color_dim]),
            helper.make_tensor_value_info("sensitive", TensorProto.FLOAT, [batch_dim, sensitive_dim]),
        ],
        initializer=[
            numpy_helper.from_array(color_weights, "color_weights"),
            numpy_helper.from_array(sensitive_weights, "sensitive_weights"),
        ],
    )
    return _model(graph)


def two_input_classifier(*, size: tuple[int, int] = (8, 8)) -> bytes:
    """A classifier that also needs a second input, "extra" ([N, 3] added to the mean)."""
    height, width = size
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixels"], ["raw_mean"], axes=[1, 2], keepdims=0),
            helper.make_node("Add", ["raw_mean", "extra"], ["mean"]),
            helper.make_node("MatMul", ["mean", "color_weights"], ["color"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", height, width, 3]),
            helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["N", 3]),
        ],
        [helper.make_tensor_value_info("color", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(COLOR_WEIGHTS, "color_weights")],
    )
    return _model(graph)


def yolo_output(boxes: list[tuple[float, float, float, float, int, float]], *, classes: int) -> np.ndarray:
    """A [1, 4 + classes, N] yolov8 output from (cx, cy, w, h, class_id, score) rows."""
    output = np.zeros((1, 4 + classes, len(boxes)), dtype=np.float32)
    for column, (cx, cy, w, h, class_id, score) in enumerate(boxes):
        output[0, :4, column] = (cx, cy, w, h)
        output[0, 4 + class_id, column] = score
    return output


def constant_detector(
    output: np.ndarray,
    *,
    size: tuple[int, int] = (32, 32),
    input_name: str = "images",
    output_name: str = "output0",
    layout: str = "NCHW",
) -> bytes:
    """A detector whose output is `output` ([1, 4+C, N]) plus 0 x the input's sum (so the input is used)."""
    height, width = size
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", [input_name, "all_axes"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["boxes", "nothing"], [output_name]),
        ],
        "constant_detector",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, _input_shape(layout, height, width, batch=1))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(output.shape))],
        initializer=[
            numpy_helper.from_array(output.astype(np.float32), "boxes"),
            numpy_helper.from_array(np.array([0, 1, 2, 3], dtype=np.int64), "all_axes"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        ],
    )
    return _model(graph)


def classifier_contract(
    *,
    layout: str = "NHWC",
    size: tuple[int, int] = (8, 8),
    crop: str = "none",
    name: str = "tiny",
    input_name: str = "pixels",
    color_labels: tuple[str, ...] = ("red", "green", "blue"),
    dtype: str = "float32",
    with_mean_head: bool = False,
) -> dict:
    """A contract for `mean_classifier`: pixels scaled to 0-1, no mean/std, so the heads see channel means."""
    spec: dict = {"name": input_name, "layout": layout, "size": list(size), "dtype": dtype, "channels": "RGB"}
    if dtype == "float32":
        spec.update(scale=1 / 255, mean=[0, 0, 0], std=[1, 1, 1])
    heads = [
        {"output": "color", "task": "color", "activation": "softmax", "labels": list(color_labels)},
        {"output": "sensitive", "task": "sensitive", "activation": "none", "labels": ["not sensitive", "sensitive"]},
    ]
    if with_mean_head:
        heads.append({"output": "mean", "task": "mean", "activation": "none", "labels": ["r", "g", "b"]})
    return {"name": name, "kind": "classifier", "input": spec, "crop": crop, "heads": heads}


def detector_contract(
    *,
    size: tuple[int, int] = (32, 32),
    classes: list[str] | None = None,
    vehicle_classes: list[int] | None = None,
    resize: str = "letterbox",
    margin: float = 0.0,
) -> dict:
    contract: dict = {
        "name": "tiny-detector",
        "kind": "detector",
        "input": {
            "name": "images",
            "layout": "NCHW",
            "size": list(size),
            "dtype": "float32",
            "channels": "RGB",
            "scale": 1 / 255,
            "mean": [0, 0, 0],
            "std": [1, 1, 1],
            "resize": resize,
        },
        "output": {"name": "output0", "format": "yolov8"},
        "vehicle_classes": vehicle_classes if vehicle_classes is not None else [0, 1],
        "confidence": 0.25,
        "iou": 0.45,
        "margin": margin,
    }
    if classes is not None:
        contract["classes"] = classes
    return contract


IMAGE_TYPE_LABELS = ("Dealer", "Stock", "Placeholder")


def region_classifier(*, size: int = 32, region: int = 8, gain: float = 10.0, stock: float = 5.0) -> bytes:
    """An image_type classifier whose answer depends only on the top-left `region` x `region` pixels: logits
    (Dealer, Stock, Placeholder) = (0, stock, gain x mean brightness of that region, 0-1). A bright corner reads
    Placeholder; hide it and the model says Stock. Input "pixels" NHWC float32 [N, size, size, 3]."""
    graph = helper.make_graph(
        [
            helper.make_node("Slice", ["pixels", "starts", "ends", "axes"], ["corner"]),
            helper.make_node("ReduceMean", ["corner"], ["brightness"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Unsqueeze", ["brightness", "last_axis"], ["brightness_column"]),
            helper.make_node("MatMul", ["brightness_column", "weights"], ["weighted"]),
            helper.make_node("Add", ["weighted", "bias"], ["image_type"]),
        ],
        "region_classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("image_type", TensorProto.FLOAT, ["N", 3])],
        initializer=[
            numpy_helper.from_array(np.array([0, 0, 0], dtype=np.int64), "starts"),
            numpy_helper.from_array(np.array([region, region, 3], dtype=np.int64), "ends"),
            numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "last_axis"),
            numpy_helper.from_array(np.array([[0.0, 0.0, gain]], dtype=np.float32), "weights"),
            numpy_helper.from_array(np.array([0.0, stock, 0.0], dtype=np.float32), "bias"),
        ],
    )
    return _model(graph)


def region_contract(*, size: int = 32, crop: str = "none", resize: str = "stretch", name: str = "region") -> dict:
    """The contract of `region_classifier`: pixels scaled to 0-1, one image_type head of logits."""
    return {
        "name": name,
        "kind": "classifier",
        "input": {
            "name": "pixels", "layout": "NHWC", "size": [size, size], "dtype": "float32", "channels": "RGB",
            "scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1], "resize": resize,
        },
        "crop": crop,
        "heads": [{"output": "image_type", "task": "image_type", "activation": "softmax",
                   "labels": list(IMAGE_TYPE_LABELS)}],
    }  # fmt: skip


def embedding_classifier(*, size: int = 16, hidden: int = 8, seed: int = 0) -> bytes:
    """An image_type classifier with a refittable head: NHWC pixels -> ReduceMean (the 3 channel means) ->
    Gemm "embedding" (3 -> hidden) -> Relu ("features") -> Gemm "image_type" (hidden -> 3 logits, with a bias),
    so classifier.training.refit.find_head finds a real linear layer on penultimate features. Random weights
    (fixed by `seed`): it tags colors somewhat arbitrarily, which fixes can then correct."""
    rng = np.random.default_rng(seed)
    embedding = rng.normal(0.0, 2.0, size=(3, hidden)).astype(np.float32)
    embedding_bias = rng.normal(0.0, 0.3, size=(hidden,)).astype(np.float32)
    head = rng.normal(0.0, 1.0, size=(hidden, 3)).astype(np.float32)
    head_bias = np.zeros(3, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixels"], ["means"], axes=[1, 2], keepdims=0),
            helper.make_node("Gemm", ["means", "embedding_weight", "embedding_bias"], ["embedding"]),
            helper.make_node("Relu", ["embedding"], ["features"]),
            helper.make_node("Gemm", ["features", "head_weight", "head_bias"], ["image_type"]),
        ],
        "embedding_classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("image_type", TensorProto.FLOAT, ["N", 3])],
        initializer=[
            numpy_helper.from_array(embedding, "embedding_weight"),
            numpy_helper.from_array(embedding_bias, "embedding_bias"),
            numpy_helper.from_array(head, "head_weight"),
            numpy_helper.from_array(head_bias, "head_bias"),
        ],
    )
    return _model(graph)
