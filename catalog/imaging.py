"""Image keys and checks, in plain Python: what a downloaded image is, and whether we accept it.

The SHA-256 of the bytes is the asset key; the perceptual hash (pHash, 64 bits) of the small decode links
re-encoded copies. Decoding is bounded (pixel limit, format allowlist) and uses JPEG DCT scaling
(`Image.draft`) so that a large photo is never decoded at full size just to make a thumbnail.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
MAX_PIXELS = 60_000_000  # ~ 8000 x 7500: larger than any dealer photo, far below a decompression bomb
THUMBNAIL_SIZE = 320


class ImageRefused(Exception):
    """The bytes are not an image we accept. `reason` is a stable short code, str() a clear sentence."""

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


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inspect_image(data: bytes, *, max_pixels: int = MAX_PIXELS, thumbnail_size: int = THUMBNAIL_SIZE) -> ImageFacts:
    """Decodes and checks the bytes; returns the asset's keys, size and a JPEG thumbnail. Raises ImageRefused."""
    if not data:
        raise ImageRefused("not_image", "empty body")
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
            # DCT scaling: decode a JPEG at 1/2, 1/4 or 1/8 of its size when that still covers the thumbnail.
            opened.draft("RGB", (thumbnail_size, thumbnail_size))
            opened.load()  # reads every byte: truncated or corrupt data fails here
            image: Image.Image = ImageOps.exif_transpose(opened) or opened
            if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
                image = _flatten_on_white(image)
            elif image.mode != "RGB":
                image = image.convert("RGB")
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
    return ImageFacts(
        sha256=sha256_hex(data),
        phash=str(imagehash.phash(image)),
        width=width,
        height=height,
        format=image_format,
        byte_size=len(data),
        thumbnail_jpeg=thumbnail.getvalue(),
        extension={"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}.get(image_format, image_format.lower()),
    )


def _flatten_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


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


def phash_cluster_roots(
    ids: np.ndarray,
    hashes: np.ndarray,
    *,
    max_distance: int,
    clusters: np.ndarray | None = None,
    among: np.ndarray | None = None,
) -> np.ndarray:
    """The cluster root (lowest id of its connected component) of every asset, as an array aligned with `ids`.

    Assets are linked when their hashes are within max_distance bits, transitively. With `clusters` (the
    current cluster id of each asset, -1 for none) and `among` (indexes of the assets to compare with all the
    others), the current clusters are kept as links and only the pairs involving `among` are computed: the
    incremental case. Without them, every pair is computed (a full rebuild).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = len(ids)
    if count == 0:
        return np.empty(0, dtype=np.int64)
    if among is None:
        among = np.arange(count)
    near_i, near_j = phash_near_pairs(hashes, among, max_distance=max_distance)
    links_i, links_j = [near_i], [near_j]
    if clusters is not None:
        # Members of one current cluster stay together: each is linked to the cluster's first member here.
        clustered = np.flatnonzero(clusters >= 0)
        _, first, inverse = np.unique(clusters[clustered], return_index=True, return_inverse=True)
        links_i.append(clustered)
        links_j.append(clustered[first][inverse])
    rows, cols = np.concatenate(links_i), np.concatenate(links_j)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(count, count))
    components, component_of = connected_components(graph, directed=False)
    roots = np.full(components, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(roots, component_of, ids.astype(np.int64))
    return roots[component_of]


def crop_box_style(box: list[int] | tuple[int, int, int, int], width: int, height: int) -> str:
    """CSS that places a crop box over a picture shown at any size (percent of the original pixels)."""
    x0, y0, x1, y1 = box
    return (
        f"left:{100 * x0 / width:.2f}%;top:{100 * y0 / height:.2f}%;"
        f"width:{100 * (x1 - x0) / width:.2f}%;height:{100 * (y1 - y0) / height:.2f}%"
    )
