"""Decode images and turn them into model input tensors exactly as a contract says.

This is the single source of truth for preprocessing: the inference pipeline and the trainer's evaluation
both call `decode` and `to_tensor`, so a model sees the same pixels in training evaluation and production.

Costs (DESIGN.md, "Costs measured"): `decode` asks the JPEG decoder for a DCT-scaled draft no smaller than
needed (a 1600x1200 JPEG for a 224 model: ~6 ms instead of ~30 ms); other formats cannot be decoded reduced,
so a big one is reduced right after decoding, strip by strip with its transparency flattened
(catalog.imaging.reduced_rgb): what a batch holds is images at the models' size, never full-size copies;
`to_tensor` resizes with Pillow,
transposes while still uint8 and normalises with one fused multiply-add per pixel,
`x * (scale / std) + (-mean / std)`, in float32.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from catalog.decoding import big_decode_slot, exif_orientation, reduced_decode
from catalog.imaging import orientation_transpose, reduced_rgb
from classifier.contract import InputSpec

LETTERBOX_FILL = 114  # the grey Ultralytics pads with; detectors are trained on it
WHITE = (255, 255, 255)
# Pillow's reducing_gap: shrink by an integer factor with a box filter first, then resample the rest.
# 3.0 is indistinguishable from a full resample in practice and much cheaper for big non-JPEG images.

# Above this many decoded pixels, an image not reduced by a JPEG draft is reduced by an integer factor (a box
# filter, like the DCT scaling) to no less than min_size: a batch of 32 then holds images at the models' size
# (a 60 MP PNG would be 180 MB in RGB). Below it, images stay exact: they cost little to hold.
REDUCE_ABOVE_PIXELS = 1_000_000
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
_ORIENTATION = 0x0112


@dataclass
class Decoded:
    """An RGB image ready for `to_tensor`, and how it relates to the original file."""

    image: Image.Image
    original_size: tuple[int, int]  # (w, h) of the full-size image, after EXIF orientation
    scale: float  # decoded width / original width (JPEG draft scaling), 1.0 when decoded at full size

    def to_original(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """Map a box in decoded-image pixels to original-image pixels (clamped)."""
        width, height = self.original_size
        x0, y0, x1, y1 = (value / self.scale for value in box)
        return (
            max(0, int(np.floor(x0))),
            max(0, int(np.floor(y0))),
            min(width, int(np.ceil(x1))),
            min(height, int(np.ceil(y1))),
        )


def _normalise_min_size(min_size: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(min_size, int):
        return (min_size, min_size)
    width, height = min_size
    return (int(width), int(height))


def flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited on white; 16-bit and float images scaled to 8 bits."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I") or mode == "F":
        # Pillow's convert clips these to 0-255; scale the real range down instead.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8), mode="L")
        mode = "L"
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*WHITE, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


def decode(data: bytes, *, min_size: tuple[int, int] | int) -> Decoded:
    """Decode image bytes to RGB, oriented by EXIF, transparency flattened on white.

    `min_size` is (width, height) in the final orientation, or one int for both: a JPEG is DCT-scaled
    (`Image.draft`) to the smallest size that still has both dimensions >= min_size; another format bigger than
    REDUCE_ABOVE_PIXELS is reduced by the largest integer factor that keeps both >= min_size, as it is
    converted to RGB (never a second full-size copy). Validation (format, pixel limits) is the caller's business.
    """
    min_width, min_height = _normalise_min_size(min_size)
    image = Image.open(io.BytesIO(data))
    stored_width, stored_height = image.size
    if image.format == "JPEG":
        # A JPEG's EXIF comes before its pixels, so it can be read before the draft, which is asked for in
        # stored (pre-rotation) axes: a 90-degree orientation swaps what we need.
        swaps = image.getexif().get(_ORIENTATION, 1) in _SWAPS_AXES
        image.draft("RGB", (min_height, min_width) if swaps else (min_width, min_height))
    # PNG and WebP may store their EXIF after the pixels: exif_orientation finds it without decoding them.
    orientation = exif_orientation(image, data)
    swaps = orientation in _SWAPS_AXES
    original_size = (stored_height, stored_width) if swaps else (stored_width, stored_height)
    needed = (min_height, min_width) if swaps else (min_width, min_height)
    factor = _reduction(image.size, needed)
    # A PNG or WebP is decoded reduced (never at full size); what else is big waits for the machine's big-decode slot.
    rgb = reduced_decode(image, data, (factor, factor), to_rgb=flatten_to_rgb) if image.mode not in ("I", "F") else None
    if rgb is None:
        with big_decode_slot(image.width * image.height):
            image.load()
            rgb = _reduced_to_rgb(image, factor)
            if rgb is not image:
                image.close()  # the full-size pixels go now, not when the caller's batch is done
    rgb = orientation_transpose(rgb, orientation)
    return Decoded(image=rgb, original_size=original_size, scale=rgb.width / original_size[0])


def decoded_size(original_size: tuple[int, int], image_format: str, min_size: tuple[int, int] | int) -> tuple[int, int]:
    """The (w, h) `decode` gives an image of this size (as viewed) and format, computed without decoding it: the
    JPEG draft's scale (1, 2, 4 or 8, as Pillow picks it), then the integer reduction of a big decode."""
    min_width, min_height = _normalise_min_size(min_size)
    width, height = original_size
    if image_format == "JPEG":
        fits = min(width // max(1, min_width), height // max(1, min_height))
        scale = 8 if fits >= 8 else 4 if fits >= 4 else 2 if fits >= 2 else 1
        width, height = -(-width // scale), -(-height // scale)
    if width * height > REDUCE_ABOVE_PIXELS:
        factor = max(1, min(width // max(1, min_width), height // max(1, min_height)))
        width, height = -(-width // factor), -(-height // factor)
    return width, height


def decoded_from(
    image: Image.Image, *, original_size: tuple[int, int], image_format: str, min_size: tuple[int, int] | int
) -> Decoded | None:
    """What `decode` would give, made from an RGB decode of the same bytes that is at least as big (the one behind an
    asset's keys and thumbnail: catalog.imaging.inspect_image_viewed), so that a new image is decoded once: reduced
    to decode's dimensions with a box filter, which stands for the JPEG DCT scaling. None when it is smaller."""
    target = decoded_size(original_size, image_format, min_size)
    if image.width < target[0] or image.height < target[1]:
        return None
    if image.size != target:
        factor_x, factor_y = image.width // target[0], image.height // target[1]
        exact = (-(-image.width // factor_x), -(-image.height // factor_y)) == target
        image = image.reduce((factor_x, factor_y)) if exact else image.resize(target, Image.Resampling.BOX)
    return Decoded(image=image, original_size=original_size, scale=image.width / original_size[0])


def _reduction(size: tuple[int, int], needed: tuple[int, int]) -> int:
    """The integer factor a decode of this size (stored axes) is reduced by: the largest that keeps both sides at
    `needed` or more (min_size in stored axes), 1 up to REDUCE_ABOVE_PIXELS."""
    width, height = size
    if width * height <= REDUCE_ABOVE_PIXELS:
        return 1
    return max(1, min(width // max(1, needed[0]), height // max(1, needed[1])))


def _reduced_to_rgb(image: Image.Image, factor: int) -> Image.Image:
    """The loaded image in RGB, reduced by `factor`."""
    if image.mode in ("I", "F"):
        # flatten_to_rgb scales these by the whole image's range, which one strip does not know.
        rgb = flatten_to_rgb(image)
        return rgb.reduce(factor) if factor > 1 else rgb
    return reduced_rgb(image, factor, to_rgb=flatten_to_rgb)


def letterbox_geometry(src_size: tuple[int, int], dst_size: tuple[int, int]) -> tuple[float, int, int, int, int]:
    """(ratio, pad_x, pad_y, scaled_w, scaled_h) fitting src (w, h) inside dst (w, h), centred."""
    src_w, src_h = src_size
    dst_w, dst_h = dst_size
    ratio = min(dst_w / src_w, dst_h / src_h)
    scaled_w = min(dst_w, max(1, round(src_w * ratio)))
    scaled_h = min(dst_h, max(1, round(src_h * ratio)))
    return ratio, (dst_w - scaled_w) // 2, (dst_h - scaled_h) // 2, scaled_w, scaled_h


def letterbox_params(src_size: tuple[int, int], dst_size: tuple[int, int]) -> tuple[float, int, int]:
    """(ratio, pad_x, pad_y) for a letterbox of src (w, h) into dst (w, h): dst = src * ratio + pad."""
    ratio, pad_x, pad_y, _, _ = letterbox_geometry(src_size, dst_size)
    return ratio, pad_x, pad_y


def _scale_and_bias(spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per tensor channel, a and b such that (x * scale - mean) / std == x * a + b, in float32."""
    std = np.asarray(spec.std, dtype=np.float64)
    scale = (spec.scale / std).astype(np.float32)
    bias = (-np.asarray(spec.mean, dtype=np.float64) / std).astype(np.float32)
    return scale, bias


def _resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # OpenCV's bilinear (SIMD) costs ~0.17 ms for 512x384 -> 224x224 here, Pillow's ~2.7 ms: the resize was
    # a quarter of the whole per-image cost. It differs from Pillow's by ~1.4 grey levels on average.
    return cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR)


def resized_pixels(
    image: Image.Image | np.ndarray, spec: InputSpec, box: tuple[int, int, int, int] | None
) -> np.ndarray:
    """(H, W, 3) uint8 at the contract's size, after the crop box and the resize mode."""
    pixels = np.asarray(image)
    if box is not None:
        x0, y0, x1, y1 = box
        height, width = pixels.shape[:2]
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"crop box {box} is empty or outside the {width}x{height} image")
        pixels = pixels[y0:y1, x0:x1]  # a real crop (a view): nothing outside the box reaches the filter
    if spec.resize == "stretch":
        return _resize(pixels, spec.size)
    _, pad_x, pad_y, scaled_w, scaled_h = letterbox_geometry((pixels.shape[1], pixels.shape[0]), spec.size)
    canvas = np.full((spec.height, spec.width, 3), LETTERBOX_FILL, dtype=np.uint8)
    canvas[pad_y : pad_y + scaled_h, pad_x : pad_x + scaled_w] = _resize(pixels, (scaled_w, scaled_h))
    return canvas


def to_tensor(
    image: Image.Image | np.ndarray, spec: InputSpec, *, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """A batch of one, (1, 3, H, W) or (1, H, W, 3), float32 normalised or raw uint8, as `spec` says.

    `image` is a PIL image or its (H, W, 3) RGB uint8 pixels (pass the array when several models read one
    image: np.asarray once). `box` (x0, y0, x1, y1) in image pixels crops before resizing.
    """
    if isinstance(image, Image.Image) and image.mode != "RGB":
        image = flatten_to_rgb(image)
    pixels = resized_pixels(image, spec, box)  # (H, W, 3) RGB uint8
    if spec.channels == "BGR":
        pixels = pixels[..., ::-1]  # a view
    if spec.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)  # a view, still uint8: the float work happens once, below
    if spec.dtype == "uint8":
        return np.ascontiguousarray(pixels)[None]
    # Measured on a 224x224 image: each branch below is ~0.15-0.5 ms; a float transpose or a per-pixel
    # broadcast over a trailing axis of 3 costs several times that.
    scale, bias = _scale_and_bias(spec)
    out = np.empty((1, *pixels.shape), dtype=np.float32)
    if spec.layout == "NCHW":
        np.multiply(pixels, scale[:, None, None], out=out[0])
        out[0] += bias[:, None, None]
    elif spec.channels == "RGB":
        # Treat each row as W*3 values so the coefficients broadcast along one long contiguous axis.
        rows = pixels.reshape(spec.height, spec.width * 3)
        flat_out = out[0].reshape(spec.height, spec.width * 3)
        np.multiply(rows, np.tile(scale, spec.width), out=flat_out)
        flat_out += np.tile(bias, spec.width)
    else:
        for channel in range(3):
            np.multiply(pixels[..., channel], scale[channel], out=out[0, ..., channel])
            out[0, ..., channel] += bias[channel]
    return out


def batch(tensors: list[np.ndarray]) -> np.ndarray:
    """Stack batches of one (or more) from `to_tensor` into one batch."""
    if not tensors:
        raise ValueError("cannot batch an empty list of tensors")
    return np.concatenate(tensors, axis=0)
