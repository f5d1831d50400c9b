"""Throughput of the whole tagging stack against the models alone, in plain Python (no Django).

`stack`: JPEG bytes -> decode (DCT-scaled) -> detector -> vehicle crop -> every classifier, batched as in a
Run. `models alone`: the same sessions, the same inferences and batch sizes, on tensors made beforehand.
Both run in worker processes of one single-threaded session each (how Celery runs inference), so the
ratio says how much of the machine the stack spends outside the models.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import numpy as np

from .contract import ClassifierContract, DetectorContract, parse_contract
from .runtime import ClassifierModel, DetectorModel, Pipeline

ModelFiles = list[tuple[bytes, dict[str, Any]]]  # (ONNX bytes, contract) for each model


def load(models: ModelFiles) -> Pipeline:
    classifiers, detector = [], None
    for data, contract_json in models:
        contract = parse_contract(contract_json)
        if isinstance(contract, DetectorContract):
            detector = DetectorModel.load(data, contract, check=False)
        else:
            assert isinstance(contract, ClassifierContract)  # noqa: S101
            classifiers.append(ClassifierModel.load(data, contract, check=False))
    return Pipeline(classifiers, detector)


def run_stack(pipeline: Pipeline, images: list[bytes], batch_size: int) -> int:
    """Tags the images with the Pipeline a Run uses; returns how many were tagged."""
    done = 0
    for start in range(0, len(images), batch_size):
        decoded = [pipeline.decode(data) for data in images[start : start + batch_size]]
        pipeline.run(decoded)
        done += len(decoded)
    return done


def run_models_alone(loaded: Pipeline, count: int, batch_size: int) -> int:
    """The same inferences on tensors made beforehand: the detector once per image, classifiers per batch."""
    rng = np.random.default_rng(0)

    def tensor(contract: Any, n: int) -> np.ndarray:
        spec = contract.input
        shape = (n, 3, spec.height, spec.width) if spec.layout == "NCHW" else (n, spec.height, spec.width, 3)
        return rng.random(shape, dtype=np.float32)

    detector_input = tensor(loaded.detector.contract, 1) if loaded.detector else None
    inputs = {id(m): tensor(m.contract, batch_size) for m in loaded.classifiers}
    done = 0
    while done < count:
        n = min(batch_size, count - done)
        if loaded.detector is not None:
            name = loaded.detector.contract.input.name
            for _ in range(n):
                loaded.detector.session.run(None, {name: detector_input})
        for model in loaded.classifiers:
            model.session.run(None, {model.contract.input.name: inputs[id(model)][:n]})
        done += n
    return done


_worker: Pipeline | None = None


def _init(models: ModelFiles) -> None:
    global _worker
    _worker = load(models)


def _job(args: tuple[str, list[bytes] | int, int]) -> int:
    mode, payload, batch_size = args
    assert _worker is not None  # noqa: S101
    if mode == "stack":
        assert isinstance(payload, list)  # noqa: S101
        return run_stack(_worker, payload, batch_size)
    assert isinstance(payload, int)  # noqa: S101
    return run_models_alone(_worker, payload, batch_size)


def measure(models: ModelFiles, images: list[bytes], *, processes: int, batch_size: int = 32) -> dict[str, float]:
    """Images per second of the stack and of the models alone, with `processes` single-threaded workers."""
    chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=_init, initargs=(models,)) as pool:
        pool.map(_job, [("alone", batch_size, batch_size)] * processes)  # warm up every worker's sessions
        started = time.perf_counter()
        alone = sum(pool.map(_job, [("alone", len(chunk), batch_size) for chunk in chunks]))
        alone_seconds = time.perf_counter() - started
        started = time.perf_counter()
        stack = sum(pool.map(_job, [("stack", chunk, batch_size) for chunk in chunks]))
        stack_seconds = time.perf_counter() - started
    return {
        "processes": processes,
        "images": stack,
        "models_alone_per_s": alone / alone_seconds,
        "stack_per_s": stack / stack_seconds,
        "stack_share": (stack / stack_seconds) / (alone / alone_seconds),
    }
