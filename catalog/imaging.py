"""Image keys and checks, in plain Python: what a downloaded image is, and whether we accept it.

The SHA-256 of the bytes is the asset key; the perceptual hash (pHash, 64 bits) of the small decode links re-encoded
copies, and the color signature (the mean color of an 8 x 8 grid of cells, in Lab) tells a copy from the same
picture in another color, which pHash (computed in grey) cannot: a near-duplicate needs both (`near_duplicates`).
Decoding is bounded (pixel limit, format allowlist) and uses JPEG DCT scaling (`Image.draft`) so that a large photo
is never decoded at full size just to make a thumbnail; the same decode can be kept for the models' input
(`inspect_image_viewed`), so that a Run decodes a new image once.

Memory (a 250 KB PNG can decode to 240 MB): a PNG or WebP is decoded reduced too (catalog.decoding: PNG row
strips, libwebp's scaled decode); formats that Pillow must decode whole have a lower pixel limit
(MAX_PIXELS_FULL_DECODE), and a big whole decode waits for the machine's one big-decode slot (`big_decode_slot`)
whichever process asks; a full-size decode is reduced and flattened to RGB strip by strip (`reduced_rgb`), never
copied whole; and callers with several decoding threads share a `PixelBudget`, the decoded pixels a process may
hold at once. A JPEG whose scans cannot cover the size its header claims is refused (`jpeg_data_shortfall`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from catalog.decoding import (
    MAX_WHOLE_DECODE_BYTES,
    big_decode_slot,
    exif_orientation,
    libc,
    reduced_decode,
    whole_decode_bytes,
)
from core.errors import ApplicationError

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
MAX_PIXELS = 60_000_000  # ~ 8000 x 7500: larger than any dealer photo, far below a decompression bomb
# Formats that can be decoded reduced (JPEG DCT scaling): a 60 MP JPEG decodes to under 1 MP for a thumbnail.
REDUCIBLE_FORMATS = frozenset({"JPEG", "MPO"})
# Every other format (PNG, WebP, GIF, BMP, TIFF) is decoded at full size, 4 bytes a pixel with alpha: 32 MP is
# 128 MB. A real photo that big in PNG is far over the download size cap (FETCH_MAX_IMAGE_BYTES, 25 MB); only
# flat graphics or a pixel flood (one colour, 60 MP in 250 KB) get there, and they need no more than this.
MAX_PIXELS_FULL_DECODE = 32_000_000
THUMBNAIL_SIZE = 320
# The smallest side a JPEG is decoded to (where it is that big): the input of the usual models (MobileNet, the
# starter models), so that the decode behind an asset's keys and thumbnail is also their input (a Run decodes a
# new image once: inspect_image_viewed). A fixed number, not the active models', so that a pHash depends on the
# bytes alone.
DECODE_MIN_SIDE = 224
_STRIP_PIXELS = 1 << 20  # reduced_rgb converts this many full-size pixels at a time (4 MB in RGBA)
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION = 0x0112
_SWAPS_AXES = frozenset({5, 6, 7, 8})  # EXIF orientations that rotate by 90 degrees


# glibc raises its mmap threshold after each big free (up to 32 MB): the pixel blocks of later decodes (16 MB each
# in Pillow) then come from per-thread heaps that are never given back, and 8 fetch threads decoding big images
# grew a process to ~1 GB with only two images held at once (the budget below). A fixed threshold keeps every
# block of this size or more mmap'd, returned to the system as soon as it is freed.
MALLOC_MMAP_THRESHOLD = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt parameter, glibc's malloc.h


def malloc_return_big_blocks(threshold: int = MALLOC_MMAP_THRESHOLD) -> bool:
    """Fixes glibc's mmap threshold for this process (see MALLOC_MMAP_THRESHOLD); False where there is no glibc."""
    try:
        return bool(libc().mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


malloc_return_big_blocks()


class ImageRefused(ApplicationError):
    """The bytes are not an image we accept. `reason` is a stable short code, str() a clear sentence."""

    code = "image_refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    phash: str  # 16 hex digits
    width: int
    height: int
    format: str
    byte_size: int
    thumbnail_jpeg: bytes
    extension: str
    color_signature: str = ""  # color_signature(): hex, "" where none was computed


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PixelBudget:
    """The decoded pixels a process may hold at once, shared by its decoding threads (a semaphore on pixels).

    An image takes its pixel count from the budget while it is decoded at full size and gives it back once it
    is reduced; one image bigger than the whole budget waits until it is alone, so it still gets decoded.
    """

    def __init__(self, pixels: int) -> None:
        self.capacity = max(1, pixels)
        self._free = self.capacity
        self._changed = threading.Condition()

    @property
    def free(self) -> int:
        return self._free

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        wanted = min(max(0, pixels), self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= wanted)
            self._free -= wanted
        try:
            yield
        finally:
            with self._changed:
                self._free += wanted
                self._changed.notify_all()


@dataclass(frozen=True)
class ViewedImage:
    """The decode behind an asset's keys, kept for other work on the same pixels (the models' input): RGB, as
    viewed (EXIF orientation applied), no smaller than the size asked for where the original is not."""

    image: Image.Image
    original_size: tuple[int, int]  # (w, h) of the full-size image, as viewed
    format: str  # of the original (JPEG, PNG...)


def inspect_image(
    data: bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    max_pixels_full_decode: int = MAX_PIXELS_FULL_DECODE,
    thumbnail_size: int = THUMBNAIL_SIZE,
    budget: PixelBudget | None = None,
) -> ImageFacts:
    """Decodes and checks the bytes; returns the asset's keys, size and a JPEG thumbnail. Raises ImageRefused.

    A format that cannot be decoded reduced is refused above `max_pixels_full_decode`; the full-size decode is
    held under `budget` (when given) until it is reduced to twice the thumbnail size, strip by strip.
    """
    facts, _ = _inspect(
        data,
        max_pixels=max_pixels,
        max_pixels_full_decode=max_pixels_full_decode,
        thumbnail_size=thumbnail_size,
        budget=budget,
        keep=None,
    )
    return facts


def inspect_image_viewed(
    data: bytes, *, keep: tuple[int, int], budget: PixelBudget | None = None
) -> tuple[ImageFacts, ViewedImage | None]:
    """inspect_image, and the same decode kept (no smaller than `keep`, w x h) for the models, so that a new image is
    decoded once. The facts (thumbnail, pHash) are exactly inspect_image's, whatever `keep` is.

    The view is None where that decode cannot stand for classifier.preprocess.decode: an image with transparency or
    of 32-bit integer or float pixels (the two flatten them differently), or a decode smaller than `keep` (the DCT
    draft covers the thumbnail and DECODE_MIN_SIDE: models with a bigger input are not served). The caller decodes
    again for those.
    """
    return _inspect(
        data,
        max_pixels=MAX_PIXELS,
        max_pixels_full_decode=MAX_PIXELS_FULL_DECODE,
        thumbnail_size=THUMBNAIL_SIZE,
        budget=budget,
        keep=keep,
    )


def _inspect(
    data: bytes,
    *,
    max_pixels: int,
    max_pixels_full_decode: int,
    thumbnail_size: int,
    budget: PixelBudget | None,
    keep: tuple[int, int] | None,
) -> tuple[ImageFacts, ViewedImage | None]:
    if not data:
        raise ImageRefused("not_image", "empty body")
    view: ViewedImage | None = None
    try:
        with warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and twice that: refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            image_format = opened.format or ""
            if image_format not in ALLOWED_FORMATS:
                raise ImageRefused("format_not_allowed", f"image format {image_format or 'unknown'} is not accepted")
            width, height = opened.size
            if width <= 0 or height <= 0:
                raise ImageRefused("not_image", "image has no pixels")
            if width * height > max_pixels:
                raise ImageRefused(
                    "too_many_pixels",
                    f"image is {width}x{height} pixels, more than the {max_pixels:,} allowed",
                )
            if image_format not in REDUCIBLE_FORMATS and width * height > max_pixels_full_decode:
                raise ImageRefused(
                    "too_many_pixels",
                    f"{image_format} image is {width}x{height} pixels, more than the {max_pixels_full_decode:,} "
                    "allowed for a format that cannot be decoded reduced",
                )
            if (held := whole_decode_bytes(opened, data)) > MAX_WHOLE_DECODE_BYTES:
                raise ImageRefused(
                    "too_many_pixels",
                    f"{image_format} image is {width}x{height} pixels: decoded whole it takes {held / 1e6:,.0f} MB, "
                    f"more than the {MAX_WHOLE_DECODE_BYTES / 1e6:,.0f} MB allowed for an image that cannot be "
                    "decoded reduced",
                )
            if image_format in REDUCIBLE_FORMATS and (shortfall := jpeg_data_shortfall(data)):
                raise ImageRefused("corrupt_image", f"image is truncated: {shortfall}")
            # DCT scaling: decode a JPEG at 1/2, 1/4 or 1/8 of its size when that still covers the thumbnail and
            # the models' usual input (DECODE_MIN_SIDE), so that the one decode serves both.
            opened.draft("RGB", _draft_size(opened.size, thumbnail_size))
            # Pillow's thumbnail(reducing_gap=2.0) would reduce by these factors first: do it while decoding.
            reduction = _thumbnail_reduction(opened.size, thumbnail_size)
            reduced = reduced_decode(opened, data, reduction, to_rgb=to_rgb_on_white)  # PNG, WebP: never full size
            if reduced is not None:
                image, plain, orientation = reduced, _flattens_alike(opened), exif_orientation(opened, data)
            else:
                image, plain, orientation = _load_reduced(opened, reduction, budget)
            image = orientation_transpose(image, orientation)
            if keep is not None and plain:
                viewed_size = (height, width) if orientation in _SWAPS_AXES else (width, height)
                view = _kept(image, keep, viewed_size, image_format)
            image.thumbnail((thumbnail_size, thumbnail_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRefused("too_many_pixels", f"decompression bomb refused: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageRefused("not_image", "the bytes are not a recognised image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRefused("corrupt_image", f"image could not be decoded: {exc}") from exc

    thumbnail = io.BytesIO()
    image.save(thumbnail, format="JPEG", quality=82, optimize=False)
    facts = ImageFacts(
        sha256=sha256_hex(data),
        phash=phash_hex(image),
        width=width,
        height=height,
        format=image_format,
        byte_size=len(data),
        thumbnail_jpeg=thumbnail.getvalue(),
        extension={"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}.get(image_format, image_format.lower()),
        color_signature=color_signature(image),
    )
    return facts, view


# A marker that ends a scan's entropy-coded data: not a stuffed zero, a restart marker or a fill byte.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Start-of-frame markers of Huffman-coded JPEGs (baseline, extended, progressive, lossless, hierarchical).
_JPEG_HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})
_JPEG_ARITHMETIC_FRAMES = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def jpeg_data_shortfall(data: bytes) -> str | None:
    """Why a JPEG's scans cannot hold the pixels its frame header claims, or None when they can (or it cannot tell).

    libjpeg decodes a scan whose data stops at a marker (EOI, or the next scan's header) by filling the rest of the
    picture with grey, and Pillow keeps its warning to itself: a 64 x 64 JPEG whose header claims 7700 x 7700 loads
    without an error. Every 8 x 8 block of every component costs at least one bit of Huffman-coded data (its DC
    difference in the first DC scan), so scans with fewer bits than blocks stop short. Arithmetic-coded frames can
    code a block in less than a bit: not judged here.
    """
    position, end = 2, len(data)
    blocks = entropy_bytes = 0
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None  # not a marker where one must be: Pillow judges the bytes
        code = data[position + 1]
        if code == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if code == 0xD9:  # EOI
            break
        if code in _JPEG_STANDALONE:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment = data[position + 4 : position + 2 + length]
        if code in _JPEG_ARITHMETIC_FRAMES:
            return None
        if code in _JPEG_HUFFMAN_FRAMES and not blocks:
            blocks = _jpeg_frame_blocks(segment)
            if not blocks:
                return None
        position += 2 + length
        if code == 0xDA:  # SOS: the entropy-coded data runs to the next marker
            scan_end = _JPEG_SCAN_END.search(data, position)
            stop = scan_end.start() if scan_end is not None else end
            entropy_bytes += stop - position
            position = stop
    if blocks and entropy_bytes * 8 < blocks:
        return f"its scans hold {entropy_bytes:,} bytes, fewer bits than the {blocks:,} blocks its header claims"
    return None


def _jpeg_frame_blocks(frame: bytes) -> int:
    """The 8 x 8 blocks of every component of a start-of-frame segment (0 when it cannot tell)."""
    if len(frame) < 6:
        return 0
    height, width, count = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big"), frame[5]
    sampling = [
        (frame[6 + 3 * n + 1] >> 4, frame[6 + 3 * n + 1] & 0x0F) for n in range(count) if 8 + 3 * n < len(frame)
    ]
    if not height or not width or not sampling or len(sampling) != count:
        return 0  # a height given later (DNL), or a broken header
    max_h, max_v = max(h for h, _ in sampling), max(v for _, v in sampling)
    if not max_h or not max_v:
        return 0
    return sum(
        math.ceil(math.ceil(width * h / max_h) / 8) * math.ceil(math.ceil(height * v / max_v) / 8) for h, v in sampling
    )


def _load_reduced(
    opened: Image.Image, reduction: tuple[int, int], budget: PixelBudget | None
) -> tuple[Image.Image, bool, int]:
    """Pillow's decode of the whole image (a JPEG at its draft's size), reduced: (RGB image, _flattens_alike, EXIF
    orientation). Held under the process's budget and, when big, the machine's big-decode slot."""
    pixels = opened.width * opened.height
    with budget.hold(pixels) if budget is not None else nullcontext(), big_decode_slot(pixels):
        opened.load()  # reads every byte: truncated or corrupt data fails here
        plain = _flattens_alike(opened)
        image = reduced_rgb(opened, reduction)
        orientation = opened.getexif().get(_ORIENTATION, 1)
        if image is not opened:
            opened.close()  # frees the full-size pixels before the budget and the slot are given back
    return image, plain, orientation


def _flattens_alike(image: Image.Image) -> bool:
    """Whether to_rgb_on_white and the models' flattening (classifier.preprocess.flatten_to_rgb) give this image
    the same RGB pixels: no transparency to composite, no 32-bit integer or float values to scale."""
    mode = image.mode
    if mode.startswith("I") or mode == "F" or "transparency" in image.info:
        return False
    return mode not in ("RGBA", "LA", "PA", "RGBa", "La")


def _kept(
    image: Image.Image, keep: tuple[int, int], viewed_size: tuple[int, int], image_format: str
) -> ViewedImage | None:
    """A copy of the oriented RGB decode (thumbnail() works in place on `image`), or None when it is smaller than
    `keep` and the original is not."""
    want_width, want_height = max(1, keep[0]), max(1, keep[1])
    if image.width < min(want_width, viewed_size[0]) or image.height < min(want_height, viewed_size[1]):
        return None
    return ViewedImage(image=image.copy(), original_size=viewed_size, format=image_format)


def _draft_size(size: tuple[int, int], thumbnail_size: int) -> tuple[int, int]:
    """The size to ask a JPEG's DCT draft for: the thumbnail's own (w, h), no side under DECODE_MIN_SIDE. The DCT
    scaling is a proper reduction (what a box filter would do), so the thumbnail is resampled from no less than its
    own size; asking for a 320 x 320 square instead decoded 4:3 photos at four times the pixels."""
    width, height = size
    shrink = min(1.0, thumbnail_size / width, thumbnail_size / height)
    return (
        max(1, round(width * shrink), min(width, DECODE_MIN_SIDE)),
        max(1, round(height * shrink), min(height, DECODE_MIN_SIDE)),
    )


def _thumbnail_reduction(size: tuple[int, int], thumbnail_size: int) -> tuple[int, int]:
    width, height = size
    shrink = min(1.0, thumbnail_size / width, thumbnail_size / height)
    final_width, final_height = max(1, round(width * shrink)), max(1, round(height * shrink))
    return max(1, int(width / final_width / 2)), max(1, int(height / final_height / 2))


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    """RGB, any transparency composited on white."""
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def reduced_rgb(
    image: Image.Image,
    factor: int | tuple[int, int],
    *,
    to_rgb: Callable[[Image.Image], Image.Image] = to_rgb_on_white,
) -> Image.Image:
    """A loaded image reduced by an integer factor (box filter, as Image.reduce) and converted to RGB by `to_rgb`,
    one strip of rows at a time: never a second full-size copy, whatever the mode (a 60 MP RGBA image would
    otherwise be copied two or three times to flatten its transparency). The image itself when nothing changes.
    """
    factor_x, factor_y = (factor, factor) if isinstance(factor, int) else factor
    factor_x, factor_y = max(1, factor_x), max(1, factor_y)
    if factor_x == factor_y == 1 and image.mode == "RGB" and "transparency" not in image.info:
        return image
    width, height = image.size
    out = Image.new("RGB", (-(-width // factor_x), -(-height // factor_y)))
    rows = max(factor_y, _STRIP_PIXELS // max(1, width) // factor_y * factor_y)
    for top in range(0, height, rows):
        strip = to_rgb(image.crop((0, top, width, min(height, top + rows))))
        if factor_x > 1 or factor_y > 1:
            strip = strip.reduce((factor_x, factor_y))
        out.paste(strip, (0, top // factor_y))
    return out


def orientation_transpose(image: Image.Image, orientation: int) -> Image.Image:
    """The image as its EXIF orientation (1-8) says it is viewed."""
    method = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return image if method is None else image.transpose(method)


# The 8 x 8 lowest frequencies of the 2-D DCT of the 32 x 32 grey picture, each compared with their median.
_PHASH_SIDE, _PHASH_BITS_SIDE = 32, 8
# cv2.dct is the orthonormal DCT-II; the pHash was defined (imagehash.phash) on scipy.fftpack's unnormalised one, which
# is it times 2 sqrt(N) at frequency 0 and sqrt(2N) elsewhere, on each axis. The scale changes which coefficients
# are above the median, so it is put back.
_PHASH_SCALE = np.array([2 * math.sqrt(_PHASH_SIDE)] + [math.sqrt(2 * _PHASH_SIDE)] * (_PHASH_BITS_SIDE - 1))


def phash_hex(image: Image.Image) -> str:
    """The 64-bit perceptual hash of a picture as 16 hex digits: imagehash.phash's, bit for bit, computed with
    OpenCV's DCT (already loaded: scipy, which imagehash imports for it, costs each fetch process ~20 MB, and 0.3 ms an
    image more). tests/catalog/test_phash.py compares the two."""
    grey = image.convert("L").resize((_PHASH_SIDE, _PHASH_SIDE), Image.Resampling.LANCZOS)
    coefficients = cv2.dct(np.asarray(grey, dtype=np.float64))[:_PHASH_BITS_SIDE, :_PHASH_BITS_SIDE]
    low = coefficients * _PHASH_SCALE[:, None] * _PHASH_SCALE[None, :]
    bits = (low > np.median(low)).ravel()
    return f"{int(''.join('1' if bit else '0' for bit in bits), 2):016x}"


def phash_distance(a: str, b: str) -> int:
    """Hamming distance between two 16-hex-digit perceptual hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def phash_array(values: Iterable[str]) -> np.ndarray:
    """16-hex-digit perceptual hashes as a uint64 array, for vectorised distances (8 bytes a hash)."""
    return np.fromiter((int(value, 16) for value in values), dtype=np.uint64)


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64; of `a ^ b`, the Hamming distance between two hashes."""
    if hasattr(np, "bitwise_count"):  # numpy 2: one instruction per value
        return np.bitwise_count(values)
    return np.unpackbits(values.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1).reshape(values.shape)


def _popcount_into(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """popcount(values), written into `out` (uint8, same shape) where numpy can."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values, out=out)
    return popcount(values)


# Multi-index hashing (Norouzi et al., 2012): the 64 bits of a pHash in PHASH_PIECES pieces of 16 bits (4 hex digits),
# each indexed in the database (ImageAsset's phash_piece_<n> expression indexes). Two hashes within d bits differ by
# at most d // PHASH_PIECES bits in at least one piece (pigeonhole), so the hashes within d bits of h are among those
# whose piece n is, for some n, within that many bits of h's piece n: a few hundred exact lookups. With d = 10 that is
# 137 values a piece (within 2 bits of 16), 548 lookups, which select ~0.8% of uniformly spread hashes. Eleven
# 6-bit pieces matched exactly (the pigeonhole with no radius) would select ~17%.
PHASH_PIECES = 4
PHASH_PIECE_DIGITS = 16 // PHASH_PIECES  # hex digits a piece


def phash_piece_radius(max_distance: int) -> int:
    """The bits a piece may differ by, for hashes within max_distance bits (the pigeonhole)."""
    return max_distance // PHASH_PIECES


def phash_pieces(phash: str) -> list[str]:
    """The PHASH_PIECES pieces of a 16-hex-digit pHash, as the database's expression indexes cut them."""
    return [phash[n * PHASH_PIECE_DIGITS : (n + 1) * PHASH_PIECE_DIGITS] for n in range(PHASH_PIECES)]


@functools.cache
def _flips(bits: int, radius: int) -> tuple[int, ...]:
    """Every mask of `bits` bits with at most `radius` bits set."""
    masks = [0]
    for _ in range(radius):
        masks = sorted({mask | (1 << bit) for mask in masks for bit in range(bits)} | set(masks))
    return tuple(masks)


def phash_piece_probes(phashes: Iterable[str], *, max_distance: int) -> list[set[str]]:
    """For each piece, the values (4 hex digits) that a hash within max_distance bits of one of `phashes` must show
    in at least one of its pieces: look them up in the piece indexes to find every candidate, then measure them."""
    masks = _flips(4 * PHASH_PIECE_DIGITS, phash_piece_radius(max_distance))
    probes: list[set[str]] = [set() for _ in range(PHASH_PIECES)]
    for phash in phashes:
        for n, piece in enumerate(phash_pieces(phash.lower())):
            value = int(piece, 16)
            probes[n].update(f"{value ^ mask:0{PHASH_PIECE_DIGITS}x}" for mask in masks)
    return probes


# Distances are computed in blocks of at most this many pairs (8 bytes each): ~32 MB at a time.
_PAIRS_PER_BLOCK = 1 << 22


def phash_near_pairs(hashes: np.ndarray, among: np.ndarray, *, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j), i in `among` (indexes into `hashes`), j any index, with hashes within max_distance bits.

    Brute force, vectorised: len(among) x len(hashes) distances, a block of rows at a time.
    """
    rows_per_block = max(1, _PAIRS_PER_BLOCK // max(1, len(hashes)))
    found_i, found_j = [], []
    for start in range(0, len(among), rows_per_block):
        block = among[start : start + rows_per_block]
        near = popcount(hashes[block, None] ^ hashes[None, :]) <= max_distance
        rows, cols = np.nonzero(near)
        found_i.append(block[rows])
        found_j.append(cols)
    if not found_i:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    return np.concatenate(found_i), np.concatenate(found_j)


class _SignatureTable:
    """The color signatures of some indexes (sorted, unique), read with one call of `signatures`; looked up by
    index (each one asked for must be among them)."""

    def __init__(self, signatures: Callable[[np.ndarray], np.ndarray], indexes: np.ndarray) -> None:
        self.indexes = indexes
        self.rows = signatures(indexes)

    def __getitem__(self, indexes: np.ndarray) -> np.ndarray:
        return self.rows[np.searchsorted(self.indexes, indexes)]


def phash_cluster_roots(
    ids: np.ndarray,
    hashes: np.ndarray,
    *,
    max_distance: int,
    clusters: np.ndarray | None = None,
    among: np.ndarray | None = None,
    signatures: Callable[[np.ndarray], np.ndarray] | None = None,
    max_color_distance: float = 0.0,
) -> np.ndarray:
    """The cluster root of every asset, as an array aligned with `ids` (leader clustering).

    A cluster is its root (its first asset) and the assets that are near-duplicates of the root: within max_distance
    bits and, given `signatures`, within max_color_distance of its colors (`near_duplicates`); without it, the bits
    alone. `signatures` is called once, with the sorted indexes whose colors are needed (the assets to place, and
    the existing roots within max_distance bits of one), and returns their color_signature_array rows. Each asset to
    place (`among`, indexes; default every asset), in id order, joins the nearest (fewest bits) root it is a near-
    duplicate of (ties: the lowest root id), or becomes a root itself. Existing clusters (`clusters`: the current
    cluster id of each asset, -1 for none) are kept as they are. Unlike connected components, no chain of near pairs
    links two far pictures: a cluster's pictures are all within 2 x max_distance bits of each other (measured on
    generated inventories, transitive chaining put most Stock renders of four advertisers in one cluster).
    """
    count = len(ids)
    result = np.full(count, -1, dtype=np.int64) if clusters is None else clusters.astype(np.int64).copy()
    if count == 0:
        return result
    among = np.arange(count) if among is None else np.asarray(among, dtype=np.intp)
    pending = among[result[among] < 0]
    pending = pending[np.argsort(ids[pending], kind="stable")]
    roots = np.flatnonzero(result == ids)  # existing roots: their cluster is their own id
    # The existing roots within max_distance bits of each asset to place, a block at a time (sparse: few are)...
    near_rows, near_roots, near_bits = [np.empty(0, dtype=np.intp)], [np.empty(0, dtype=np.intp)], [np.empty(0)]
    if len(roots) and len(pending):
        root_hashes = hashes[roots]
        rows_per_block = max(1, _PAIRS_PER_BLOCK // len(roots))
        # Two buffers reused by every block: fresh big temporaries are mmap'd and faulted in again each time, and
        # uint8 distances keep the pass over a million roots to one XOR, one popcount and one comparison.
        xor = np.empty((min(rows_per_block, len(pending)), len(roots)), dtype=np.uint64)
        counts = np.empty(xor.shape, dtype=np.uint8)
        for start in range(0, len(pending), rows_per_block):
            block = pending[start : start + rows_per_block]
            pairs = np.bitwise_xor(hashes[block, None], root_hashes[None, :], out=xor[: len(block)])
            distances = _popcount_into(pairs, counts[: len(block)])
            rows, cols = np.nonzero(distances <= max_distance)
            near_rows.append(start + rows)
            near_roots.append(roots[cols])
            near_bits.append(distances[rows, cols])
    rows, near, bits = np.concatenate(near_rows), np.concatenate(near_roots), np.concatenate(near_bits).astype(int)
    # ...those that are near-duplicates (the colors too: every signature needed, read at once)...
    colors = None if signatures is None else _SignatureTable(signatures, np.union1d(pending, near))
    if colors is not None:
        same = near_duplicates(
            bits, colors[pending[rows]], colors[near], max_distance=max_distance, max_color_distance=max_color_distance
        )
        rows, near, bits = rows[same], near[same], bits[same]
    # ...and of those the nearest (fewest bits, then the lowest root id).
    big = np.iinfo(np.int64).max
    best_existing = np.full(len(pending), -1, dtype=np.int64)
    best_distance = np.full(len(pending), big, dtype=np.int64)
    order = np.lexsort((ids[near], bits, rows))
    rows, near, bits = rows[order], near[order], bits[order]
    first = np.r_[True, rows[1:] != rows[:-1]] if len(rows) else np.empty(0, dtype=bool)
    best_existing[rows[first]] = ids[near[first]]
    best_distance[rows[first]] = bits[first]
    # Then, in id order, each one against the roots founded in this call too, as a rebuild would.
    new_roots = np.empty(len(pending), dtype=np.intp)
    found = 0
    for position, index in enumerate(pending):
        choice, distance = int(best_existing[position]), int(best_distance[position])
        if found:
            candidates = new_roots[:found]
            distances = popcount(hashes[candidates] ^ hashes[index]).astype(np.int64)
            if colors is not None:  # near in bits but not in colors: out of reach
                close = np.flatnonzero(distances <= max_distance)
                other = ~near_duplicates(
                    distances[close], colors[np.full(len(close), index)], colors[candidates[close]],
                    max_distance=max_distance, max_color_distance=max_color_distance,
                )  # fmt: skip
                distances[close[other]] = big
            best = int(distances.argmin())  # new roots come in id order: the first minimum is the lowest id
            new_id = int(ids[candidates[best]])
            if distances[best] <= max_distance and (
                distances[best] < distance or (distances[best] == distance and new_id < choice)
            ):
                choice, distance = new_id, int(distances[best])
        if choice >= 0:
            result[index] = choice
        else:
            result[index] = ids[index]
            new_roots[found] = index
            found += 1
    return result


# Color signatures ----------------------------------------------------------------------------------------------

# The signature is the Lab color of each cell of a COLOR_GRID x COLOR_GRID grid over the picture (the cell's mean
# sRGB, converted), 3 bytes a cell: L * 2.55, a + 128, b + 128. Two signatures are as far apart as their most
# different cell (CIE76 delta E): a repaint changes the cells the car covers, a re-encode or resize changes every
# cell by a little. A finer grid separates them better (a small car in a dealer photo fills more of a small cell);
# measured with `manage.py measure_near_duplicates` (README, "Carry-forward").
COLOR_GRID = 8
COLOR_SIGNATURE_BYTES = COLOR_GRID * COLOR_GRID * 3
# sRGB (D65) to XYZ, each row divided by the white point's value, so that white is (1, 1, 1).
_SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_RGB_TO_XYZ_WHITE = _SRGB_TO_XYZ / np.array([[0.95047], [1.0], [1.08883]])
_SRGB_CODES = np.arange(256) / 255.0
_SRGB_LINEAR = np.where(_SRGB_CODES <= 0.04045, _SRGB_CODES / 12.92, ((_SRGB_CODES + 0.055) / 1.055) ** 2.4)


def color_signature(image: Image.Image) -> str:
    """The color signature of an RGB picture, as hex (COLOR_SIGNATURE_BYTES bytes): see COLOR_GRID. Computed from
    the thumbnail-sized decode, ~0.1 ms (`manage.py measure_near_duplicates` prints it)."""
    # reducing_gap: an integer reduce() first, then the exact box filter on what it leaves (half the time).
    cells = np.asarray(image.resize((COLOR_GRID, COLOR_GRID), Image.Resampling.BOX, reducing_gap=1.0))
    xyz = _SRGB_LINEAR[cells.reshape(-1, 3)] @ _RGB_TO_XYZ_WHITE.T
    f = np.cbrt(xyz)
    dark = xyz <= 216 / 24389
    f[dark] = (24389 / 27 * xyz[dark] + 16) / 116
    stored = np.empty_like(f)
    stored[:, 0] = (116 * f[:, 1] - 16) * 2.55
    stored[:, 1] = 500 * (f[:, 0] - f[:, 1]) + 128
    stored[:, 2] = 200 * (f[:, 1] - f[:, 2]) + 128
    return np.clip(np.rint(stored), 0, 255).astype(np.uint8).tobytes().hex()


def color_signature_array(values: Iterable[str]) -> np.ndarray:
    """Hex signatures as an (n, cells, 3) float32 array of Lab colors; NaN rows for a missing ("") or malformed one,
    which is near nothing."""
    rows = []
    for value in values:
        raw = bytes.fromhex(value) if len(value) == 2 * COLOR_SIGNATURE_BYTES else b""
        row = np.frombuffer(raw, dtype=np.uint8).astype(np.float32) if raw else np.full(COLOR_SIGNATURE_BYTES, np.nan)
        rows.append(row)
    lab = np.array(rows, dtype=np.float32).reshape(-1, COLOR_GRID * COLOR_GRID, 3)
    return (lab - np.array([0.0, 128.0, 128.0], dtype=np.float32)) / np.array([2.55, 1.0, 1.0], dtype=np.float32)


def color_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The distance between signatures paired row by row (color_signature_array rows, broadcast): the delta E of
    their most different cell. NaN where either is missing (every comparison with NaN is False)."""
    return np.sqrt(((a - b) ** 2).sum(axis=-1)).max(axis=-1)


def near_duplicates(
    hash_distances: np.ndarray,
    signatures_a: np.ndarray,
    signatures_b: np.ndarray,
    *,
    max_distance: int,
    max_color_distance: float,
) -> np.ndarray:
    """The one rule for "the same picture": pairs whose pHashes are within max_distance bits AND whose color
    signatures are within max_color_distance (delta E of the most different cell). A pair where either has no
    signature is never a near-duplicate. Arrays aligned pair by pair."""
    near = np.asarray(hash_distances) <= max_distance
    if near.any():
        colors = color_distance(signatures_a[near], signatures_b[near])
        near[np.flatnonzero(near)[~(colors <= max_color_distance)]] = False
    return near


def crop_box_style(box: list[int] | tuple[int, int, int, int], width: int, height: int) -> str:
    """CSS that places a crop box over a picture shown at any size (percent of the original pixels)."""
    x0, y0, x1, y1 = box
    return (
        f"left:{100 * x0 / width:.2f}%;top:{100 * y0 / height:.2f}%;"
        f"width:{100 * (x1 - x0) / width:.2f}%;height:{100 * (y1 - y0) / height:.2f}%"
    )
