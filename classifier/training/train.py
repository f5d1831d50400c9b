"""Train the starter models on generated images, export them to ONNX with their contracts, and evaluate them.

``train_starter_models`` is the whole job behind ``manage.py train_starter_models``. Resolution policy
(for the CPU budget): the classifiers train at ``train_size`` (160) for most epochs and finish with
``fine_tune_epochs`` at 224, the size they are exported and run at (MobileNet is fully convolutional with
global pooling, so the last epochs only re-tune it to the production scale). Evaluation runs the exported
files through ``classifier.runtime`` (see ``evaluate.py``), the code path the product uses.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from classifier.contract import ClassifierContract, DetectorContract, HeadSpec, InputSpec, contract_to_json
from classifier.synth import COLORS, IMAGE_TYPES, INTENT_LABELS, SENSITIVE_LABELS

from . import data, mobilenet
from .detector import CLASSES as DETECTOR_CLASSES
from .detector import INPUT_SIZE as DETECTOR_INPUT
from .detector import TinyDetector, class_weights, detection_loss
from .evaluate import evaluate_all, measure_latency
from .report import README, format_table

Progress = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance(n)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Config:
    vehicle_train: int = 3200
    intent_train: int = 4000
    vehicle_test: int = 600
    intent_test: int = 400
    vehicle_epochs: int = 6
    intent_epochs: int = 8
    detector_epochs: int = 12
    fine_tune_images: int = 2000  # at 224, the export size, after the epochs at train_size
    train_size: int = 128
    width: float = 0.75
    embedding: int = 512
    batch_size: int = 64
    lr: float = 3e-3
    detector_lr: float = 4e-3
    weight_decay: float = 0.02
    label_smoothing: float = 0.1
    workers: int = 2


QUICK = Config(
    vehicle_train=96,
    intent_train=64,
    vehicle_test=24,
    intent_test=16,
    vehicle_epochs=1,
    intent_epochs=1,
    detector_epochs=1,
    fine_tune_images=32,
    train_size=96,
    batch_size=32,
)

VEHICLE_SPEC = InputSpec(
    name="image",
    layout="NCHW",
    height=224,
    width=224,
    dtype="float32",
    channels="RGB",
    scale=1 / 255,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    resize="stretch",
)
# Chrome's shopping_intent_x_sensitivity_classifier signature: NHWC float32 in [-1, 1].
INTENT_SPEC = replace(
    VEHICLE_SPEC, name="normalized_input_image_tensor", layout="NHWC", mean=(0.5,) * 3, std=(0.5,) * 3
)
DETECTOR_SPEC = replace(
    VEHICLE_SPEC,
    name="images",
    height=DETECTOR_INPUT,
    width=DETECTOR_INPUT,
    mean=(0.0,) * 3,
    std=(1.0,) * 3,
    resize="letterbox",
)

VEHICLE_CONTRACT = ClassifierContract(
    name="vehicle",
    input=VEHICLE_SPEC,
    crop="vehicle",
    heads=(
        HeadSpec(output="image_type", task="image_type", activation="softmax", labels=IMAGE_TYPES),
        HeadSpec(output="color", task="color", activation="softmax", labels=COLORS),
    ),
)
INTENT_CONTRACT = ClassifierContract(
    name="intent",
    input=INTENT_SPEC,
    crop="none",
    heads=(
        HeadSpec(output="shopping_intent", task="intent", activation="softmax", labels=INTENT_LABELS),
        HeadSpec(output="sensitive", task="sensitive", activation="softmax", labels=SENSITIVE_LABELS),
    ),
)
DETECTOR_CONTRACT = DetectorContract(
    name="detector",
    input=DETECTOR_SPEC,
    output="output0",
    format="yolov8",
    classes=DETECTOR_CLASSES,
    vehicle_classes=tuple(range(len(DETECTOR_CLASSES))),
    confidence=0.3,
    iou=0.45,
    margin=data.CROP_MARGIN,
)


def _set_memory_format(model: nn.Module, memory_format: torch.memory_format) -> None:
    # channels-last convolutions train ~3x faster on CPU here; export goes back to the default layout.
    model.to(memory_format=memory_format)  # type: ignore[call-overload]


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def _optimizer(model: nn.Module, lr: float, weight_decay: float, total_steps: int):
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(1, total_steps), pct_start=0.2)
    return optimizer, schedule


def _class_weights(targets: np.ndarray, classes: int) -> torch.Tensor:
    """Square-root inverse class frequency: rare classes (sensitive ~5%) are not drowned by frequent ones."""
    counts = np.bincount(targets[targets >= 0], minlength=classes).clip(min=1)
    return torch.tensor(np.sqrt(counts.sum() / (classes * counts)), dtype=torch.float32)


def train_classifier(
    model: mobilenet.MobileNetV3Small,
    images: np.ndarray,
    targets: list[np.ndarray],
    spec: InputSpec,
    config: Config,
    epochs: int,
    *,
    seed: int,
    progress: Callable[[int], None],
) -> None:
    """Multi-head training; a target of -1 masks that sample out of that head's loss (e.g. no colour).

    ``epochs`` at ``config.train_size``, then ``config.fine_tune_images`` at 224 in the low-learning-rate
    tail of the same one-cycle schedule.
    """
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.input_layout = "NCHW"  # training feeds NCHW; an NHWC model gets its transpose back for export
    _set_memory_format(model, torch.channels_last)
    n = len(images)
    fine_tune = min(n, config.fine_tune_images)
    total_steps = epochs * data.steps_per_epoch(n, config.batch_size)
    total_steps += data.steps_per_epoch(fine_tune, config.batch_size) if fine_tune else 0
    optimizer, schedule = _optimizer(model, config.lr, config.weight_decay, total_steps)
    labels = [torch.from_numpy(t) for t in targets]
    weights = [_class_weights(t, k) for t, k in zip(targets, model.head_sizes, strict=True)]
    phases = [(config.train_size, data.batches(n, config.batch_size, rng)) for _ in range(epochs)]
    if fine_tune:
        subset = torch.randperm(n, generator=rng)[:fine_tune]
        phases.append((data.CLASSIFIER_SIZE, (subset[i] for i in data.batches(fine_tune, config.batch_size, rng))))
    model.train()
    for size, index_batches in phases:
        for index in index_batches:
            pixels = data.augment(torch.from_numpy(images[index.numpy()]), rng, size)
            outputs = model(data.normalise(pixels, spec))
            loss = torch.zeros(())
            for output, label, weight in zip(outputs, labels, weights, strict=True):
                y = label[index]
                keep = y >= 0
                if keep.any():
                    loss = loss + nn.functional.cross_entropy(
                        output[keep], y[keep], weight=weight, label_smoothing=config.label_smoothing
                    )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            progress(len(index))
    model.eval()


def train_detector(
    model: TinyDetector, vehicles: data.VehicleData, config: Config, *, seed: int, progress: Callable[[int], None]
) -> None:
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    _set_memory_format(model, torch.channels_last)
    n = len(vehicles.scenes)
    steps_per_epoch = data.steps_per_epoch(n, config.batch_size)
    optimizer, schedule = _optimizer(
        model, config.detector_lr, config.weight_decay, config.detector_epochs * steps_per_epoch
    )
    weights = class_weights(vehicles.box_classes, model.classes)
    model.train()
    for _ in range(config.detector_epochs):
        for index in data.batches(n, config.batch_size, rng):
            pixels = torch.from_numpy(vehicles.scenes[index.numpy()])
            boxes = [torch.from_numpy(vehicles.boxes[i]) for i in index.tolist()]
            classes = [torch.from_numpy(vehicles.box_classes[i]) for i in index.tolist()]
            flip = torch.rand(len(index), generator=rng) < 0.5
            pixels[flip] = pixels[flip].flip(2)
            boxes = [
                torch.stack([DETECTOR_INPUT - b[:, 2], b[:, 1], DETECTOR_INPUT - b[:, 0], b[:, 3]], 1) if f else b
                for b, f in zip(boxes, flip.tolist(), strict=True)
            ]
            loss = detection_loss(model, data.normalise(pixels, DETECTOR_SPEC), boxes, classes, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            progress(len(index))
    model.eval()


def export_onnx(model: nn.Module, path: Path, spec: InputSpec, outputs: list[str]) -> None:
    """opset 17, dynamic batch, static H/W, named as in the contract."""
    model.eval()
    _set_memory_format(model, torch.contiguous_format)
    dummy = torch.zeros(spec.shape(1))
    axes = {name: {0: "batch"} for name in [spec.name, *outputs]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=[spec.name],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _write_contract(contract: ClassifierContract | DetectorContract, out: Path) -> None:
    (out / f"{contract.name}.json").write_text(json.dumps(contract_to_json(contract), indent=2) + "\n")


def _seen(config: Config, epochs: int, n: int) -> int:
    return epochs * n + min(n, config.fine_tune_images)


def _seeds(seed: int, offset: int, count: int) -> list[int]:
    """Disjoint seed ranges per purpose, so the test images are never training images."""
    return [seed * 10_000_000 + offset + i for i in range(count)]


def train_starter_models(
    out: Path, *, quick: bool = False, seed: int = 0, config: Config | None = None, progress: Progress = _no_progress
) -> dict[str, Any]:
    """Generate data, train, export and evaluate the three starter models into ``out``; return the metrics.

    Writes vehicle/intent/detector ``.onnx`` + ``.json`` and ``metrics.json``; the metrics include the
    human-readable table under ``"table"``.
    """
    config = config or (QUICK if quick else Config())
    torch.set_num_threads(2)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    count = config.vehicle_train
    vehicles = data.generate_vehicle_data(
        _seeds(seed, 0, count), workers=config.workers, progress=progress("generate vehicle scenes", count)
    )
    count = config.intent_train
    intents = data.generate_intent_data(
        _seeds(seed, 2_000_000, count), workers=config.workers, progress=progress("generate shopping scenes", count)
    )
    generation_seconds = time.monotonic() - started
    trained: dict[str, dict[str, Any]] = {}

    vehicle_model = mobilenet.build({"image_type": len(IMAGE_TYPES), "color": len(COLORS)}, config.width)
    clock = time.monotonic()
    train_classifier(
        vehicle_model,
        vehicles.crops,
        [vehicles.image_type, vehicles.color],
        VEHICLE_SPEC,
        config,
        config.vehicle_epochs,
        seed=seed,
        progress=progress("train vehicle", _seen(config, config.vehicle_epochs, len(vehicles.crops))),
    )
    trained["vehicle"] = _finish(vehicle_model, VEHICLE_CONTRACT, out, time.monotonic() - clock, len(vehicles.crops))

    intent_model = mobilenet.build({"intent": len(INTENT_LABELS), "sensitive": len(SENSITIVE_LABELS)}, config.width)
    clock = time.monotonic()
    train_classifier(
        intent_model,
        intents.images,
        [intents.intent, intents.sensitive],
        INTENT_SPEC,
        config,
        config.intent_epochs,
        seed=seed + 1,
        progress=progress("train intent", _seen(config, config.intent_epochs, len(intents.images))),
    )
    intent_model.input_layout = "NHWC"
    trained["intent"] = _finish(intent_model, INTENT_CONTRACT, out, time.monotonic() - clock, len(intents.images))

    detector = TinyDetector(classes=len(DETECTOR_CLASSES))
    clock = time.monotonic()
    train_detector(
        detector,
        vehicles,
        config,
        seed=seed + 2,
        progress=progress("train detector", config.detector_epochs * len(vehicles.scenes)),
    )
    trained["detector"] = _finish(detector, DETECTOR_CONTRACT, out, time.monotonic() - clock, len(vehicles.scenes))
    del vehicles, intents

    evaluation = evaluate_all(
        out,
        vehicle_seeds=_seeds(seed, 5_000_000, config.vehicle_test),
        intent_seeds=_seeds(seed, 7_000_000, config.intent_test),
        workers=config.workers,
        progress=progress,
    )
    for name, result in evaluation.items():
        trained[name].update(result)
        trained[name]["latency_ms_per_image_one_thread"] = measure_latency(out / f"{name}.onnx", quick=quick)
    metrics = {
        "measured_on": "generated images (classifier.synth), held-out seeds",
        "command": f"manage.py train_starter_models --seed {seed}" + (" --quick" if quick else ""),
        "seed": seed,
        "quick": quick,
        "torch": torch.__version__,
        "config": asdict(config),
        "generation_seconds": round(generation_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "models": trained,
    }
    metrics["table"] = format_table(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "README.md").write_text(README.format(command=metrics["command"], table=metrics["table"]))
    return metrics


def _finish(
    model: nn.Module, contract: ClassifierContract | DetectorContract, out: Path, seconds: float, images: int
) -> dict[str, Any]:
    outputs = [contract.output] if isinstance(contract, DetectorContract) else [h.output for h in contract.heads]
    path = out / f"{contract.name}.onnx"
    export_onnx(model, path, contract.input, outputs)
    _write_contract(contract, out)
    return {
        "file": path.name,
        "contract": f"{contract.name}.json",
        "file_bytes": path.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_images": images,
        "training_seconds": round(seconds, 1),
    }
