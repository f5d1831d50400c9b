"""catalog.imaging's checks and catalog.decoding's reduced decodes: what is refused, and what is never decoded at
full size (issue 18: a worker stays under 500 MB whatever the images)."""

from __future__ import annotations

import fcntl
import io
import multiprocessing
import os
import struct

import numpy as np
import pytest
from PIL import Image

from catalog.decoding import big_decode_lock_path, big_decode_slot, reduced_decode
from catalog.imaging import ImageRefused, inspect_image, jpeg_data_shortfall, reduced_rgb, to_rgb_on_white
from classifier.preprocess import decode
from tests.catalog.floods import flood_png, record_image_allocations


def jpeg(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", **options)
    return out.getvalue()


def test_a_jpeg_whose_header_claims_more_pixels_than_its_data_holds_is_refused_as_truncated():
    data = bytearray(jpeg(Image.new("RGB", (64, 64), (200, 30, 30))))
    frame = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, 7700, 7700)  # height, width

    with pytest.raises(ImageRefused) as refused:
        inspect_image(bytes(data))

    assert refused.value.reason == "corrupt_image"
    assert "truncated" in str(refused.value)


@pytest.mark.parametrize(
    "options", [{}, {"progressive": True, "optimize": True}, {"subsampling": 0}, {"quality": 1, "optimize": True}]
)
def test_the_smallest_real_jpegs_are_accepted(options):
    # A flat picture is the least data a JPEG of its size can have: every block still costs its bits.
    flat = jpeg(Image.new("RGB", (4000, 3000), (0, 0, 0)), **options)
    grey = jpeg(Image.new("L", (4000, 3000), 255), **options)

    assert jpeg_data_shortfall(flat) is None
    assert jpeg_data_shortfall(grey) is None
    assert inspect_image(flat).width == 4000


@pytest.mark.parametrize(("side", "refused"), [(4000, False), (4100, True)])
def test_an_image_decoded_whole_is_refused_above_64_mb_of_decode(side, refused):
    out = io.BytesIO()
    Image.new("RGBA", (side, side), (30, 120, 200, 128)).save(out, "TIFF", compression="tiff_deflate")

    if not refused:
        assert inspect_image(out.getvalue()).width == side  # 4000 x 4000 x 4 bytes: 64 MB, the most allowed
        return
    with pytest.raises(ImageRefused) as error:
        inspect_image(out.getvalue())
    assert error.value.reason == "too_many_pixels"
    assert "decoded whole it takes 67 MB, more than the 64 MB allowed" in str(error.value)


def _png(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **options)
    return out.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
def test_a_png_decoded_in_strips_has_the_pixels_of_the_whole_decode(mode):
    rng = np.random.default_rng(18)
    pixels = rng.integers(0, 256, size=(1100, 1500, len(mode)), dtype=np.uint8)
    pixels[:500] //= 64  # flatter rows: the encoder's adaptive filters pick Sub, Up, Average and Paeth
    data = _png(Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode))

    strips = reduced_decode(Image.open(io.BytesIO(data)), data, (3, 2), to_rgb=to_rgb_on_white)
    whole = Image.open(io.BytesIO(data))
    whole.load()

    assert strips is not None
    assert np.array_equal(np.asarray(strips), np.asarray(reduced_rgb(whole, (3, 2))))


@pytest.fixture
def allocations(monkeypatch):
    return record_image_allocations(monkeypatch)


def _webp(side: int) -> bytes:
    image = Image.new("RGBA", (side, side), (30, 120, 200, 128))
    image.paste((200, 20, 20, 255), (side // 4, side // 4, side // 2, side // 2))
    out = io.BytesIO()
    image.save(out, "WEBP", lossless=True, quality=0, method=0)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["png", "webp"])
def test_a_big_png_or_webp_is_never_decoded_at_full_size(kind, allocations):
    side = 3000  # 9 MP: 36 MB in RGBA at full size
    data = flood_png((40, 200, 90, 128), side) if kind == "png" else _webp(side)
    allocations.clear()  # making the WebP took a full-size image

    facts = inspect_image(data)
    decoded = decode(data, min_size=224)

    assert (facts.width, facts.height) == (side, side)
    assert decoded.image.size == (231, 231)  # reduced by 13: both sides still 224 or more
    assert allocations, "the hook saw no image"
    assert max(allocations) < side * side // 4


def _hold_the_slot(held, release) -> None:
    with big_decode_slot(10**9):
        held.set()
        release.wait(30)


def test_a_big_decode_waits_for_the_one_another_process_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGE_BIG_DECODE_LOCK", str(tmp_path / "decode.lock"))
    context = multiprocessing.get_context("fork")
    held, release = context.Event(), context.Event()
    other = context.Process(target=_hold_the_slot, args=(held, release))
    other.start()
    try:
        assert held.wait(30)
        descriptor = os.open(big_decode_lock_path(), os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # taken: a big decode here would wait
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            release.set()
            other.join(30)
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the other is done
        finally:
            os.close(descriptor)
    finally:
        release.set()
        other.join(30)


def _wait(started, release) -> None:
    started.set()
    release.wait(30)


def test_a_process_forked_while_the_slot_is_held_does_not_keep_it(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGE_BIG_DECODE_LOCK", str(tmp_path / "decode.lock"))
    context = multiprocessing.get_context("fork")
    started, release = context.Event(), context.Event()
    with big_decode_slot(10**9):
        child = context.Process(target=_wait, args=(started, release))  # as a Run forks its fetch processes
        child.start()
        assert started.wait(30)
    try:
        descriptor = os.open(big_decode_lock_path(), os.O_RDWR)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free, though the child still lives
        finally:
            os.close(descriptor)
    finally:
        release.set()
        child.join(30)
