"""Hostile images for the memory tests: pixel floods that compress to almost nothing."""

from __future__ import annotations

import functools
import struct
import zlib

FLOOD_SIDE = 7745  # 7745 x 7745 = 59,985,025 pixels: just inside the 60 MP limit of catalog.imaging
_ROWS_PER_CHUNK = 256


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _chunks(row: bytes, rows: int) -> list[int]:
    return [min(_ROWS_PER_CHUNK, rows - start) for start in range(0, rows, _ROWS_PER_CHUNK)]


@functools.cache
def _up_rows(side: int) -> bytes:
    """Raw deflate of side - 1 PNG rows with filter "Up" and nothing changed: the same for every colour."""
    row = b"\x02" + bytes(4 * side)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    parts = [compressor.compress(row * n) for n in _chunks(row, side - 1)]
    parts.append(compressor.flush())
    return b"".join(parts)


@functools.cache
def flood_png(rgba: tuple[int, int, int, int], side: int = FLOOD_SIDE) -> bytes:
    """A valid single-colour RGBA PNG of side x side pixels (60 MP, ~250 KB): 240 MB once decoded.

    The first row holds the colour, every other row repeats the one above (filter "Up"), so the deflate
    stream of those rows is shared by every colour: a flood costs ~0.3 s to make and never a full decode.
    """
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)  # 8 bits, RGBA, no interlace
    first = b"\x00" + bytes(rgba) * side
    head = zlib.compressobj(6, zlib.DEFLATED, -15)
    stream = head.compress(first) + head.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, no reference past here
    checksum = zlib.adler32(first)
    up_row = b"\x02" + bytes(4 * side)
    for n in _chunks(up_row, side - 1):
        checksum = zlib.adler32(up_row * n, checksum)
    idat = b"\x78\x9c" + stream + _up_rows(side) + struct.pack(">I", checksum)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def flood_pngs(count: int, side: int = FLOOD_SIDE) -> list[bytes]:
    """`count` distinct floods (one colour each, half transparent), so each is a new asset."""
    return [flood_png((40 + 25 * n, 200 - 20 * n, 90 + side % 97, 128), side) for n in range(count)]
