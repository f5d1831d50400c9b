"""Image keys and checks, in plain Python: what a downloaded image is, and whether we accept it.

The SHA-256 of the bytes is the asset key; the perceptual hash (pHash, 64 bits) of the small decode links
re-encoded copies. Decoding is bounded (pixel limit, format allowlist) and uses JPEG DCT scaling
(`Image.draft`) so that a large photo is never decoded at full size just to make a thumbnail.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import imagehash
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


def crop_box_style(box: list[int] | tuple[int, int, int, int], width: int, height: int) -> str:
    """CSS that places a crop box over a picture shown at any size (percent of the original pixels)."""
    x0, y0, x1, y1 = box
    return (
        f"left:{100 * x0 / width:.2f}%;top:{100 * y0 / height:.2f}%;"
        f"width:{100 * (x1 - x0) / width:.2f}%;height:{100 * (y1 - y0) / height:.2f}%"
    )
