"""Penultimate features of assets under a model version, cached per asset: what head refitting reads.

A candidate head is fitted on the embedding that the parent model computes in production, so the features
are computed exactly as production classifies: the stored original decoded by `preprocess.decode` at the
size the active models ask for (JPEG draft), cropped like the pipeline (the crop this version was classified
on, else the active detector's cached box when the contract crops to the vehicle, else the whole image), and
preprocessed by `preprocess.to_tensor`. Each vector is stored in FeatureVector once per (asset, version,
tensor): the second training on the same assets computes nothing, and heads that read the same embedding
(image_type and color of the vehicle model) share the rows.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np
import onnx

from catalog.models import ImageAsset
from classifier.contract import ClassifierContract, DetectorContract, parse_contract
from classifier.models import Classification, Detection, FeatureVector, ModelHead, ModelVersion
from classifier.preprocess import Decoded, decode
from classifier.runtime import CropBox
from classifier.training.adapter import SUFFIX, with_input_adapter
from classifier.training.refit import BATCH, FeatureExtractor, find_head
from core.errors import ApplicationError

Progress = Callable[[int, int], None]


class FeatureError(ApplicationError):
    """Features cannot be computed (no such head, an unreadable original); the message says why in one line."""

    code = "features_refused"


# One extractor (one ONNX session) per process, version and tensor, created on first use in the process that
# uses it (a Celery child after the fork), like inference's sessions, and keyed like them by the version's id and
# file SHA-256 (an id can come back for another file: SQLite reuses ids after a rollback). Keyed by head output too,
# so a second head on the same embedding finds the extractor without parsing the model again.
_Model = tuple[int, str]  # (version id, file SHA-256)
_extractors: dict[tuple[int, _Model, str], FeatureExtractor] = {}
_tensor_of_output: dict[tuple[_Model, str], str] = {}
_lock = threading.Lock()


def forget_extractors() -> None:
    """Drops the sessions this process holds."""
    with _lock:
        _extractors.clear()
        _tensor_of_output.clear()


def _head(version: ModelVersion, task: str) -> ModelHead:
    head = ModelHead.objects.filter(model_version=version, task=task).first()
    if head is None:
        raise FeatureError(f"model {version.name} does not tag {task}")
    return head


def _contract(version: ModelVersion) -> ClassifierContract:
    contract = parse_contract(version.contract)
    if not isinstance(contract, ClassifierContract):
        raise FeatureError(f"model {version.name} is not a classifier")
    return contract


def extractor_for(*, version: ModelVersion, output: str, adapter: bool = False) -> FeatureExtractor:
    """The process's FeatureExtractor for this version's head `output` (one session per version and tensor); with
    `adapter`, of the version with that head on the input adapter (classifier.training.adapter): its features are the
    embedding and the input's cell means."""
    pid = os.getpid()
    model = (version.pk, version.sha256)
    key = (model, output + SUFFIX if adapter else output)
    with _lock:
        tensor = _tensor_of_output.get(key)
        if tensor is not None and (pid, model, tensor) in _extractors:
            return _extractors[(pid, model, tensor)]
        with version.file.open("rb") as handle:
            data = handle.read()
        if adapter:
            spec = _contract(version).input
            adapted = with_input_adapter(data, output, layout=spec.layout, size=(spec.height, spec.width))
            data = adapted.SerializeToString()
        tensor = find_head(onnx.load_from_string(data), output).features
        _tensor_of_output[key] = tensor
        extractor = _extractors.get((pid, model, tensor))
        if extractor is None:
            extractor = FeatureExtractor(data, output)
            _extractors[(pid, model, tensor)] = extractor
        return extractor


def _active_detector() -> ModelVersion | None:
    return ModelVersion.objects.filter(kind=ModelVersion.Kind.DETECTOR, status=ModelVersion.Status.ACTIVE).first()


def crop_boxes(*, version: ModelVersion, task: str, asset_ids: list[int]) -> dict[int, list[int] | None]:
    """The crop (original pixels, or None for the whole image) of each asset, as production gives it to this
    version's `task` head; two queries whatever the number of assets.

    The version's own Classification of the asset records the crop it was classified on (None when it saw
    the whole image). Without one, a vehicle-cropping contract takes the active detector's cached Detection
    box (None: no vehicle); with no detector or no cached box, the whole image, as the pipeline's documented
    no-detector fallback does.
    """
    if _contract(version).crop != "vehicle":
        return dict.fromkeys(asset_ids)
    boxes: dict[int, list[int] | None] = {}
    detector = _active_detector()
    if detector is not None:
        boxes.update(
            Detection.objects.filter(model_version=detector, asset_id__in=asset_ids).values_list("asset_id", "box")
        )
    boxes.update(
        Classification.objects.filter(
            model_version=version, task=task, status=Classification.Status.OK, asset_id__in=asset_ids
        ).values_list("asset_id", "crop_box")
    )
    return {asset_id: boxes.get(asset_id) for asset_id in asset_ids}


def asset_crop_box(*, version: ModelVersion, task: str, asset: ImageAsset) -> list[int] | None:
    """The crop [x0, y0, x1, y1] in original pixels that production gives `version`'s `task` head for this
    asset, or None for the whole image (see `crop_boxes`)."""
    return crop_boxes(version=version, task=task, asset_ids=[asset.pk])[asset.pk]


