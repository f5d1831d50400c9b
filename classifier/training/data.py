"""Training data from the procedural generator, pre-generated once into memory as uint8 arrays.

Every image goes through what the pipeline does to it: JPEG-encoded (as a CDN serves it), then decoded by
``preprocess.decode`` (with JPEG draft scaling). Each vehicle scene then gives two training items at once:
the vehicle crop at 224x224 (ground-truth box plus the detector's margin, with jitter on every edge, the way
the detector would cut it; the whole image when there is no vehicle) and the 192x192 letterbox of the whole
scene with its boxes for the detector. Each shopping scene gives the whole image at 224x224. Resizing is the
runtime's (Pillow bilinear with the same reducing gap, letterbox fill 114), and normalisation reads the
contract's scale/mean/std, so training sees what the product feeds the exported model.

Augmentation happens per batch in torch: horizontal flip, a random zoom-and-shift crop (scale 0.75-1),
brightness/contrast jitter that keeps colours (no hue shift: the colour head must not learn that red can
look green), and resampling to the training resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Literal

import numpy as np
import torch
from PIL import Image

from classifier.contract import InputSpec
from classifier.preprocess import letterbox_geometry, resized_pixels
from classifier.synth import COLORS, IMAGE_TYPES, INTENT_LABELS, SENSITIVE_LABELS

from .detector import CLASS_OF_KIND
from .samples import as_received, color_label, generate

CLASSIFIER_SIZE = 224
DETECTOR_SIZE = 192
CROP_MARGIN = 0.1  # the detector contract's margin: the crop the classifier is trained on is the one it gets


@dataclass
class VehicleData:
    crops: np.ndarray  # (N, 224, 224, 3) uint8
    image_type: np.ndarray  # (N,) int64
    color: np.ndarray  # (N,) int64, -1 where the image has no colour (no vehicle)
    scenes: np.ndarray  # (N, 192, 192, 3) uint8 letterboxed whole image
    boxes: list[np.ndarray]  # per scene (K, 4) float32 x0, y0, x1, y1 in letterbox pixels
    box_classes: list[np.ndarray]  # per scene (K,) int64: each box's detector class (detector.CLASSES)


@dataclass
class IntentData:
    images: np.ndarray  # (N, 224, 224, 3) uint8
    intent: np.ndarray
    sensitive: np.ndarray


def jittered_crop(
    box: tuple[float, ...], image_size: tuple[int, int], rng: np.random.Generator, *, jitter: float = 0.08
) -> tuple[int, int, int, int]:
    """The box grown by the detector's margin, each edge moved by up to ``jitter`` x the box size."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    moves = rng.uniform(-jitter, jitter, 4) + CROP_MARGIN * np.array([-1, -1, 1, 1])
    width, height = image_size
    left = max(0, math.floor(x0 + moves[0] * w))
    top = max(0, math.floor(y0 + moves[1] * h))
    right = min(width, math.ceil(x1 + moves[2] * w))
    bottom = min(height, math.ceil(y1 + moves[3] * h))
    if right - left < 8 or bottom - top < 8:
        return (0, 0, width, height)
    return (left, top, right, bottom)


