"""Run contract-described ONNX models: sessions, classifiers, the vehicle detector and the per-batch pipeline.

Create sessions inside each worker process after the fork, never before (DESIGN.md "Costs measured").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime
from PIL import Image

from classifier.contract import ClassifierContract, DetectorContract, check_contract_against_model
from classifier.heads import HeadResult, head_results
from classifier.preprocess import Decoded, batch, decode, flatten_to_rgb, to_tensor
from classifier.yolo import Box, biggest, decode_yolov8, grown, to_image_coords

logger = logging.getLogger(__name__)

CropBox = tuple[int, int, int, int]
CropSource = Literal["detector", "no_vehicle", "no_detector", "none"]
# A crop already known for an image (cached per asset): its box (None when there is none) and its source.
CropHint = tuple[CropBox | None, CropSource]


def make_session(model: str | Path | bytes) -> onnxruntime.InferenceSession:
    """A CPU session tuned for many single-threaded worker processes (see the comments for why)."""
    options = onnxruntime.SessionOptions()
    # One thread per session: on our 2-core machines two processes with one thread each beat one process
    # with two threads, and several sessions in one process with their own pools spin against each other.
    # Parallelism comes from Celery prefork (concurrency = cores), not from onnxruntime.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # The CPU arena kept ~800 MB after one batch of 32 on EfficientNet-B0; without it ~60 MB, at no
    # measurable cost for our small batches.
    options.enable_cpu_mem_arena = False
    # Lower optimisation levels measured 2.5-4x slower: keep the default (all graph optimisations).
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = str(model) if isinstance(model, Path) else model
    return onnxruntime.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def _fixed_batch_of_one(session: onnxruntime.InferenceSession, input_name: str) -> bool:
    for node in session.get_inputs():
        if node.name == input_name:
            return bool(node.shape) and node.shape[0] == 1
    return False


class ClassifierModel:
    """A classifier session with its contract: every head from one inference per batch."""

    def __init__(self, session: onnxruntime.InferenceSession, contract: ClassifierContract) -> None:
        self.session = session
        self.contract = contract
        self._outputs = [head.output for head in contract.heads]
        # Some exports (TFLite conversions) fix the batch at 1: such a model runs once per image instead.
        self._batch_of_one = _fixed_batch_of_one(session, contract.input.name)

    @classmethod
    def load(cls, model: str | Path | bytes, contract: ClassifierContract, *, check: bool = True) -> ClassifierModel:
        session = make_session(model)
        if check:
            check_contract_against_model(contract, session)
        return cls(session, contract)

    @property
    def name(self) -> str:
        return self.contract.name

    def tasks(self) -> tuple[str, ...]:
        return self.contract.tasks()

    def run(self, tensors: np.ndarray) -> dict[str, list[HeadResult]]:
        """Results per task, one per row of `tensors` (a batch from `preprocess.batch`)."""
        expected = np.float32 if self.contract.input.dtype == "float32" else np.uint8
        if tensors.dtype != expected:
            raise ValueError(f"{self.name}: input tensor is {tensors.dtype}, the contract says {expected.__name__}")
        if self._batch_of_one and len(tensors) > 1:
            rows = [
                self.session.run(self._outputs, {self.contract.input.name: tensors[i : i + 1]})
                for i in range(len(tensors))
            ]
            outputs = [np.concatenate(parts, axis=0) for parts in zip(*rows, strict=True)]
        else:
            outputs = self.session.run(self._outputs, {self.contract.input.name: tensors})
        results = {}
        for head, values in zip(self.contract.heads, outputs, strict=True):
            head_rows = head_results(head, values)
            if len(head_rows) != len(tensors):
                raise ValueError(
                    f"{self.name}: head {head.task!r} gave {len(head_rows)} rows for {len(tensors)} images"
                )
            results[head.task] = head_rows
        return results


class DetectorModel:
    """A YOLOv8 detector session with its contract, used to find the biggest vehicle."""

    def __init__(self, session: onnxruntime.InferenceSession, contract: DetectorContract) -> None:
        self.session = session
        self.contract = contract

    @classmethod
    def load(cls, model: str | Path | bytes, contract: DetectorContract, *, check: bool = True) -> DetectorModel:
        session = make_session(model)
        if check:
            check_contract_against_model(contract, session)
        return cls(session, contract)

    @property
    def name(self) -> str:
        return self.contract.name

    def boxes(self, image: Image.Image) -> list[Box]:
        """Vehicle boxes (the contract's vehicle_classes) in image pixels, best score first."""
        spec = self.contract.input
        tensor = to_tensor(image, spec)
        (output,) = self.session.run([self.contract.output], {spec.name: tensor})
        found = decode_yolov8(
            output,
            confidence=self.contract.confidence,
            iou=self.contract.iou,
            classes=self.contract.vehicle_classes,
        )
        return to_image_coords(found, input_size=(spec.height, spec.width), image_size=image.size, resize=spec.resize)

    def crop_box(self, image: Image.Image) -> CropBox | None:
        """The biggest vehicle with the contract's margin, in image pixels, or None when there is none."""
        return self.crop(image)[0]

    def crop(self, image: Image.Image) -> tuple[CropBox | None, str]:
        """The biggest vehicle's crop (crop_box) and its kind by the contract ("" when it does not say, or no box)."""
        best = biggest(self.boxes(image))
        box = grown(best, image_size=image.size, margin=self.contract.margin)
        return box, self.contract.kind_of(best.class_id) if box is not None and best is not None else ""


@dataclass
class ImageTags:
    """What the pipeline found for one image. `crop` is in the pixels of the image given to `Pipeline.run`
    (use `Decoded.to_original` for the original file's pixels)."""

    tags: dict[str, HeadResult] = field(default_factory=dict)
    crop: CropBox | None = None
    crop_source: CropSource = "none"  # "none": no wanted model uses the vehicle crop
    crop_kind: str = ""  # the kind of vehicle the detector saw in the crop (contract.VEHICLE_KINDS), "" unknown
    errors: dict[str, str] = field(default_factory=dict)  # task -> one-line reason it has no tag


def _one_line(error: Exception, limit: int = 300) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Pipeline:
    """The classifiers of the enabled tasks plus the optional vehicle detector, run batch by batch."""

    def __init__(
        self,
        classifiers: list[ClassifierModel],
        detector: DetectorModel | None,
        *,
        serves: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """`serves` says, per classifier (in order), the tasks it answers for; by default all its heads. A model
        whose other heads are served by a newer model (activated for some tasks only) answers only the rest."""
        self.serves = (
            [list(tasks) for tasks in serves] if serves is not None else [list(m.tasks()) for m in classifiers]
        )
        if len(self.serves) != len(classifiers):
            raise ValueError(f"{len(self.serves)} task lists given for {len(classifiers)} classifiers")
        seen: dict[str, str] = {}
        for model, served in zip(classifiers, self.serves, strict=True):
            for task in served:
                if task not in model.tasks():
                    raise ValueError(f"model {model.name!r} has no head for task {task!r}")
                if task in seen:
                    raise ValueError(f"task {task!r} is served by both {seen[task]!r} and {model.name!r}")
                seen[task] = model.name
        self.classifiers = list(classifiers)
        self.detector = detector
        specs = [model.contract.input for model in classifiers]
        if detector is not None:
            specs.append(detector.contract.input)
        self.min_size = (max((s.width for s in specs), default=1), max((s.height for s in specs), default=1))

    def decode(self, data: bytes) -> Decoded:
        """Decode image bytes no smaller than the largest model input (JPEG draft scaling)."""
        return decode(data, min_size=self.min_size)

    def run(
        self,
        images: Sequence[Decoded | Image.Image],
        *,
        tasks: set[str] | None = None,
        crops: Sequence[CropHint | None] | None = None,
    ) -> list[ImageTags]:
        """Tag a batch of images: the detector once per image if a wanted model uses the vehicle crop, then one
        inference per wanted model for the whole batch.

        `tasks` limits the models run (a model runs if any of its heads is wanted) and the tags returned.
        `crops` optionally gives, per image, a crop already known (e.g. cached per asset) so the detector is
        skipped for it. Every failure is recorded in `errors` under each task it cost; nothing is dropped.
        """
        pictures = [item.image if isinstance(item, Decoded) else item for item in images]
        if crops is not None and len(crops) != len(pictures):
            raise ValueError(f"{len(crops)} crops given for {len(pictures)} images")
        results = [ImageTags() for _ in pictures]
        wanted = [
            (model, [task for task in served if tasks is None or task in tasks])
            for model, served in zip(self.classifiers, self.serves, strict=True)
        ]
        wanted = [(model, model_tasks) for model, model_tasks in wanted if model_tasks]
        crop_tasks = [task for model, model_tasks in wanted if model.contract.crop == "vehicle" for task in model_tasks]
        if crop_tasks:
            for index, picture in enumerate(pictures):
                self._find_crop(picture, results[index], crop_tasks, crops[index] if crops is not None else None)
        pixels = [np.asarray(picture if picture.mode == "RGB" else flatten_to_rgb(picture)) for picture in pictures]
        for model, model_tasks in wanted:  # every model reads each image's pixels, made once here
            self._run_model(model, model_tasks, pixels, results)
        return results

    def _find_crop(self, picture: Image.Image, result: ImageTags, crop_tasks: list[str], hint: CropHint | None) -> None:
        if hint is not None:
            box, result.crop_source = hint
            result.crop = (box[0], box[1], box[2], box[3]) if box is not None else None  # JSON caches give lists
            return
        if self.detector is None:
            result.crop_source = "no_detector"
            return
        try:
            result.crop, result.crop_kind = self.detector.crop(picture)
        except Exception as error:
            logger.warning("detector %s failed", self.detector.name, exc_info=True)
            reason = f"detector {self.detector.name}: {_one_line(error)}"
            for task in crop_tasks:
                result.errors[task] = reason
            return
        result.crop_source = "detector" if result.crop is not None else "no_vehicle"

    def _run_model(
        self, model: ClassifierModel, model_tasks: list[str], pictures: list[np.ndarray], results: list[ImageTags]
    ) -> None:
        rows: list[int] = []
        tensors: list[np.ndarray] = []
        for index, picture in enumerate(pictures):
            result = results[index]
            if any(task in result.errors for task in model_tasks):
                continue  # the detector failed on this image: its error is already recorded
            box = result.crop if model.contract.crop == "vehicle" else None
            try:
                tensors.append(to_tensor(picture, model.contract.input, box=box))
            except Exception as error:
                logger.warning("preprocessing for %s failed", model.name, exc_info=True)
                for task in model_tasks:
                    result.errors[task] = f"preprocessing for {model.name}: {_one_line(error)}"
                continue
            rows.append(index)
        if not rows:
            return
        try:
            outputs = model.run(batch(tensors))
        except Exception as error:
            logger.warning("model %s failed on a batch of %d", model.name, len(rows), exc_info=True)
            reason = f"model {model.name}: {_one_line(error)}"
            for index in rows:
                for task in model_tasks:
                    results[index].errors[task] = reason
            return
        for task in model_tasks:
            for row, index in enumerate(rows):
                results[index].tags[task] = outputs[task][row]