def _decode_size(version: ModelVersion, contract: ClassifierContract) -> tuple[int, int]:
    """The smallest decode production asks for when this version runs beside the active models.

    `inference.load_models` decodes each image once for every active model (and the detector when a model
    crops), no smaller than the largest input; the JPEG draft scale, hence the pixels, depends on it.
    """
    specs = [contract.input]
    crops = contract.crop == "vehicle"
    active = ModelVersion.objects.filter(heads__is_active=True, kind=ModelVersion.Kind.CLASSIFIER).distinct()
    for other in active:
        other_contract = parse_contract(other.contract)
        if isinstance(other_contract, ClassifierContract):
            specs.append(other_contract.input)
            crops = crops or other_contract.crop == "vehicle"
    detector = _active_detector()
    if crops and detector is not None:
        detector_contract = parse_contract(detector.contract)
        if isinstance(detector_contract, DetectorContract):
            specs.append(detector_contract.input)
    return (max(spec.width for spec in specs), max(spec.height for spec in specs))


def _to_decoded(box: list[int] | None, image: Decoded) -> CropBox | None:
    # As inference._to_decoded: the cached box is in original pixels, the tensor is made from the draft.
    if box is None:
        return None
    x0, y0, x1, y1 = (round(value * image.scale) for value in box)
    return (x0, y0, x1, y1)


def _cached(version: ModelVersion, tensor: str, asset_ids: list[int]) -> dict[int, np.ndarray]:
    found: dict[int, np.ndarray] = {}
    for start in range(0, len(asset_ids), 5000):
        rows = FeatureVector.objects.filter(
            model_version=version, tensor=tensor, asset_id__in=asset_ids[start : start + 5000]
        ).values_list("asset_id", "data")
        for asset_id, data in rows:
            found[asset_id] = np.frombuffer(bytes(data), dtype="<f4")
    return found


def _compute(
    *,
    version: ModelVersion,
    task: str,
    contract: ClassifierContract,
    extractor: FeatureExtractor,
    asset_ids: list[int],
    size: tuple[int, int],
) -> dict[int, np.ndarray]:
    """Features of one batch of assets, stored before they are returned (a killed worker keeps them)."""
    assets = ImageAsset.objects.in_bulk(asset_ids)
    missing = [asset_id for asset_id in asset_ids if asset_id not in assets]
    if missing:
        raise FeatureError(f"asset {missing[0]} does not exist")
    boxes = crop_boxes(version=version, task=task, asset_ids=asset_ids)
    images: list[Decoded] = []
    decoded_boxes: list[CropBox | None] = []
    for asset_id in asset_ids:
        asset = assets[asset_id]
        try:
            with asset.original.open("rb") as handle:
                image = decode(handle.read(), min_size=size)
        except Exception as exc:  # one line, naming the asset: the job fails with it
            raise FeatureError(f"asset {asset_id}: cannot read {asset.original.name}: {exc}") from exc
        images.append(image)
        decoded_boxes.append(_to_decoded(boxes[asset_id], image))
    features = extractor.features_of_images(images, contract, boxes=decoded_boxes)
    vectors = dict(zip(asset_ids, features.astype("<f4"), strict=True))
    FeatureVector.objects.bulk_create(
        [
            FeatureVector(
                asset_id=asset_id, model_version=version, tensor=extractor.head.features, data=vector.tobytes()
            )
            for asset_id, vector in vectors.items()
        ],
        ignore_conflicts=True,  # a concurrent job stored the same vectors: they are equal
    )
    return vectors


def asset_features(
    *,
    version: ModelVersion,
    task: str,
    asset_ids: list[int],
    progress: Progress | None = None,
    adapter: bool = False,
) -> np.ndarray:
    """Penultimate features [len(asset_ids), D] (float32) of the tensor that `version`'s `task` head reads, one
    row per asset id in the given order (repeats allowed).

    Cached vectors are read from FeatureVector; only the missing ones are computed, 32 at a time, on the crop
    production uses (`crop_boxes`), and stored batch by batch. `progress(done, total)` counts distinct
    assets, cached ones included. Raises FeatureError when the version has no head for the task or an
    original cannot be read or decoded.
    """
    head = _head(version, task)
    contract = _contract(version)
    extractor = extractor_for(version=version, output=head.output, adapter=adapter)
    tensor = extractor.head.features
    distinct = list(dict.fromkeys(asset_ids))
    vectors = _cached(version, tensor, distinct)
    todo = [asset_id for asset_id in distinct if asset_id not in vectors]
    total = len(distinct)
    size = _decode_size(version, contract) if todo else (0, 0)
    if progress is not None:
        progress(total - len(todo), total)
    for start in range(0, len(todo), BATCH):
        chunk = todo[start : start + BATCH]
        vectors.update(
            _compute(version=version, task=task, contract=contract, extractor=extractor, asset_ids=chunk, size=size)
        )
        if progress is not None:
            progress(total - len(todo) + start + len(chunk), total)
    if not asset_ids:
        return np.zeros((0, extractor.head.n_features), dtype=np.float32)
    return np.stack([vectors[asset_id] for asset_id in asset_ids]).astype(np.float32, copy=False)
