"""Deterministic test images: dealer-like JPEG photos and the broken files the failure tests need.

Pure Python (numpy + Pillow), no Django: the benchmark command, the demo and the tests all use it.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

INVENTORY_SIZES: tuple[tuple[int, int], ...] = ((800, 600), (1024, 768), (1280, 960), (1600, 1200))

# Uniform noise in [0, 16) on every channel gives JPEG sizes like real photos (~80-300 KB at 1024x768 q85);
# colours stay below 256 - 16 so adding it never overflows uint8.
_NOISE_MASK = 0x0F
_MAX_COLOUR = 255 - (_NOISE_MASK + 1)
# One noise field shared by every image, read at a per-seed offset: drawing fresh noise costs more than
# drawing and encoding the picture itself.
_NOISE_TILE_SHAPE = (1600, 2048, 4)

BOMB_SIZE = (20_000, 20_000)  # 400 megapixels, over twice Pillow's default MAX_IMAGE_PIXELS
BIG_BODY_BYTES = 30 * 1024 * 1024

# Pictures are drawn as RGBX: one pixel is one uint32, so filling a shape is a scalar store instead of a
# slow broadcast of three bytes, and Pillow maps the array without repacking it.


@functools.cache
def _noise_tile() -> np.ndarray:
    raw = np.random.default_rng(0x5EED).bytes(int(np.prod(_NOISE_TILE_SHAPE)))
    return np.frombuffer(raw, dtype=np.uint8).reshape(_NOISE_TILE_SHAPE) & _NOISE_MASK


def _noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    tile_height, tile_width, channels = _NOISE_TILE_SHAPE
    if height > tile_height or width > tile_width:
        raw = rng.bytes(height * width * channels)
        return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, channels) & _NOISE_MASK
    top = int(rng.integers(0, tile_height - height + 1))
    left = int(rng.integers(0, tile_width - width + 1))
    return _noise_tile()[top : top + height, left : left + width]


def _rgb(rng: np.random.Generator, low: tuple[int, int, int], high: tuple[int, int, int]) -> np.ndarray:
    return np.minimum(rng.uniform(low, high), _MAX_COLOUR)


def _pixel(rgb: np.ndarray) -> np.uint32:
    return np.append(rgb.astype(np.uint8), np.uint8(0)).view(np.uint32)[0]


def _fill_ellipse(
    pixels: np.ndarray, centre: tuple[float, float], radii: tuple[float, float], colour: np.uint32
) -> None:
    height, width = pixels.shape
    (cx, cy), (rx, ry) = centre, radii
    x0, x1 = max(int(cx - rx), 0), min(int(cx + rx) + 1, width)
    y0, y1 = max(int(cy - ry), 0), min(int(cy + ry) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.ogrid[y0:y1, x0:x1]
    inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
    pixels[y0:y1, x0:x1][inside] = colour


def _fill_rect(pixels: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour: np.uint32) -> None:
    height, width = pixels.shape
    pixels[max(int(y0), 0) : min(int(y1), height), max(int(x0), 0) : min(int(x1), width)] = colour


def _draw_vehicle(pixels: np.ndarray, rng: np.random.Generator, horizon: int) -> None:
    height, width = pixels.shape
    body_width = width * rng.uniform(0.45, 0.7)
    body_height = height * rng.uniform(0.12, 0.18)
    left = rng.uniform(0.05, 0.95) * (width - body_width)
    bottom = min(horizon + height * rng.uniform(0.2, 0.3), height * 0.95)
    top = bottom - body_height
    paint = _rgb(rng, (0, 0, 0), (255, 255, 255))
    wheel_radius = body_height * 0.45

    shadow = (left + body_width / 2, bottom + wheel_radius * 0.8)
    _fill_ellipse(pixels, shadow, (body_width * 0.6, wheel_radius * 0.5), _pixel(paint / 4))
    _fill_rect(pixels, left, top, left + body_width, bottom, _pixel(paint))
    cabin_left = left + body_width * rng.uniform(0.15, 0.3)
    cabin_right = left + body_width * rng.uniform(0.65, 0.85)
    cabin_top = top - body_height * rng.uniform(0.6, 0.9)
    _fill_rect(pixels, cabin_left, cabin_top, cabin_right, top, _pixel(paint * 0.9))
    glass = _pixel(_rgb(rng, (40, 60, 80), (90, 120, 150)))
    margin = body_height * 0.1
    middle = (cabin_left + cabin_right) / 2
    _fill_rect(pixels, cabin_left + margin, cabin_top + margin, middle - margin / 2, top, glass)
    _fill_rect(pixels, middle + margin / 2, cabin_top + margin, cabin_right - margin, top, glass)
    tyre = _pixel(_rgb(rng, (15, 15, 15), (45, 45, 45)))
    hub = _pixel(_rgb(rng, (140, 140, 140), (210, 210, 210)))
    for fraction in (0.2, 0.8):
        centre = (left + body_width * fraction, bottom)
        _fill_ellipse(pixels, centre, (wheel_radius, wheel_radius), tyre)
        _fill_ellipse(pixels, centre, (wheel_radius * 0.5, wheel_radius * 0.5), hub)


def make_jpeg(seed: int, *, width: int = 1024, height: int = 768, quality: int = 85) -> bytes:
    """A dealer-like photo (sky, ground, buildings, a car of a random colour, sensor noise) as JPEG bytes.

    The same arguments always give the same bytes.
    """
    rng = np.random.default_rng(seed)
    horizon = int(height * rng.uniform(0.4, 0.6))
    sky_top = _rgb(rng, (60, 100, 160), (130, 170, 230))
    sky_bottom = _rgb(rng, (150, 170, 190), (230, 235, 240))
    ground_top = _rgb(rng, (90, 90, 80), (160, 160, 150))
    ground_bottom = ground_top * rng.uniform(0.5, 0.8)
    rows = np.zeros((height, 4), dtype=np.uint8)
    rows[:horizon, :3] = np.linspace(sky_top, sky_bottom, horizon)
    rows[horizon:, :3] = np.linspace(ground_top, ground_bottom, height - horizon)

    rgbx = np.empty((height, width, 4), dtype=np.uint8)
    pixels = rgbx.view(np.uint32).reshape(height, width)
    pixels[:] = rows.view(np.uint32)  # (height, 1): one colour per row
    for _ in range(int(rng.integers(2, 6))):  # buildings behind the lot
        building_width = width * rng.uniform(0.08, 0.3)
        x0 = rng.uniform(0, width - building_width)
        y0 = horizon - height * rng.uniform(0.08, 0.3)
        wall = _pixel(_rgb(rng, (70, 70, 70), (200, 190, 180)))
        _fill_rect(pixels, x0, y0, x0 + building_width, horizon, wall)
    _draw_vehicle(pixels, rng, horizon)

    np.add(rgbx, _noise(rng, height, width), out=rgbx)
    buffer = io.BytesIO()
    Image.frombuffer("RGBX", (width, height), rgbx, "raw", "RGBX", 0, 1).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _inventory_image(seed: int, index: int, size: tuple[int, int], cache_dir: Path | None) -> bytes:
    width, height = size
    cached = cache_dir / f"{seed}-{index}-{width}x{height}.jpg" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    image_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
    data = make_jpeg(image_seed, width=width, height=height)
    if cached is not None:
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(cached)  # atomic: a concurrent benchmark never reads half a file
    return data


def make_inventory_images(count: int, *, seed: int = 0, cache_dir: Path | None = None) -> list[bytes]:
    """count JPEGs of sizes among INVENTORY_SIZES, all decided by seed; kept in cache_dir if given."""
    choices = np.random.default_rng(seed).integers(0, len(INVENTORY_SIZES), size=count)
    sizes = [INVENTORY_SIZES[int(choice)] for choice in choices]
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(lambda i: _inventory_image(seed, i, sizes[i], cache_dir), range(count)))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def decompression_bomb_png() -> bytes:
    """A valid 1-bit greyscale PNG of BOMB_SIZE, all black: a few tens of KB that would decode to 400 MP."""
    width, height = BOMB_SIZE
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale, no interlace
    row = bytes(1 + (width + 7) // 8)  # filter byte "none" + packed zero pixels
    rows_per_chunk = 1000
    compressor = zlib.compressobj(9)
    parts = [
        compressor.compress(row * min(rows_per_chunk, height - start)) for start in range(0, height, rows_per_chunk)
    ]
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


@functools.cache
def small_jpeg() -> bytes:
    """The picture the special routes serve when they need a valid image."""
    return make_jpeg(1, width=800, height=600)


@functools.cache
def truncated_jpeg() -> bytes:
    """The first 60% of a valid JPEG: the header parses, decoding fails."""
    data = small_jpeg()
    return data[: len(data) * 6 // 10]


@functools.cache
def big_jpeg_body() -> bytes:
    """BIG_BODY_BYTES that start like a real JPEG (valid headers) and continue with junk entropy data."""
    head = small_jpeg()[:2048]
    junk = np.random.default_rng(0xB16).bytes(BIG_BODY_BYTES - len(head))
    return head + junk