def resize(image: Image.Image, size: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Stretch (box of) the image to size x size with the runtime's own resize (``preprocess.to_tensor``)."""
    return resized_pixels(image, _spec(size, "stretch"), box)


def letterbox(image: Image.Image, size: int) -> tuple[np.ndarray, float, int, int]:
    ratio, pad_x, pad_y, _, _ = letterbox_geometry(image.size, (size, size))
    return resized_pixels(image, _spec(size, "letterbox"), None), ratio, pad_x, pad_y


def _spec(size: int, resize_mode: Literal["stretch", "letterbox"]) -> InputSpec:
    return InputSpec(
        name="x", layout="NHWC", height=size, width=size, dtype="uint8", channels="RGB", scale=1.0,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize=resize_mode,
    )  # fmt: skip


def _vehicle_item(seed: int) -> tuple[np.ndarray, int, int, np.ndarray, np.ndarray, np.ndarray]:
    sample = generate(seed, "vehicle")
    image, scale = as_received(sample.image, CLASSIFIER_SIZE)
    rng = np.random.default_rng([seed, 1])
    sample_boxes = [tuple(value * scale for value in box) for box in sample.boxes]
    if sample_boxes:
        crop = resize(image, CLASSIFIER_SIZE, jittered_crop(sample_boxes[0], image.size, rng))
    elif rng.random() < 0.25:
        # Detectors sometimes fire on a placeholder graphic: teach the classifier that part of one is still one.
        w, h = image.size
        cw, ch = int(w * rng.uniform(0.5, 0.95)), int(h * rng.uniform(0.5, 0.95))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = resize(image, CLASSIFIER_SIZE, (x0, y0, x0 + cw, y0 + ch))
    else:
        crop = resize(image, CLASSIFIER_SIZE)
    scene, ratio, pad_x, pad_y = letterbox(image, DETECTOR_SIZE)
    boxes = np.array(
        [
            [x0 * ratio + pad_x, y0 * ratio + pad_y, x1 * ratio + pad_x, y1 * ratio + pad_y]
            for x0, y0, x1, y1 in sample_boxes
        ],
        dtype=np.float32,
    ).reshape(-1, 4)
    color = color_label(sample)
    color_index = COLORS.index(color) if color is not None else -1
    classes = np.array([CLASS_OF_KIND[kind] for kind in sample.kinds], dtype=np.int64).reshape(-1)
    return crop, IMAGE_TYPES.index(sample.image_type), color_index, scene, boxes, classes


def _intent_item(seed: int) -> tuple[np.ndarray, int, int]:
    sample = generate(seed, "intent")
    image, _ = as_received(sample.image, CLASSIFIER_SIZE)
    return resize(image, CLASSIFIER_SIZE), INTENT_LABELS.index(sample.intent), SENSITIVE_LABELS.index(sample.sensitive)


def _pool_map(function: Callable, seeds: list[int], workers: int, progress: Callable[[int], None] | None) -> list:
    if workers <= 1:
        results = []
        for seed in seeds:
            results.append(function(seed))
            if progress:
                progress(1)
        return results
    with get_context("fork").Pool(workers) as pool:
        results = []
        for item in pool.imap(function, seeds, chunksize=16):
            results.append(item)
            if progress:
                progress(1)
        return results


def generate_vehicle_data(
    seeds: list[int], *, workers: int = 2, progress: Callable[[int], None] | None = None
) -> VehicleData:
    items = _pool_map(_vehicle_item, seeds, workers, progress)
    return VehicleData(
        crops=np.stack([item[0] for item in items]),
        image_type=np.array([item[1] for item in items], dtype=np.int64),
        color=np.array([item[2] for item in items], dtype=np.int64),
        scenes=np.stack([item[3] for item in items]),
        boxes=[item[4] for item in items],
        box_classes=[item[5] for item in items],
    )


def generate_intent_data(
    seeds: list[int], *, workers: int = 2, progress: Callable[[int], None] | None = None
) -> IntentData:
    items = _pool_map(_intent_item, seeds, workers, progress)
    return IntentData(
        images=np.stack([item[0] for item in items]),
        intent=np.array([item[1] for item in items], dtype=np.int64),
        sensitive=np.array([item[2] for item in items], dtype=np.int64),
    )


# --- batches --------------------------------------------------------------------------------------------------


def normalise(pixels: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> float (N, 3, H, W) channels-last memory, scaled as the contract says.

    The model's NHWC input layout (if any) is handled inside the network, so training always feeds NCHW.
    """
    x = pixels.permute(0, 3, 1, 2).float()
    scale = torch.tensor(spec.scale) / torch.tensor(spec.std).view(1, 3, 1, 1)
    bias = -torch.tensor(spec.mean).view(1, 3, 1, 1) / torch.tensor(spec.std).view(1, 3, 1, 1)
    return (x * scale + bias).contiguous(memory_format=torch.channels_last)


def augment(pixels: torch.Tensor, rng: torch.Generator, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8, flipped, zoomed/shifted and lit at random per image."""
    n = pixels.shape[0]
    x = pixels.permute(0, 3, 1, 2).float()
    flip = torch.rand(n, generator=rng) < 0.5
    x[flip] = x[flip].flip(3)
    scale = torch.empty(n).uniform_(0.75, 1.0, generator=rng)
    shift = (1 - scale).unsqueeze(1) * torch.empty(n, 2).uniform_(-1, 1, generator=rng)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = torch.nn.functional.affine_grid(theta, [n, 3, size, size], align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = torch.empty(n, 1, 1, 1).uniform_(0.85, 1.15, generator=rng)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.85, 1.15, generator=rng)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * brightness
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def batches(n: int, batch_size: int, rng: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches; a last batch smaller than half a batch is dropped (noisy batch-norm statistics)."""
    order = torch.randperm(n, generator=rng)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        if len(index) >= max(2, batch_size // 2) or start == 0:
            yield index


def steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return max(1, full + (rest >= max(2, batch_size // 2)))
