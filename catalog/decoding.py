"""Decodes that never hold an image at full size where a reduced one serves, in plain Python (Pillow, zlib, ctypes).

JPEG has its DCT draft (Image.draft). The other formats Pillow decodes whole: a 32 MP PNG is 128 MB in RGBA before
anything can reduce it, and a 32 MP WebP passes through five full-size buffers in Pillow (~600 MB). So:

- a PNG (8 bits a sample, not interlaced, grey, RGB or their alpha forms) is decoded a strip of rows at a time:
  its deflate stream is inflated by zlib as far as one strip needs and each strip goes through Pillow's own PNG
  decoder, behind one row of the strip before (PNG filters read the row above), so the pixels are Pillow's own;
- a still WebP is decoded by libwebp (the copy Pillow ships with) straight to the reduced size (its scaled
  decode); a lossless one still holds its full-size ARGB inside libwebp while it decodes, 4 bytes a pixel;
- everything else (TIFF, GIF, BMP, interlaced or 16-bit PNG, animated WebP) is decoded at full size by Pillow.

Any decode that holds more than BIG_DECODE_PIXELS at full size takes `big_decode_slot` first: one at a time on the
machine (a container), whichever process (a Run's fetch processes, the inference workers) asks for it, so that a
flood of such images costs the machine one of them at a time, never one per process.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import functools
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image

# A full-size decode of more pixels than this (16 MB in RGBA) waits for the machine's big-decode slot.
BIG_DECODE_PIXELS = 4_000_000
# An image that must be decoded whole is refused above this many bytes of decode (catalog.imaging): 16 MP in RGB or
# RGBA (Pillow holds both in 4 bytes a pixel, as libwebp's lossless decoder does), 64 MP of one byte a pixel.
MAX_WHOLE_DECODE_BYTES = 64_000_000
# Pillow decodes an animated WebP through ~5 full-size RGBA buffers.
_ANIMATED_WEBP_BYTES_PER_PIXEL = 20
_STRIP_PIXELS = 1 << 20  # full-size pixels of one strip (4 MB in RGBA)
# PNG raw modes whose decoded rows give the raw row back (tobytes), as the next strip's row above needs.
_PNG_STRIP_MODES = frozenset({"L", "LA", "RGB", "RGBA"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def big_decode_lock_path() -> Path:
    """The file whose lock is the machine's big-decode slot (per user: the temporary directory is the machine's)."""
    return Path(
        os.environ.get("IMAGE_BIG_DECODE_LOCK")
        or Path(tempfile.gettempdir()) / f"imagetagger-decode-{os.getuid()}.lock"
    )


# The slot's descriptors this process holds open. A process forked meanwhile (a Run's fetch processes, a classify
# pool) would share their open file description, so the lock would outlive its holder's release while the child
# lives: the child closes its copies at once.
_open_slots: set[int] = set()


def _close_inherited_slots() -> None:
    for descriptor in list(_open_slots):
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _open_slots.clear()


os.register_at_fork(after_in_child=_close_inherited_slots)


@contextlib.contextmanager
def big_decode_slot(pixels: int) -> Iterator[None]:
    """Holds the machine's one big-decode slot while a decode of more than BIG_DECODE_PIXELS full-size pixels runs
    (nothing for a smaller one). An flock: released by the kernel when its holder dies, shared by every process and
    thread that opens the file (each opens its own)."""
    if pixels <= BIG_DECODE_PIXELS:
        yield
        return
    descriptor = os.open(big_decode_lock_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    _open_slots.add(descriptor)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        malloc_give_back()  # what the decode freed leaves the process before the next big one starts
        _open_slots.discard(descriptor)
        os.close(descriptor)  # releases the lock


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, loaded once per process (finding it runs ldconfig). OSError where there is none to load."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def malloc_give_back() -> bool:
    """Gives the free pages of every malloc arena back to the system (glibc's malloc_trim), for a process that is done
    with a batch of work: what a batch of decodes and inferences freed otherwise stays the process's (~35 MB after a
    batch through the starter models). False where there is no glibc."""
    try:
        return bool(libc().malloc_trim(0))
    except (OSError, AttributeError):
        return False


def whole_decode_bytes(opened: Image.Image, data: bytes) -> int:
    """The bytes the decode of an opened (not loaded) image holds at full size: 0 when it is decoded reduced (a JPEG's
    draft, a PNG's strips, a still lossy WebP's scaled decode)."""
    pixels = opened.width * opened.height
    if opened.format in ("JPEG", "MPO") or (opened.format == "PNG" and _png_strip_mode(opened, data)):
        return 0
    if opened.format == "WEBP":
        features = _webp_features(data)
        if features is None or features.has_animation:
            return pixels * _ANIMATED_WEBP_BYTES_PER_PIXEL
        return pixels * 4 if features.format == _WEBP_LOSSLESS else 0
    return pixels * (1 if opened.mode in ("1", "L", "P") else 4)


def reduced_decode(
    opened: Image.Image, data: bytes, factor: tuple[int, int], *, to_rgb: Callable[[Image.Image], Image.Image]
) -> Image.Image | None:
    """The opened (not loaded) image decoded reduced by `factor` (a box filter, as Image.reduce) and made RGB by
    `to_rgb`, without its full-size pixels; None when its format has no such decode here (the caller loads it)."""
    if factor[0] <= 1 and factor[1] <= 1:
        return None  # nothing to reduce: Pillow's own decode holds no more
    if opened.format == "PNG":
        return _png_strips(opened, data, factor, to_rgb)
    if opened.format == "WEBP":
        decoded = _webp_scaled(opened, data, factor)
        return None if decoded is None else to_rgb(decoded)
    return None


_ORIENTATION = 0x0112


def exif_orientation(opened: Image.Image, data: bytes) -> int:
    """The EXIF orientation (1-8) of an opened image, without loading its pixels: Pillow loads a whole PNG to look
    for an eXIf chunk after them, so a PNG's chunks are read here."""
    if opened.format == "PNG" and "exif" not in opened.info:
        exif = next(_png_chunks(data, b"eXIf"), None)
        if exif is None:
            return 1
        found = Image.Exif()
        found.load(exif)
        return int(found.get(_ORIENTATION, 1))
    return int(opened.getexif().get(_ORIENTATION, 1))


