"""Seeded randomness, gradients, fonts and the camera effects shared by the generators."""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from typing import TypeVar

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from .labels import Box

T = TypeVar("T")
RGB = tuple[int, int, int]
Point = tuple[float, float]


class Rand:
    """Every random choice of one sample comes from one ``np.random.default_rng(seed)``."""

    def __init__(self, seed: int | Sequence[int]) -> None:
        self.gen = np.random.default_rng(seed)

    def uniform(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return float(self.gen.uniform(lo, hi))

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``, both ends included."""
        return int(self.gen.integers(lo, hi + 1))

    def chance(self, p: float) -> bool:
        return bool(self.gen.random() < p)

    def pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.gen.integers(len(seq)))]

    def weighted(self, seq: Sequence[T], weights: Sequence[float]) -> T:
        w = np.asarray(weights, dtype=float)
        return seq[int(self.gen.choice(len(seq), p=w / w.sum()))]

    def sign(self) -> int:
        return 1 if self.gen.random() < 0.5 else -1


def clamp(v: float, lo: int = 0, hi: int = 255) -> int:
    return int(min(hi, max(lo, round(v))))


def shade(rgb: Sequence[float], factor: float) -> RGB:
    """Darker (factor < 1) or brighter (factor > 1) version of a colour."""
    r, g, b = rgb
    return clamp(r * factor), clamp(g * factor), clamp(b * factor)


def mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return clamp(a[0] + (b[0] - a[0]) * t), clamp(a[1] + (b[1] - a[1]) * t), clamp(a[2] + (b[2] - a[2]) * t)


def random_rgb(rnd: Rand, lo: int = 0, hi: int = 255) -> RGB:
    return rnd.integer(lo, hi), rnd.integer(lo, hi), rnd.integer(lo, hi)


def gradient_column(height: int, stops: Sequence[tuple[float, Sequence[float]]]) -> np.ndarray:
    """``(height, 3)`` float array interpolating colour ``stops`` given as ``(position 0..1, rgb)``."""
    ys = np.linspace(0.0, 1.0, max(height, 1))
    pos = [s[0] for s in stops]
    return np.stack([np.interp(ys, pos, [s[1][i] for s in stops]) for i in range(3)], axis=1)


def vertical_gradient(size: tuple[int, int], stops: Sequence[tuple[float, Sequence[float]]]) -> Image.Image:
    w, h = size
    col = np.clip(gradient_column(h, stops), 0, 255).astype(np.uint8)
    return Image.fromarray(col[:, None, :], "RGB").resize((max(w, 1), max(h, 1)), Image.Resampling.NEAREST)


def paste_gradient(
    img: Image.Image, polygon: Sequence[Point], stops: Sequence[tuple[float, Sequence[float]]]
) -> Box | None:
    """Fill ``polygon`` with a vertical gradient; returns the polygon's bounding box in the image."""
    x0, y0, x1, y1 = polygon_bounds(polygon)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    if w <= 1 or h <= 1:
        return None
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in polygon], fill=255)
    img.paste(vertical_gradient((w, h), stops), (x0, y0), mask)
    return x0, y0, x1, y1


def polygon_bounds(points: Sequence[Point]) -> Box:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1


