"""Evaluate exported starter models the way the product runs them.

Held-out generated images are JPEG-encoded, decoded by ``Pipeline.decode`` (``preprocess.decode``, with
draft scaling) and tagged by ``classifier.runtime.Pipeline`` from the ONNX files and their contracts: the
vehicle model on the crop the exported detector gives (the real pipeline) and, for reference, on the
ground-truth crop; the intent model on the whole image; the detector by its biggest box against the true
biggest box. No torch here: a candidate model trained anywhere can be measured with the same code.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from classifier.contract import VEHICLE_KINDS, ClassifierContract, DetectorContract, parse_contract
from classifier.runtime import ClassifierModel, DetectorModel, Pipeline, make_session
from classifier.yolo import biggest, vehicle_crop

from .metrics import classification_report, detection_report
from .samples import Domain, color_label, generate, jpeg_bytes

BATCH = 32


@dataclass
class TestImage:
    jpeg: bytes
    labels: dict[str, str | None]
    box: tuple[int, int, int, int] | None  # the biggest vehicle, in original pixels
    kind: str = ""  # the biggest vehicle's kind (classifier.contract.VEHICLE_KINDS), "" where there is none


def _test_image(args: tuple[int, Domain]) -> TestImage:
    seed, domain = args
    sample = generate(seed, domain)
    labels: dict[str, str | None]
    if domain == "vehicle":
        labels = {"image_type": sample.image_type, "color": color_label(sample)}
    else:
        labels = {"intent": sample.intent, "sensitive": sample.sensitive}
    return TestImage(jpeg=jpeg_bytes(sample.image), labels=labels, box=sample.box, kind=sample.kind)


def generate_test_images(seeds: list[int], domain: Domain, workers: int) -> list[TestImage]:
    jobs = [(seed, domain) for seed in seeds]
    if workers <= 1:
        return [_test_image(job) for job in jobs]
    with get_context("fork").Pool(workers) as pool:
        return pool.map(_test_image, jobs, chunksize=8)


def load_contract(path: Path) -> ClassifierContract | DetectorContract:
    return parse_contract(path.read_text())


def load_classifier(directory: Path, name: str) -> ClassifierModel:
    contract = load_contract(directory / f"{name}.json")
    assert isinstance(contract, ClassifierContract)  # noqa: S101 - our own file, a programming error otherwise
    return ClassifierModel.load(directory / f"{name}.onnx", contract)


def load_detector(directory: Path, name: str = "detector") -> DetectorModel:
    contract = load_contract(directory / f"{name}.json")
    assert isinstance(contract, DetectorContract)  # noqa: S101
    return DetectorModel.load(directory / f"{name}.onnx", contract)


def _grow(box: tuple[float, float, float, float], margin: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    gx, gy = margin * (x1 - x0), margin * (y1 - y0)
    return (
        max(0, math.floor(x0 - gx)),
        max(0, math.floor(y0 - gy)),
        min(size[0], math.ceil(x1 + gx)),
        min(size[1], math.ceil(y1 + gy)),
    )


def evaluate_vehicle(
    classifier: ClassifierModel, detector: DetectorModel, images: list[TestImage], advance: Callable[[int], None]
) -> dict[str, Any]:
    pipeline = Pipeline([classifier], detector)
    tasks = classifier.tasks()
    predicted: dict[str, list[str]] = {task: [] for task in tasks}
    reference: dict[str, list[str]] = {task: [] for task in tasks}
    true_boxes: list[tuple[float, ...] | None] = []
    found_boxes: list[tuple[float, ...] | None] = []
    found_kinds: list[str] = []
    for start in range(0, len(images), BATCH):
        chunk = images[start : start + BATCH]
        decoded = [pipeline.decode(item.jpeg) for item in chunk]
        for result in pipeline.run(decoded):
            if result.errors:
                raise RuntimeError(f"pipeline failed during evaluation: {result.errors}")
            for task in tasks:
                predicted[task].append(result.tags[task].label)
        hints = []
        for item, image in zip(chunk, decoded, strict=True):
            # The ground-truth box in decoded pixels, grown by the detector's margin: the crop a perfect detector gives.
            if item.box is None:
                hints.append((None, "no_vehicle"))
                continue
            scaled = tuple(value * image.scale for value in item.box)
            hints.append((_grow(scaled, detector.contract.margin, image.image.size), "detector"))  # type: ignore[arg-type]
            # Detector quality: its biggest box (no margin), mapped back to original pixels.
        for result in pipeline.run(decoded, crops=hints):  # type: ignore[arg-type]
            for task in tasks:
                reference[task].append(result.tags[task].label)
        for item, image in zip(chunk, decoded, strict=True):
            boxes = detector.boxes(image.image)
            best = vehicle_crop(boxes, image_size=image.image.size, margin=0.0)
            top = biggest(boxes)
            found_kinds.append(detector.contract.kind_of(top.class_id) if top is not None else "")
            found_boxes.append(None if best is None else tuple(value / image.scale for value in best))
            true_boxes.append(None if item.box is None else tuple(float(v) for v in item.box))
        advance(len(chunk))
    heads = {}
    heads_reference = {}
    for head in classifier.contract.heads:
        truth = [item.labels[head.task] for item in images]
        heads[head.task] = classification_report(truth, predicted[head.task], head.labels)
        heads_reference[head.task] = classification_report(truth, reference[head.task], head.labels)
    return {
        "heads": heads,
        "heads_ground_truth_crop": heads_reference,
        "by_kind": _by_kind(images, predicted, found_kinds),
        "detection": detection_report(true_boxes, found_boxes),
    }


def _by_kind(images: list[TestImage], predicted: dict[str, list[str]], found_kinds: list[str]) -> dict[str, Any]:
    """Per true vehicle kind: the images, each head's accuracy on the detector's crop (over the images with a label
    for it), and how often the detector's biggest box says the right kind."""
    out: dict[str, Any] = {}
    for kind in VEHICLE_KINDS:
        rows = [i for i, item in enumerate(images) if item.kind == kind]
        if not rows:
            continue
        figures: dict[str, Any] = {"n": len(rows)}
        for task, labels in predicted.items():
            labelled = [i for i in rows if images[i].labels[task]]
            figures[task] = sum(labels[i] == images[i].labels[task] for i in labelled) / len(labelled)
        figures["detector_kind"] = sum(found_kinds[i] == kind for i in rows) / len(rows)
        out[kind] = figures
    return out