# PNG -------------------------------------------------------------------------------------------------------------


def _png_chunks(data: bytes, wanted: bytes) -> Iterator[bytes]:
    """The payloads of the PNG's chunks of one kind (IDAT, eXIf...), in order."""
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind == wanted:
            yield data[position + 8 : position + 8 + length]
        elif kind == b"IEND":
            return
        position += 12 + length


def _png_strip_mode(opened: Image.Image, data: bytes) -> str | None:
    """The raw mode of a PNG that _png_strips can decode (8 bits a sample, not interlaced, one of _PNG_STRIP_MODES);
    None for any other."""
    tiles = getattr(opened, "tile", [])  # an ImageFile's, not yet decoded
    tile = tiles[0] if len(tiles) == 1 else None
    rawmode = tile.args if tile is not None and isinstance(tile.args, str) else None
    interlaced = data[28:29] != b"\x00" if data.startswith(_PNG_SIGNATURE) else True
    if tile is None or tile.codec_name != "zip" or rawmode not in _PNG_STRIP_MODES or rawmode != opened.mode:
        return None
    if interlaced or tile.extents != (0, 0, *opened.size):
        return None
    return rawmode


def _png_strips(
    opened: Image.Image, data: bytes, factor: tuple[int, int], to_rgb: Callable[[Image.Image], Image.Image]
) -> Image.Image | None:
    rawmode = _png_strip_mode(opened, data)
    if rawmode is None:
        return None
    width, height = opened.size
    factor_x, factor_y = max(1, factor[0]), max(1, factor[1])
    row_bytes = width * len(rawmode)
    rows = max(factor_y, _STRIP_PIXELS // max(1, width) // factor_y * factor_y)
    chunks = _png_chunks(data, b"IDAT")
    inflate = zlib.decompressobj()
    pending = b""
    above = bytes(row_bytes)  # the row above the first: zeros, as PNG says
    out = Image.new("RGB", (-(-width // factor_x), -(-height // factor_y)))
    for top in range(0, height, rows):
        count = min(rows, height - top)
        wanted = count * (1 + row_bytes)
        parts, have = [pending[:wanted]], len(pending[:wanted])
        pending = pending[wanted:]
        while have < wanted:
            source = inflate.unconsumed_tail or next(chunks, b"")
            if not source:
                raise OSError("image file is truncated")
            try:
                piece = inflate.decompress(source, wanted - have)
            except zlib.error as exc:
                raise OSError(f"PNG data could not be inflated: {exc}") from exc
            parts.append(piece)
            have += len(piece)
        filtered = b"".join(parts)
        # The row above goes first, unfiltered: the strip's own first row may read it (Up, Average, Paeth filters).
        stream = zlib.compress(b"\x00" + above + filtered, 0)
        strip = Image.frombytes(rawmode, (width, count + 1), stream, "zip", rawmode)
        above = strip.crop((0, count, width, count + 1)).tobytes()
        strip = strip.crop((0, 1, width, count + 1))
        if "transparency" in opened.info:
            strip.info["transparency"] = opened.info["transparency"]
        rgb = to_rgb(strip)
        if factor_x > 1 or factor_y > 1:
            rgb = rgb.reduce((factor_x, factor_y))
        out.paste(rgb, (0, top // factor_y))
    return out


# WebP ------------------------------------------------------------------------------------------------------------


class _Features(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("width", "height", "has_alpha", "has_animation", "format")] + [
        ("pad", ctypes.c_uint32 * 5)
    ]


class _RGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", ctypes.c_int), ("size", ctypes.c_size_t)]


class _YUVABuffer(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("y", "u", "v", "a")] + [
        (name, ctypes.c_int) for name in ("y_stride", "u_stride", "v_stride", "a_stride")
    ] + [(name, ctypes.c_size_t) for name in ("y_size", "u_size", "v_size", "a_size")]  # fmt: skip


class _Buffers(ctypes.Union):
    _fields_ = [("RGBA", _RGBABuffer), ("YUVA", _YUVABuffer)]


class _DecBuffer(ctypes.Structure):
    _fields_ = [
        ("colorspace", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("is_external_memory", ctypes.c_int),
        ("u", _Buffers),
        ("pad", ctypes.c_uint32 * 4),
        ("private_memory", ctypes.c_void_p),
    ]


class _Options(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_int)
        for name in (
            "bypass_filtering",
            "no_fancy_upsampling",
            "use_cropping",
            "crop_left",
            "crop_top",
            "crop_width",
            "crop_height",
            "use_scaling",
            "scaled_width",
            "scaled_height",
            "use_threads",
            "dithering_strength",
            "flip",
            "alpha_dithering_strength",
        )
    ] + [("pad", ctypes.c_uint32 * 5)]


class _DecoderConfig(ctypes.Structure):
    _fields_ = [("input", _Features), ("output", _DecBuffer), ("options", _Options)]


_WEBP_DECODER_ABI_VERSION = 0x0209  # libwebp 1.x, decode.h
_MODE_RGB, _MODE_RGBA = 0, 1
_WEBP_LOSSLESS = 2  # WebPBitstreamFeatures.format


@functools.cache
def _libwebp() -> ctypes.CDLL | None:
    """libwebp: the copy Pillow's wheel ships (loaded already by Pillow), else the system's; None without one."""
    import PIL

    shipped = sorted((Path(PIL.__file__).parent.parent / "pillow.libs").glob("libwebp-*.so*"))
    for candidate in [*map(str, shipped), ctypes.util.find_library("webp")]:
        if not candidate:
            continue
        try:
            library = ctypes.CDLL(candidate)
            library.WebPInitDecoderConfigInternal.argtypes = [ctypes.POINTER(_DecoderConfig), ctypes.c_int]
            library.WebPGetFeaturesInternal.argtypes = [
                ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Features), ctypes.c_int
            ]  # fmt: skip
            library.WebPDecode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_DecoderConfig)]
            library.WebPFreeDecBuffer.argtypes = [ctypes.POINTER(_DecBuffer)]
        except (OSError, AttributeError):
            continue
        return library
    return None


def _webp_features(data: bytes) -> _Features | None:
    """What libwebp reads of a WebP's header (size, alpha, animation, lossy or lossless); None without libwebp."""
    library = _libwebp()
    features = _Features()
    if library is None:
        return None
    if library.WebPGetFeaturesInternal(data, len(data), ctypes.byref(features), _WEBP_DECODER_ABI_VERSION) != 0:
        return None
    return features


def _webp_scaled(opened: Image.Image, data: bytes, factor: tuple[int, int]) -> Image.Image | None:
    """A still WebP decoded by libwebp at its size divided by `factor` (rounded up), RGBA when it has alpha."""
    library = _libwebp()
    config = _DecoderConfig()
    if library is None or not library.WebPInitDecoderConfigInternal(ctypes.byref(config), _WEBP_DECODER_ABI_VERSION):
        return None
    if library.WebPGetFeaturesInternal(data, len(data), ctypes.byref(config.input), _WEBP_DECODER_ABI_VERSION) != 0:
        return None
    features = config.input
    if features.has_animation or (features.width, features.height) != opened.size:
        return None
    width = -(-features.width // max(1, factor[0]))
    height = -(-features.height // max(1, factor[1]))
    mode = "RGBA" if features.has_alpha else "RGB"
    config.output.colorspace = _MODE_RGBA if features.has_alpha else _MODE_RGB
    if (width, height) != (features.width, features.height):
        config.options.use_scaling, config.options.scaled_width, config.options.scaled_height = 1, width, height
    # Lossless WebP holds its whole ARGB image inside libwebp while it decodes, whatever the output's size.
    held = features.width * features.height if features.format == _WEBP_LOSSLESS else 0
    with big_decode_slot(held):
        status = library.WebPDecode(data, len(data), ctypes.byref(config))
    try:
        if status != 0:
            raise OSError(f"WebP could not be decoded (libwebp status {status})")
        buffer = config.output.u.RGBA
        pixels = ctypes.string_at(buffer.rgba, buffer.size)
        return Image.frombuffer(mode, (width, height), pixels, "raw", mode, buffer.stride, 1).copy()
    finally:
        library.WebPFreeDecBuffer(ctypes.byref(config.output))
