"""For the memory tests: pixel floods that compress to almost nothing, and how to measure what decoding them costs."""

from __future__ import annotations

import functools
import io
import os
import struct
import threading
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


MIXED_FLOOD_SIDE = 5650  # 31.9 MP: just inside catalog.imaging.MAX_PIXELS_FULL_DECODE, so every one is decoded


@functools.cache
def _mixed_flood(image_format: str, n: int, side: int) -> bytes:
    from PIL import Image, ImageDraw  # only these floods need Pillow

    mode = "P" if image_format == "GIF" else "RGBA"
    background = 7 + n if mode == "P" else (30 + 11 * n, 120, 200 - 9 * n, 128)
    image = Image.new(mode, (side, side), background)
    spot = 200 + n if mode == "P" else (200, 20 + 13 * n, 20, 255)
    ImageDraw.Draw(image).ellipse((side // 5, side // 5, side // 2, side // 3 + 40 * n), fill=spot)
    out = io.BytesIO()
    options = {"TIFF": {"compression": "tiff_deflate"}, "WEBP": {"lossless": True, "quality": 0, "method": 0}}
    image.save(out, format=image_format, **options.get(image_format, {}))
    return out.getvalue()


def mixed_floods(count: int, side: int = MIXED_FLOOD_SIDE) -> list[bytes]:
    """`count` distinct floods of side x side pixels in turn PNG, TIFF, GIF and WebP (deflate, LZW and lossless
    WebP of a flat picture with one spot: 40 KB to 600 KB each, 32 to 128 MB once decoded at full size): the
    formats that have no reduced decode, as the sitemap of issue 18 that took a worker to 919 MB."""
    formats = ("PNG", "TIFF", "GIF", "WEBP")
    return [
        flood_png((40 + 9 * n, 200 - 7 * n, 90, 128), side) if formats[n % 4] == "PNG"
        else _mixed_flood(formats[n % 4], n, side)
        for n in range(count)
    ]  # fmt: skip


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it, parents before their children (read from /proc: Linux only)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:  # gone in between
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def pss_kb(pid: int) -> int:
    """The process's proportional set size (shared pages divided among their users), in KB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreePssSampler:
    """Samples the summed PSS of a process tree every `interval` seconds in a thread, as a container's memory limit
    counts it (shared pages once): `peak_mb`, and the processes (pid, KB) of the peak sample."""

    def __init__(self, root: int, *, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.peak_kb = 0
        self.peak_processes: list[tuple[int, int]] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="pss-sampler", daemon=True)

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024

    def __enter__(self) -> TreePssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        while not self._stop.is_set():
            processes = [(pid, pss_kb(pid)) for pid in process_tree(self.root)]
            total = sum(kb for _, kb in processes)
            self.samples += 1
            if total > self.peak_kb:
                self.peak_kb, self.peak_processes = total, processes
            self._stop.wait(self.interval)


def record_image_allocations(monkeypatch) -> list[int]:
    """From now on, the pixels of every image Pillow allocates, in a list (a whole decode allocates its full-size image
    first; a reduced one, strips and its reduced result)."""
    from PIL import Image

    sizes: list[int] = []
    for name in ("new", "fill"):
        original = getattr(Image.core, name)

        def recording(mode, size, *args, _original=original):
            sizes.append(size[0] * size[1])
            return _original(mode, size, *args)

        monkeypatch.setattr(Image.core, name, recording)
    return sizes