def clip_box(box: Sequence[float], size: tuple[int, int]) -> Box | None:
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(size[0], int(box[2])), min(size[1], int(box[3]))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's embedded font (no font files needed); sizes are rounded so the cache stays small."""
    return ImageFont.load_default(size=max(8, int(size) // 2 * 2))


def text_size(draw: ImageDraw.ImageDraw, text: str, size: int) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font(size))
    return int(x1 - x0), int(y1 - y0)


def fit_text_size(draw: ImageDraw.ImageDraw, text: str, max_width: float, start: int) -> int:
    size = max(8, start)
    while size > 8 and text_size(draw, text, size)[0] > max_width:
        size = int(size * 0.85)
    return size


def centered_text(draw: ImageDraw.ImageDraw, center: Point, text: str, size: int, fill: Sequence[int]) -> None:
    draw.text(center, text, font=font(size), fill=tuple(fill), anchor="mm")


def soft_shadow(img: Image.Image, box: Sequence[float], strength: float, color: RGB = (0, 0, 0)) -> None:
    """Darken a blurred ellipse inside ``box`` (drawn small and scaled up: blurring is cheap that way)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = x1 - x0, y1 - y0
    if w < 4 or h < 2:
        return
    sw, sh = max(8, w // 6), max(6, h // 3)
    mask = Image.new("L", (sw, sh), 0)
    ImageDraw.Draw(mask).ellipse((sw * 0.12, sh * 0.2, sw * 0.88, sh * 0.8), fill=clamp(255 * strength))
    mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, sh * 0.18))).resize((w, h), Image.Resampling.BILINEAR)
    img.paste(color, (x0, y0, x1, y1), mask)


def lighting(img: Image.Image, rnd: Rand, strength: float = 1.0) -> Image.Image:
    """Jitter brightness, contrast and colour temperature with one lookup table (cheap, done in C)."""
    bright = 1.0 + rnd.uniform(-0.15, 0.12) * strength
    contrast = 1.0 + rnd.uniform(-0.18, 0.15) * strength
    temp = rnd.uniform(-0.07, 0.07) * strength
    x = np.arange(256, dtype=float)
    base = ((x - 128.0) * contrast + 128.0) * bright
    luts = [base * (1 + temp), base * (1 + temp * 0.2), base * (1 - temp)]
    lut = np.clip(np.concatenate(luts), 0, 255).astype(np.uint8)
    return img.point(lut.tolist())


def add_noise(img: Image.Image, rnd: Rand, amplitude: int, color: bool = False) -> Image.Image:
    """Uniform sensor noise of +-``amplitude`` levels, luminance-only unless ``color``."""
    if amplitude <= 0:
        return img
    w, h = img.size
    span = 2 * amplitude
    scale = np.arange(256, dtype=np.int32) * (span + 1) // 256
    if color:
        noise = Image.frombytes("RGB", (w, h), rnd.gen.bytes(w * h * 3)).point(scale.tolist() * 3)
    else:
        grey = Image.frombytes("L", (w, h), rnd.gen.bytes(w * h)).point(scale.tolist())
        noise = Image.merge("RGB", (grey, grey, grey))
    return ImageChops.add(img, noise, 1.0, -amplitude)


@lru_cache(maxsize=8)
def _radial(size: tuple[int, int]) -> Image.Image:
    w, h = size
    sw, sh = max(2, w // 8), max(2, h // 8)
    yy, xx = np.mgrid[0:sh, 0:sw]
    d = ((xx - (sw - 1) / 2) / (sw / 2)) ** 2 + ((yy - (sh - 1) / 2) / (sh / 2)) ** 2
    small = Image.fromarray(np.clip(d / 2.0 * 255, 0, 255).astype(np.uint8), "L")
    return small.resize((w, h), Image.Resampling.BILINEAR)


def vignette(img: Image.Image, strength: float) -> Image.Image:
    """Darken towards the corners; ``strength`` 0..1 is the corner darkening."""
    lut = np.clip(255 * (1 - strength * (np.arange(256) / 255) ** 1.3), 0, 255).astype(np.uint8)
    mask = _radial(img.size).point(lut.tolist())
    return ImageChops.multiply(img, Image.merge("RGB", (mask, mask, mask)))


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


def blur(img: Image.Image, radius: float) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius))


def rounded(
    draw: ImageDraw.ImageDraw,
    box: Sequence[float],
    radius: float,
    fill: Sequence[int] | None = None,
    outline: Sequence[int] | None = None,
    width: int = 1,
) -> None:
    """``rounded_rectangle`` that tolerates tiny boxes (small images shrink everything)."""
    x0, y0, x1, y1 = box
    r = int(min(radius, (x1 - x0) / 2 - 1, (y1 - y0) / 2 - 1))
    fill_t = tuple(fill) if fill is not None else None
    outline_t = tuple(outline) if outline is not None else None
    if r < 1:
        if x1 > x0 and y1 > y0:
            draw.rectangle((x0, y0, x1, y1), fill=fill_t, outline=outline_t, width=width)
        return
    draw.rounded_rectangle((x0, y0, x1, y1), radius=r, fill=fill_t, outline=outline_t, width=width)
