"""The JSON contract that says how to run an ONNX model, and its check against the graph.

A contract declares everything needed to feed a model and read its outputs (input name, layout, size,
dtype, scaling, channel order, resize mode, heads or detector output), so any ONNX file trained elsewhere
can be registered without code changes. `parse_contract` checks the JSON's shape and types;
`check_contract_against_model` loads the graph and checks the contract against it, including one dry run.

Conventions: `size` is [height, width]; `mean` and `std` are given in the model's tensor channel order
(for a BGR model, mean[0] applies to the blue channel); pixels are multiplied by `scale` first, then
`(x - mean) / std`. A uint8 input takes raw 0-255 pixels and accepts no scale/mean/std.

No Django import here: the trainer and command-line tools use this module too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.errors import ApplicationError

if TYPE_CHECKING:
    import onnxruntime

LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "uint8")
CHANNEL_ORDERS = ("RGB", "BGR")
RESIZE_MODES = ("stretch", "letterbox")
CROP_MODES = ("none", "vehicle")
ACTIVATIONS = ("softmax", "sigmoid", "none")
DETECTOR_FORMATS = ("yolov8",)

# onnxruntime's type names for the dtypes a contract can declare.
_ORT_INPUT_TYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)"}
_ORT_FLOAT_OUTPUTS = ("tensor(float)", "tensor(double)", "tensor(float16)")


class ContractError(ApplicationError, ValueError):
    """A contract is malformed or does not match its model. The message is one line, for humans."""

    code = "contract_invalid"


@dataclass(frozen=True)
class InputSpec:
    name: str
    layout: Literal["NCHW", "NHWC"]
    height: int
    width: int
    dtype: Literal["float32", "uint8"]
    channels: Literal["RGB", "BGR"]
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: Literal["stretch", "letterbox"]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the PIL order."""
        return (self.width, self.height)

    def shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        if self.layout == "NCHW":
            return (batch, 3, self.height, self.width)
        return (batch, self.height, self.width, 3)


@dataclass(frozen=True)
class HeadSpec:
    output: str
    task: str
    activation: Literal["softmax", "sigmoid", "none"]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ClassifierContract:
    name: str
    input: InputSpec
    crop: Literal["none", "vehicle"]
    heads: tuple[HeadSpec, ...]
    kind: Literal["classifier"] = "classifier"

    def tasks(self) -> tuple[str, ...]:
        return tuple(head.task for head in self.heads)


# The kinds of vehicle a crop can hold (issue 20): what exports, evaluations and the guard slice by. A detector's
# classes map onto them by name (a COCO detector says car, motorcycle, bus and truck), or by the contract's `kinds`.
VEHICLE_KINDS = ("car", "van_suv", "truck", "bus_rv", "motorcycle")
KIND_OF_CLASS = {
    "car": "car", "sedan": "car", "hatchback": "car", "coupe": "car",
    "van": "van_suv", "suv": "van_suv", "minivan": "van_suv",
    "truck": "truck", "pickup": "truck", "pickup truck": "truck", "lorry": "truck",
    "bus": "bus_rv", "rv": "bus_rv", "caravan": "bus_rv", "motorhome": "bus_rv", "camper": "bus_rv",
    "motorcycle": "motorcycle", "motorbike": "motorcycle", "scooter": "motorcycle",
}  # fmt: skip


@dataclass(frozen=True)
class DetectorContract:
    name: str
    input: InputSpec
    output: str
    format: Literal["yolov8"]
    classes: tuple[str, ...]
    vehicle_classes: tuple[int, ...]
    confidence: float
    iou: float
    margin: float
    kind: Literal["detector"] = "detector"
    # (class id, vehicle kind) of the vehicle classes whose kind is known: given as `kinds` ({class name: kind}) or
    # read from the class names (KIND_OF_CLASS). A class without one ("vehicle") says no kind.
    kinds: tuple[tuple[int, str], ...] = ()

    def kind_of(self, class_id: int) -> str:
        """The vehicle kind of a detected class ("" when the contract does not say)."""
        return dict(self.kinds).get(class_id, "")


Contract = ClassifierContract | DetectorContract


