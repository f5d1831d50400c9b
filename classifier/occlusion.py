"""Occlusion maps: where a model looks, found by hiding parts of the image and watching its score fall.

A grey patch slides over the image the model sees (the crop, already at the model's input size); each
position's value is the chosen label's baseline probability minus its probability with the patch there.
It needs nothing but the model's forward pass, so it works for any ONNX model registered by contract.

No Django import here: a command-line tool can explain a model with it too.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

ScoreFn = Callable[[np.ndarray], np.ndarray]  # uint8 [N, H, W, 3] -> probabilities [N, K]
Progress = Callable[[int, int], None]  # (images scored so far, images to score)

GREY = (128, 128, 128)
DEFAULT_BATCH = 32


def patch_positions(length: int, patch: int, stride: int) -> list[int]:
    """Start offsets of a patch along one axis: every `stride`, plus one flush with the end so the last
    pixels are covered too."""
    if patch <= 0 or stride <= 0:
        raise ValueError(f"patch ({patch}) and stride ({stride}) must be positive")
    if patch > length:
        raise ValueError(f"a {patch}-pixel patch does not fit in {length} pixels")
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] + patch < length:
        starts.append(length - patch)
    return starts


def occlusion_map(
    score_fn: ScoreFn,
    tensor_image: np.ndarray,
    *,
    label_index: int,
    patch: int,
    stride: int,
    fill: tuple[int, int, int] = GREY,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """The drop in the label's probability for each patch position, as a [rows, cols] float64 grid.

    `tensor_image` is the (H, W, 3) uint8 picture the model sees. Cell (i, j) is the patch whose top-left
    corner is (ys[i], xs[j]) of `patch_positions`. A negative value means hiding that part made the label
    more likely. `score_fn` is called with batches of at most `batch_size` images; `progress` after each.
    """
    image = np.asarray(tensor_image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    ys, xs = patch_positions(height, patch, stride), patch_positions(width, patch, stride)
    baseline_scores = np.asarray(score_fn(image[None]), dtype=np.float64)
    if baseline_scores.ndim != 2 or not 0 <= label_index < baseline_scores.shape[1]:
        raise ValueError(f"label index {label_index} is outside scores of shape {baseline_scores.shape}")
    baseline = float(baseline_scores[0, label_index])
    positions = [(y, x) for y in ys for x in xs]
    drops = np.empty(len(positions), dtype=np.float64)
    grey = np.asarray(fill, dtype=np.uint8)
    for start in range(0, len(positions), batch_size):
        chunk = positions[start : start + batch_size]
        occluded = np.repeat(image[None], len(chunk), axis=0)
        for row, (y, x) in enumerate(chunk):
            occluded[row, y : y + patch, x : x + patch] = grey
        scores = np.asarray(score_fn(occluded), dtype=np.float64)
        if scores.shape[0] != len(chunk):
            raise ValueError(f"score_fn gave {scores.shape[0]} rows for {len(chunk)} images")
        drops[start : start + len(chunk)] = baseline - scores[:, label_index]
        if progress is not None:
            progress(start + len(chunk), len(positions))
    return drops.reshape(len(ys), len(xs))


def spread_to_pixels(grid: np.ndarray, *, shape: tuple[int, int], patch: int, stride: int) -> np.ndarray:
    """A per-pixel map of `shape` (H, W): each pixel gets the mean drop of the patches that covered it."""
    height, width = shape
    ys, xs = patch_positions(height, patch, stride), patch_positions(width, patch, stride)
    grid = np.asarray(grid, dtype=np.float64)
    if grid.shape != (len(ys), len(xs)):
        raise ValueError(f"a grid of {grid.shape} does not match {len(ys)}x{len(xs)} patch positions")
    total = np.zeros((height, width), dtype=np.float64)
    count = np.zeros((height, width), dtype=np.float64)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            total[y : y + patch, x : x + patch] += grid[i, j]
            count[y : y + patch, x : x + patch] += 1
    return total / np.maximum(count, 1)


def heatmap_rgba(values: np.ndarray, size: tuple[int, int], *, scale: float | None = None) -> np.ndarray:
    """(H, W, 4) uint8 for a map of drops resized to `size` (width, height): transparent where nothing
    dropped, red through yellow as the drop nears `scale` (by default the largest drop)."""
    values = np.asarray(values, dtype=np.float32)
    width, height = size
    resized = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    top = float(values.max(initial=0.0)) if scale is None else scale
    if top <= 1e-9:
        return np.zeros((height, width, 4), dtype=np.uint8)
    level = np.clip(resized / top, 0.0, 1.0)  # a rise in the score (negative drop) shows as nothing
    rgba = np.empty((height, width, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = np.round(255 * level)  # red for a small drop, yellow for the largest
    rgba[..., 2] = 0
    rgba[..., 3] = np.round(220 * np.sqrt(level))  # sqrt: small but real drops stay visible
    return rgba


def heatmap_png(grid: np.ndarray, size: tuple[int, int], *, scale: float | None = None) -> bytes:
    """An RGBA PNG of `heatmap_rgba(grid, size)`, for overlay on the picture it explains."""
    buffer = io.BytesIO()
    Image.fromarray(heatmap_rgba(grid, size, scale=scale)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()
