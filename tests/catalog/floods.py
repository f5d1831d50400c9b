"""For the memory tests: pixel floods that compress to almost nothing, and how to measure what decoding them costs."""

from __future__ import annotations

import functools
import io
import struct
import threading
import zlib

from core.processes import process_tree, rollup_kb

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


WHOLE_FLOOD_SIDE = 4000  # 16 MP: 64 MB decoded whole, catalog.decoding.MAX_WHOLE_DECODE_BYTES


def mixed_floods(count: int, side: int = MIXED_FLOOD_SIDE, whole_side: int = WHOLE_FLOOD_SIDE) -> list[bytes]:
    """`count` distinct floods in turn PNG, TIFF, GIF and WebP (deflate, LZW and lossless WebP of a flat picture with
    one spot: 40 KB to 600 KB each), the formats that have no DCT draft, as the sitemap of issue 18 that took a worker
    to 919 MB: PNG and GIF of side x side pixels (32 MP: PNG decoded in strips, GIF whole at one byte a pixel), TIFF
    and lossless WebP, which are decoded whole at 4 bytes a pixel, of whole_side x whole_side (16 MP: the most
    accepted)."""
    formats = ("PNG", "TIFF", "GIF", "WEBP")
    return [
        flood_png((40 + 9 * n, 200 - 7 * n, 90, 128), side) if formats[n % 4] == "PNG"
        else _mixed_flood(formats[n % 4], n, side if formats[n % 4] == "GIF" else whole_side)
        for n in range(count)
    ]  # fmt: skip


def _file_rss_kb(pid: int) -> dict[str, int]:
    """The resident KB of each file the process maps (its libraries, mostly)."""
    files: dict[str, int] = {}
    path = ""
    try:
        with open(f"/proc/{pid}/smaps") as smaps:
            for line in smaps:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    fields = line.split(maxsplit=5)
                    path = fields[5].strip() if len(fields) > 5 and fields[5].startswith("/") else ""
                elif path and line.startswith("Rss:"):
                    files[path] = files.get(path, 0) + int(line.split()[1])
    except (OSError, ValueError):
        return {}
    return files


class TreePssSampler:
    """Samples the memory of a process tree every `interval` seconds in a thread, as a container's limit counts it.

    `peak_mb`: the summed PSS (shared pages counted once, issue 18's measure), and the processes (pid, KB) of that
    peak sample. PSS divides a library's pages among every process on the machine that maps it, so on a busy machine
    it counts less of them than a container holding the tree alone would: `alone_peak_mb` counts the tree's anonymous
    memory by PSS and each file it maps once, at the most any of its processes holds resident (read every 10th sample).
    """

    def __init__(self, root: int, *, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.peak_kb = self.alone_peak_kb = 0
        self.peak_processes: list[tuple[int, int]] = []
        self.samples = 0
        self._files_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="pss-sampler", daemon=True)

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024

    @property
    def alone_peak_mb(self) -> float:
        return self.alone_peak_kb / 1024

    def __enter__(self) -> TreePssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        while not self._stop.is_set():
            tree = process_tree(self.root)
            rollups = [(pid, rollup_kb(pid)) for pid in tree]
            if self.samples % 10 == 0:
                files: dict[str, int] = {}
                for pid in tree:
                    for path, kb in _file_rss_kb(pid).items():
                        files[path] = max(files.get(path, 0), kb)
                self._files_kb = sum(files.values())
            self.samples += 1
            total = sum(figures.get("Pss", 0) for _, figures in rollups)
            if total > self.peak_kb:
                self.peak_kb, self.peak_processes = total, [(pid, figures.get("Pss", 0)) for pid, figures in rollups]
            anon = sum(figures.get("Pss_Anon", 0) + figures.get("Pss_Shmem", 0) for _, figures in rollups)
            self.alone_peak_kb = max(self.alone_peak_kb, anon + self._files_kb)
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