# --- parsing -----------------------------------------------------------------------------------------------


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ContractError(f"{where} must be a JSON object, got {_type_name(value)}")
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _check_keys(obj: Mapping[str, Any], where: str, *, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    missing = [key for key in required if key not in obj]
    if missing:
        raise ContractError(f"{where}: missing field {', '.join(repr(key) for key in missing)}")
    allowed = set(required) | set(optional)
    unknown = sorted(str(key) for key in obj if key not in allowed)
    if unknown:
        raise ContractError(
            f"{where}: unknown field {', '.join(repr(key) for key in unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ContractError(f"{where} must be a non-empty string, got {_type_name(value)}")
    return value


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> Any:
    if value not in choices:
        raise ContractError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ContractError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ContractError(f"{where} must be a positive integer, got {value!r}")
    return value


def _triple(value: Any, where: str, *, positive: bool = False) -> tuple[float, float, float]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ContractError(f"{where} must be a list of 3 numbers (one per channel), got {value!r}")
    numbers = tuple(_number(item, where) for item in value)
    if positive and any(item <= 0 for item in numbers):
        raise ContractError(f"{where} values must be > 0, got {value!r}")
    return (numbers[0], numbers[1], numbers[2])


def _parse_input(raw: Any) -> InputSpec:
    obj = _object(raw, "input")
    dtype = _choice(obj.get("dtype", "float32"), "input.dtype", DTYPES)
    normalisation = ("scale", "mean", "std")
    _check_keys(
        obj,
        "input",
        required=("name", "layout", "size", *(normalisation if dtype == "float32" else ())),
        optional=("dtype", "channels", "resize", *(normalisation if dtype == "uint8" else ())),
    )
    if dtype == "uint8":
        # A uint8 model takes raw pixels: anything else declared would be silently ignored.
        given = [key for key in normalisation if key in obj]
        if given:
            raise ContractError(f"input: a uint8 input takes raw pixels, remove {', '.join(given)}")
        scale, mean, std = 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        scale = _number(obj["scale"], "input.scale")
        if scale <= 0:
            raise ContractError(f"input.scale must be > 0, got {obj['scale']!r}")
        mean = _triple(obj["mean"], "input.mean")
        std = _triple(obj["std"], "input.std", positive=True)
    size = obj["size"]
    if not isinstance(size, list | tuple) or len(size) != 2:
        raise ContractError(f"input.size must be [height, width], got {size!r}")
    return InputSpec(
        name=_string(obj["name"], "input.name"),
        layout=_choice(obj["layout"], "input.layout", LAYOUTS),
        height=_positive_int(size[0], "input.size height"),
        width=_positive_int(size[1], "input.size width"),
        dtype=dtype,
        channels=_choice(obj.get("channels", "RGB"), "input.channels", CHANNEL_ORDERS),
        scale=scale,
        mean=mean,
        std=std,
        resize=_choice(obj.get("resize", "stretch"), "input.resize", RESIZE_MODES),
    )


def _parse_head(raw: Any, index: int) -> HeadSpec:
    obj = _object(raw, f"heads[{index}]")
    _check_keys(obj, f"heads[{index}]", required=("output", "task", "activation", "labels"), optional=())
    task = _string(obj["task"], f"heads[{index}].task")
    where = f"head {task!r}"
    labels = obj["labels"]
    if not isinstance(labels, list | tuple) or len(labels) < 2:
        raise ContractError(f"{where}: labels must be a list of at least 2 strings, got {labels!r}")
    labels = tuple(_string(label, f"{where}: label") for label in labels)
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ContractError(f"{where}: duplicate label {', '.join(repr(label) for label in duplicates)}")
    return HeadSpec(
        output=_string(obj["output"], f"{where}: output"),
        task=task,
        activation=_choice(obj["activation"], f"{where}: activation", ACTIVATIONS),
        labels=labels,
    )


def _parse_classifier(obj: Mapping[str, Any], name: str) -> ClassifierContract:
    _check_keys(obj, "contract", required=("name", "input", "heads"), optional=("kind", "crop"))
    heads_raw = obj["heads"]
    if not isinstance(heads_raw, list | tuple) or not heads_raw:
        raise ContractError("heads must be a non-empty list")
    heads = tuple(_parse_head(head, index) for index, head in enumerate(heads_raw))
    for attribute in ("task", "output"):
        values = [getattr(head, attribute) for head in heads]
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise ContractError(f"heads: {attribute} {', '.join(repr(value) for value in repeated)} used twice")
    return ClassifierContract(
        name=name,
        input=_parse_input(obj["input"]),
        crop=_choice(obj.get("crop", "none"), "crop", CROP_MODES),
        heads=heads,
    )


def _parse_detector(obj: Mapping[str, Any], name: str) -> DetectorContract:
    _check_keys(
        obj,
        "contract",
        required=("name", "kind", "input", "output", "vehicle_classes"),
        optional=("classes", "confidence", "iou", "margin", "kinds"),
    )
    output = _object(obj["output"], "output")
    _check_keys(output, "output", required=("name",), optional=("format",))
    classes_raw = obj.get("classes", [])
    if not isinstance(classes_raw, list | tuple):
        raise ContractError(f"classes must be a list of strings, got {_type_name(classes_raw)}")
    classes = tuple(_string(label, "classes entry") for label in classes_raw)
    vehicle_raw = obj["vehicle_classes"]
    if not isinstance(vehicle_raw, list | tuple) or not vehicle_raw:
        raise ContractError(f"vehicle_classes must be a non-empty list of class ids, got {vehicle_raw!r}")
    vehicle_classes: list[int] = []
    for value in vehicle_raw:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ContractError(f"vehicle_classes must hold class ids >= 0, got {value!r}")
        if classes and value >= len(classes):
            raise ContractError(f"vehicle_classes: class id {value} is out of range for {len(classes)} classes")
        if value in vehicle_classes:
            raise ContractError(f"vehicle_classes: class id {value} listed twice")
        vehicle_classes.append(value)
    confidence = _number(obj.get("confidence", 0.25), "confidence")
    if not 0 < confidence < 1:
        raise ContractError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    iou = _number(obj.get("iou", 0.45), "iou")
    if not 0 < iou <= 1:
        raise ContractError(f"iou must be in (0, 1], got {iou!r}")
    margin = _number(obj.get("margin", 0.0), "margin")
    if not 0 <= margin <= 1:
        raise ContractError(f"margin must be in [0, 1] (a fraction of the box size), got {margin!r}")
    kinds_raw = obj.get("kinds", {})
    if not isinstance(kinds_raw, Mapping):
        raise ContractError(f"kinds must map class names to vehicle kinds, got {_type_name(kinds_raw)}")
    for class_name, kind in kinds_raw.items():
        if class_name not in classes:
            raise ContractError(f"kinds: {class_name!r} is not one of the classes")
        if kind not in VEHICLE_KINDS:
            raise ContractError(f"kinds: {kind!r} is not a vehicle kind ({', '.join(VEHICLE_KINDS)})")
    kinds = []
    for class_id in vehicle_classes:
        class_name = classes[class_id] if class_id < len(classes) else ""
        kind = kinds_raw.get(class_name) or KIND_OF_CLASS.get(class_name.strip().lower(), "")
        if kind:
            kinds.append((class_id, kind))
    return DetectorContract(
        name=name,
        input=_parse_input(obj["input"]),
        output=_string(output["name"], "output.name"),
        format=_choice(output.get("format", "yolov8"), "output.format", DETECTOR_FORMATS),
        classes=classes,
        vehicle_classes=tuple(vehicle_classes),
        confidence=confidence,
        iou=iou,
        margin=margin,
        kinds=tuple(kinds),
    )


def parse_contract(data: Mapping[str, Any] | str | bytes) -> Contract:
    """Parse and check a contract (a dict or its JSON text). Unknown fields are refused, to catch typos."""
    if isinstance(data, str | bytes | bytearray):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise ContractError(f"contract is not valid JSON: {error}") from None
    obj = _object(data, "contract")
    name = _string(obj.get("name"), "name")
    kind = _choice(obj.get("kind", "classifier"), "kind", ("classifier", "detector"))
    if kind == "detector":
        return _parse_detector(obj, name)
    return _parse_classifier(obj, name)


def contract_to_json(contract: Contract) -> dict[str, Any]:
    """The contract as a JSON-ready dict; `parse_contract` reads it back to an equal contract."""
    spec = contract.input
    input_json: dict[str, Any] = {
        "name": spec.name,
        "layout": spec.layout,
        "size": [spec.height, spec.width],
        "dtype": spec.dtype,
        "channels": spec.channels,
        "resize": spec.resize,
    }
    if spec.dtype == "float32":
        input_json.update(scale=spec.scale, mean=list(spec.mean), std=list(spec.std))
    if isinstance(contract, DetectorContract):
        return {
            "name": contract.name,
            "kind": "detector",
            "input": input_json,
            "output": {"name": contract.output, "format": contract.format},
            "classes": list(contract.classes),
            "vehicle_classes": list(contract.vehicle_classes),
            "confidence": contract.confidence,
            "iou": contract.iou,
            "margin": contract.margin,
            **({"kinds": {contract.classes[i]: kind for i, kind in contract.kinds}} if contract.kinds else {}),
        }
    return {
        "name": contract.name,
        "kind": "classifier",
        "input": input_json,
        "crop": contract.crop,
        "heads": [
            {"output": head.output, "task": head.task, "activation": head.activation, "labels": list(head.labels)}
            for head in contract.heads
        ],
    }


# --- checking against the graph ---------------------------------------------------------------------------


def _dims(shape: Any) -> list[int | None]:
    """onnxruntime shapes hold ints for static dims and strings or None for dynamic ones."""
    return [dim if isinstance(dim, int) and dim >= 0 else None for dim in shape]


def _show(shape: list[int | None]) -> str:
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in shape) + "]"


def _check_input(session: onnxruntime.InferenceSession, spec: InputSpec) -> None:
    inputs = session.get_inputs()
    names = [node.name for node in inputs]
    if spec.name not in names:
        raise ContractError(f"input {spec.name!r} not found in the model (its inputs: {', '.join(names) or 'none'})")
    if len(inputs) > 1:
        others = ", ".join(name for name in names if name != spec.name)
        raise ContractError(f"model has other required inputs besides {spec.name!r}: {others}")
    node = inputs[0]
    if node.type != _ORT_INPUT_TYPES[spec.dtype]:
        raise ContractError(f"input {spec.name!r} is {node.type} but the contract says {spec.dtype}")
    dims = _dims(node.shape)
    if len(dims) != 4:
        raise ContractError(f"input {spec.name!r} has rank {len(dims)} ({_show(dims)}), expected 4 ({spec.layout})")
    expected = list(spec.shape(batch=1))
    if dims[0] is not None and dims[0] != 1:
        raise ContractError(
            f"input {spec.name!r} has a fixed batch of {dims[0]}: export it with a dynamic batch dimension or batch 1"
        )
    if dims[1:] != expected[1:]:
        want = _show([None, *expected[1:]])
        if any(dim is None for dim in dims[1:]):
            raise ContractError(
                f"input {spec.name!r} has dynamic dimensions {_show(dims)}: export it with static sizes {want}"
            )
        raise ContractError(
            f"input {spec.name!r} has shape {_show(dims)} but the contract ({spec.layout}, "
            f"{spec.height}x{spec.width}, 3 channels) expects {want}"
        )


def _outputs(session: onnxruntime.InferenceSession) -> dict[str, Any]:
    return {node.name: node for node in session.get_outputs()}


def _missing_output(name: str, outputs: dict[str, Any], where: str) -> ContractError:
    return ContractError(f"{where}: output {name!r} not found in the model (its outputs: {', '.join(outputs)})")


def _check_heads_static(session: onnxruntime.InferenceSession, contract: ClassifierContract) -> None:
    outputs = _outputs(session)
    for head in contract.heads:
        where = f"head {head.task!r}"
        if head.output not in outputs:
            raise _missing_output(head.output, outputs, where)
        node = outputs[head.output]
        if node.type not in _ORT_FLOAT_OUTPUTS:
            raise ContractError(f"{where}: output {head.output!r} is {node.type}, expected a float tensor")
        dims = _dims(node.shape)
        if len(dims) < 2:
            raise ContractError(f"{where}: output {head.output!r} has shape {_show(dims)}, expected [batch, values]")
        if any(dim != 1 for dim in dims[1:-1]):
            raise ContractError(f"{where}: output {head.output!r} has shape {_show(dims)}, expected [batch, values]")
        if dims[-1] is not None and dims[-1] != len(head.labels):
            raise ContractError(f"{where}: output {head.output!r} has {dims[-1]} values but {len(head.labels)} labels")


def _check_detector_static(session: onnxruntime.InferenceSession, contract: DetectorContract) -> None:
    outputs = _outputs(session)
    if contract.output not in outputs:
        raise _missing_output(contract.output, outputs, "detector")
    node = outputs[contract.output]
    if node.type not in _ORT_FLOAT_OUTPUTS:
        raise ContractError(f"detector: output {contract.output!r} is {node.type}, expected a float tensor")
    dims = _dims(node.shape)
    if len(dims) != 3:
        raise ContractError(
            f"detector: output {contract.output!r} has shape {_show(dims)}, expected yolov8 [1, 4+classes, boxes]"
        )
    if dims[1] is not None:
        _check_detector_channels(contract, dims[1])


def _check_detector_channels(contract: DetectorContract, channels: int) -> None:
    class_count = channels - 4
    needed = max(contract.vehicle_classes) + 1
    if contract.classes and class_count != len(contract.classes):
        raise ContractError(
            f"detector: output {contract.output!r} has {channels} rows (4 + {class_count} classes) "
            f"but the contract names {len(contract.classes)} classes"
        )
    if class_count < needed:
        raise ContractError(
            f"detector: output {contract.output!r} has {channels} rows (4 + {class_count} classes) "
            f"but vehicle_classes needs class id {needed - 1}"
        )


def _dry_run(session: onnxruntime.InferenceSession, contract: Contract) -> None:
    """Run the graph once on zeros: shape metadata can be symbolic, the real outputs are not."""
    spec = contract.input
    batch_dim = _dims(session.get_inputs()[0].shape)[0]
    batch = 2 if batch_dim is None and isinstance(contract, ClassifierContract) else 1
    feed = {spec.name: np.zeros(spec.shape(batch), dtype=np.float32 if spec.dtype == "float32" else np.uint8)}
    names = [head.output for head in contract.heads] if isinstance(contract, ClassifierContract) else [contract.output]
    try:
        values = session.run(names, feed)
    except Exception as error:
        message = " ".join(str(error).split())[:300]
        raise ContractError(f"model failed a dry run on a {_show(list(spec.shape(batch)))} input: {message}") from None
    if isinstance(contract, DetectorContract):
        shape = np.shape(values[0])
        if len(shape) != 3 or shape[0] != 1:
            raise ContractError(
                f"detector: output {contract.output!r} returned shape {list(shape)}, expected [1, 4+classes, boxes]"
            )
        _check_detector_channels(contract, shape[1])
        return
    for head, value in zip(contract.heads, values, strict=True):
        shape = np.shape(value)
        where = f"head {head.task!r}"
        if len(shape) < 2 or shape[0] != batch or int(np.prod(shape[1:])) != shape[-1]:
            raise ContractError(
                f"{where}: output {head.output!r} returned shape {list(shape)} for a batch of {batch}, "
                f"expected [{batch}, {len(head.labels)}]"
            )
        if shape[-1] != len(head.labels):
            raise ContractError(f"{where}: output {head.output!r} has {shape[-1]} values but {len(head.labels)} labels")


def check_contract_against_model(contract: Contract, model: str | Path | bytes | onnxruntime.InferenceSession) -> None:
    """Load the graph (or take a session) and raise ContractError on the first mismatch with the contract.

    Checks the single required input (name, dtype, rank 4, static H/W/3 matching the layout; the batch may be
    dynamic or 1), every declared output (present, float, head widths == label counts, detector rows ==
    4 + classes), then runs the graph once on zeros to confirm the real output shapes.
    """
    import onnxruntime

    if isinstance(model, onnxruntime.InferenceSession):
        session = model
    else:
        from classifier.runtime import make_session

        try:
            session = make_session(model)
        except Exception as error:
            message = " ".join(str(error).split())[:300]
            raise ContractError(f"onnxruntime cannot load the model: {message}") from None
    _check_input(session, contract.input)
    if isinstance(contract, ClassifierContract):
        _check_heads_static(session, contract)
    else:
        _check_detector_static(session, contract)
    _dry_run(session, contract)
