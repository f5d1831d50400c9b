"""Throughput of the whole tagging stack against the models alone, in plain Python (no Django).

`stack`: JPEG bytes -> decode (DCT-scaled) -> detector -> vehicle crop -> every classifier, batched as in a
Run. `models alone`: the same sessions, the same inferences and batch sizes, on tensors made beforehand.
`stack + keys`: what a Run's fetch process does with a new image, no more: the stack fed from the decode that
also makes the asset's keys (SHA-256, pHash) and thumbnail (catalog.imaging.inspect_image_viewed), so it is the
most a Run could do on the same cores without its network, storage and database.
All run in worker processes of one single-threaded session each (how Celery runs inference), so the
ratios say how much of the machine the stack spends outside the models.

`decoder_timings`: the JPEG decoders this environment has (Pillow with and without its DCT draft, OpenCV, and
simplejpeg or PyTurboJPEG when installed), each asked for RGB pixels no smaller than the models' input, beside
what a Run does with a new image (keys, thumbnail and the models' input) with one decode and with two.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import numpy as np

from catalog.imaging import inspect_image_viewed

from .contract import ClassifierContract, DetectorContract, parse_contract
from .preprocess import Decoded, decoded_from
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


def run_stack(pipeline: Pipeline, images: list[bytes], batch_size: int, *, keys: bool = False) -> int:
    """Tags the images with the Pipeline a Run uses; returns how many were tagged. With `keys`, each image is decoded
    once for its keys, its thumbnail and the models, as a Run's fetch process does
    (catalog.services.image_work.inspect_new_image)."""
    decode = (lambda data: _decode_with_keys(pipeline, data)) if keys else pipeline.decode
    done = 0
    for start in range(0, len(images), batch_size):
        decoded = [decode(data) for data in images[start : start + batch_size]]
        pipeline.run(decoded)
        done += len(decoded)
    return done


def _decode_with_keys(pipeline: Pipeline, data: bytes) -> Decoded:
    _facts, view = inspect_image_viewed(data, keep=pipeline.min_size)
    image = None
    if view is not None:
        image = decoded_from(
            view.image, original_size=view.original_size, image_format=view.format, min_size=pipeline.min_size
        )
    return image or pipeline.decode(data)


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
    if mode in ("stack", "keys"):
        assert isinstance(payload, list)  # noqa: S101
        return run_stack(_worker, payload, batch_size, keys=mode == "keys")
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
        started = time.perf_counter()
        keyed = sum(pool.map(_job, [("keys", chunk, batch_size) for chunk in chunks]))
        keyed_seconds = time.perf_counter() - started
    return {
        "processes": processes,
        "images": stack,
        "models_alone_per_s": alone / alone_seconds,
        "stack_per_s": stack / stack_seconds,
        "stack_share": (stack / stack_seconds) / (alone / alone_seconds),
        "stack_keys_per_s": keyed / keyed_seconds,
    }


# -- decoders: ms per image of each way to get a JPEG's pixels for the models (benchmark_classifier --decoders) --


def _pillow_full(data: bytes, min_size: int) -> object:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def _pillow_draft(data: bytes, min_size: int) -> object:
    from .preprocess import decode

    return decode(data, min_size=min_size)


def _run_decode_twice(data: bytes, min_size: int) -> object:
    from catalog.imaging import inspect_image

    from .preprocess import decode

    return inspect_image(data), decode(data, min_size=min_size)


def _run_decode_once(data: bytes, min_size: int) -> object:
    from catalog.imaging import inspect_image_viewed

    from .preprocess import decoded_from

    facts, view = inspect_image_viewed(data, keep=(min_size, min_size))
    assert view is not None  # noqa: S101 - a plain JPEG
    return facts, decoded_from(
        view.image, original_size=view.original_size, image_format=view.format, min_size=min_size
    )


def _jpeg_size(data: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:  # reads the header only
        return image.size


def _scale(size: tuple[int, int], min_size: int) -> int:
    fits = min(size[0] // min_size, size[1] // min_size)
    return 8 if fits >= 8 else 4 if fits >= 4 else 2 if fits >= 2 else 1


def _opencv(data: bytes, min_size: int) -> object:
    import cv2

    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}
    flag = flags.get(_scale(_jpeg_size(data), min_size), cv2.IMREAD_REDUCED_COLOR_8)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if pixels is None:
        raise ValueError("OpenCV could not decode the image")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def _decoders() -> dict[str, Any]:
    """The decoders that this environment has, by the name the table shows."""
    found: dict[str, Any] = {
        "Pillow, full size": _pillow_full,
        "Pillow, draft (preprocess.decode)": _pillow_draft,
        "OpenCV imdecode, IMREAD_REDUCED": _opencv,
    }
    try:
        import simplejpeg

        found["simplejpeg, min size"] = lambda data, min_size: simplejpeg.decode_jpeg(
            data, min_height=min_size, min_width=min_size
        )
        found["simplejpeg, min size, fast DCT"] = lambda data, min_size: simplejpeg.decode_jpeg(
            data, min_height=min_size, min_width=min_size, fastdct=True, fastupsample=True
        )
    except ImportError:
        pass
    try:
        import turbojpeg

        decoder = turbojpeg.TurboJPEG()

        def _turbo(data: bytes, min_size: int) -> object:
            width, height, _, _ = decoder.decode_header(data)
            return decoder.decode(
                data, pixel_format=turbojpeg.TJPF_RGB, scaling_factor=(1, _scale((width, height), min_size))
            )

        found["PyTurboJPEG, scaled"] = _turbo
    except (ImportError, OSError, RuntimeError):  # no package, or no libturbojpeg of the version it wants
        pass
    found["keys + thumbnail, then the models' decode: two"] = _run_decode_twice
    found["keys + thumbnail + the models' input: one decode"] = _run_decode_once
    return found


def decoder_timings(images: dict[str, list[bytes]], *, min_size: int = 224, repeat: int = 3) -> list[dict[str, Any]]:
    """Milliseconds per image (best of `repeat` passes, one thread) of each decoder on each set of JPEGs, RGB at no
    less than min_size: one row per decoder, one column per set."""
    rows = []
    for name, decoder in _decoders().items():
        row: dict[str, Any] = {"decoder": name}
        for label, datas in images.items():
            best = float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                for data in datas:
                    decoder(data, min_size)
                best = min(best, (time.perf_counter() - started) / len(datas))
            row[label] = round(1000 * best, 2)
        rows.append(row)
    return rows