def evaluate_intent(
    classifier: ClassifierModel, images: list[TestImage], advance: Callable[[int], None]
) -> dict[str, Any]:
    pipeline = Pipeline([classifier], None)
    predicted: dict[str, list[str]] = {task: [] for task in classifier.tasks()}
    for start in range(0, len(images), BATCH):
        chunk = images[start : start + BATCH]
        for result in pipeline.run([pipeline.decode(item.jpeg) for item in chunk]):
            if result.errors:
                raise RuntimeError(f"pipeline failed during evaluation: {result.errors}")
            for task in predicted:
                predicted[task].append(result.tags[task].label)
        advance(len(chunk))
    return {
        "heads": {
            head.task: classification_report(
                [item.labels[head.task] for item in images], predicted[head.task], head.labels
            )
            for head in classifier.contract.heads
        }
    }


def evaluate_all(
    directory: Path,
    *,
    vehicle_seeds: list[int],
    intent_seeds: list[int],
    workers: int,
    progress: Callable[[str, int], Callable[[int], None]],
) -> dict[str, dict[str, Any]]:
    """Metrics per model name ("vehicle", "intent", "detector") for the models in ``directory``."""
    vehicle_images = generate_test_images(vehicle_seeds, "vehicle", workers)
    intent_images = generate_test_images(intent_seeds, "intent", workers)
    detector = load_detector(directory)
    vehicle = evaluate_vehicle(
        load_classifier(directory, "vehicle"),
        detector,
        vehicle_images,
        progress("evaluate vehicle", len(vehicle_images)),
    )
    detection = vehicle.pop("detection")
    intent = evaluate_intent(
        load_classifier(directory, "intent"), intent_images, progress("evaluate intent", len(intent_images))
    )
    return {
        "vehicle": {**vehicle, "test_images": len(vehicle_images)},
        "intent": {**intent, "test_images": len(intent_images)},
        "detector": {"detection": detection, "test_images": len(vehicle_images)},
    }


def measure_latency(path: Path, *, quick: bool = False) -> dict[str, float]:
    """Milliseconds per image on one thread (the production session options), at batch 1 and batch 32."""
    session = make_session(path)
    node = session.get_inputs()[0]
    shape = [dim if isinstance(dim, int) else 1 for dim in node.shape]
    rng = np.random.default_rng(0)
    figures = {}
    for batch in (1, 32):
        tensor = rng.standard_normal((batch, *shape[1:])).astype(np.float32)
        session.run(None, {node.name: tensor})
        repeats = 1 if quick else max(2, 64 // batch)
        clock = time.perf_counter()
        for _ in range(repeats):
            session.run(None, {node.name: tensor})
        figures[f"batch_{batch}"] = round((time.perf_counter() - clock) / repeats / batch * 1000, 3)
    return figures


def load_metrics(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "metrics.json").read_text())
